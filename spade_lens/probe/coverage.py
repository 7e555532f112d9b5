"""Concept coverage by groups of latents: how well the latents whose best concept is ``c`` cover ``c`` together.

The best-latent F1 asks whether ONE latent stands for a concept; a dictionary of local latents (SpaDE with every
prototype alive) may instead tile a concept with many precise latents, none of which covers it alone. The
*group F1* of concept ``c`` scores the union: the group ``G_c`` holds the latents whose best concept is ``c``
(:func:`~spade_lens.probe.cooccurrence.latent_concepts`); a labelled token counts as predicted ``c`` when any
latent of ``G_c`` is active on it; precision, recall and F1 as for one latent. It is computed on tokens held in
memory (the balanced evaluation set), since the groups are known only once the concept F1s are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from spade_lens.metrics import ACTIVE_THRESHOLD


@torch.no_grad()
def group_f1(z: Tensor, labels: Tensor, latent_concept: Tensor, n_concepts: int) -> Tensor:
    """(C,) group F1 of each concept.

    Args:
        z: (t, n) latent activations of ``t`` tokens.
        labels: (t,) concept ids (``< 0``: no label, left out).
        latent_concept: (n,) each latent's best concept (``-1``: none).
        n_concepts: number of concepts ``C``.
    """
    keep = labels >= 0
    active = (z[keep] > ACTIVE_THRESHOLD).double()  # (t', n)
    lab = labels[keep].long().to(active.device)
    assigned = latent_concept.to(active.device)
    member = torch.zeros(active.shape[1], n_concepts, dtype=torch.float64, device=active.device)  # (n, C)
    rows = (assigned >= 0).nonzero(as_tuple=True)[0]
    member[rows, assigned[rows]] = 1.0
    predicted = (active @ member) > 0  # (t', C): some latent of the group is active
    truth = torch.nn.functional.one_hot(lab, n_concepts).bool() if lab.numel() else torch.zeros(0, n_concepts,
                                                                                               dtype=torch.bool)
    tp = (predicted & truth).sum(0).double()
    precision = tp / predicted.sum(0).clamp(min=1)
    recall = tp / truth.sum(0).clamp(min=1)
    denom = precision + recall
    return torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(denom)).cpu()


def group_sizes(latent_concept: Tensor, n_concepts: int) -> list[int]:
    """Number of latents whose best concept is each concept."""
    counts = torch.bincount(latent_concept[latent_concept >= 0].long().cpu(), minlength=n_concepts)
    return [int(c) for c in counts[:n_concepts]]


def remap_labels(labels: Tensor, lookup: Tensor | Sequence[int] | None) -> Tensor:
    """Labels of a grouped view (``lookup[old id] = new id``; ``< 0`` stays unlabelled); None: unchanged."""
    if lookup is None:
        return labels
    table = torch.as_tensor(lookup, dtype=torch.long)
    out = labels.clone().long()
    known = out >= 0
    out[known] = table[out[known]]
    return out
