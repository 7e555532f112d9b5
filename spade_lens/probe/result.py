"""The probe's result for one SAE, computed from its :class:`~spade_lens.probe.counts.ProbeCounts`.

Definitions (DESIGN.md section 4), for concept ``c`` and latent ``i`` over the *labelled* tokens:
``TP = #tokens of c where i is active``, ``precision = TP / #labelled tokens where i is active``,
``recall = TP / #tokens of c``, ``F1 = 2PR / (P + R)`` (0 where undefined). A concept's best latent is
``argmax_i F1`` (no one-to-one matching); ``top5_f1`` is the mean F1 of its 5 best latents.
L0, NMSE and the dead fraction are over all probed tokens, labelled or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from spade_lens.probe.cooccurrence import (
    cosine_from_gram,
    cross_concept_mass,
    latent_concepts,
    latent_order,
    stable_rank,
)
from spade_lens.probe.counts import ProbeCounts

TOP_K_MEAN = 5
"""``top5_f1`` averages the F1 of this many best latents per concept (fewer if the SAE is narrower)."""


@dataclass
class ProbeResult:
    """Concept-probing metrics of one SAE (``C`` concepts, ``n`` latents). Tensors are CPU float32/int64."""

    architecture: str
    """The SAE's architecture name (``sae.cfg.architecture``, else its class name)."""
    width: int
    """Number of latents ``n``."""
    concept_names: list[str]
    """Name of each concept, indexed by label id (label names given to the probe, else ``"0"``, ``"1"``...)."""
    n_tokens: int
    """Tokens probed (labelled or not)."""
    n_labelled: int
    """Tokens with a label ``>= 0``."""
    l0: float
    """Mean number of active latents per token."""
    nmse: float
    """Sum of squared reconstruction errors / (tokens x total variance); NaN if the SAE gave no x_hat."""
    dead_fraction: float
    """Share of latents never active on the probed tokens."""
    precision: Tensor
    """(C, n) precision of latent i for concept c."""
    recall: Tensor
    """(C, n) recall of latent i for concept c."""
    f1: Tensor
    """(C, n) F1 of latent i for concept c."""
    concept_tokens: Tensor
    """(C,) int64 tokens of each concept."""
    best_latent: Tensor
    """(C,) int64 argmax_i F1[c, i]; -1 for a concept with no tokens."""
    best_f1: Tensor
    """(C,) F1 of the best latent."""
    top5_f1: Tensor
    """(C,) mean F1 of the 5 best latents."""
    concept_l0: Tensor
    """(C,) L0 averaged over the tokens of each concept (NaN for a concept with no tokens)."""
    concept_nmse: Tensor
    """(C,) NMSE over each concept's tokens, normalised by that concept's own total variance (NaN if unknown)."""
    firing_rate: Tensor
    """(n,) share of probed tokens where each latent is active."""
    latent_concept: Tensor
    """(n,) int64 each latent's best concept argmax_c F1[c, i]; -1 if its F1 is 0 for all concepts."""
    latent_order: Tensor
    """(n,) int64 latents grouped by best concept, by decreasing F1 within a group, unassigned last."""
    cooccurrence: Tensor | None
    """(n, n) cosine similarity of activation profiles (values z over the probed tokens); None if skipped."""
    cross_concept_mass: float
    """Share of off-diagonal |cosine| between latents with different best concepts (see
    :func:`~spade_lens.probe.cooccurrence.cross_concept_mass`); NaN if co-occurrence was skipped."""
    stable_rank_latents: float = float("nan")
    """Stable rank (trace / largest eigenvalue) of the latent-latent co-occurrence (cosine) matrix; NaN if
    co-occurrence was skipped."""
    stable_rank_data: float = float("nan")
    """Stable rank of the data-data matrix (cosine similarity of the probed tokens' codes ``z``, tokens x
    tokens); NaN if co-occurrence was skipped."""

    def metrics(self) -> dict[str, Any]:
        """JSON-ready summary: ``architecture``, ``width``, ``l0``, ``nmse``, ``dead_fraction`` and
        ``concepts`` mapping each concept name to ``best_f1``, ``top5_f1``, ``best_latent`` and ``l0``
        (NaN values become None)."""
        concepts = {
            name: {
                "best_f1": _num(self.best_f1[c]),
                "top5_f1": _num(self.top5_f1[c]),
                "best_latent": int(self.best_latent[c]),
                "l0": _num(self.concept_l0[c]),
            }
            for c, name in enumerate(self.concept_names)
        }
        return {
            "architecture": self.architecture,
            "width": self.width,
            "l0": _num(self.l0),
            "nmse": _num(self.nmse),
            "dead_fraction": _num(self.dead_fraction),
            "concepts": concepts,
        }


def _num(v: float | Tensor) -> float | None:
    f = float(v)
    return None if math.isnan(f) else f


def result_from_counts(
    counts: ProbeCounts, *, architecture: str, concept_names: list[str] | None = None
) -> ProbeResult:
    """Turn the streaming counts of one SAE into its :class:`ProbeResult`."""
    counts.to("cpu")
    n_c = counts.n_concepts if concept_names is None else len(concept_names)
    counts._ensure_concepts(n_c)
    names = list(concept_names) if concept_names is not None else [str(c) for c in range(n_c)]
    tp = counts.tp  # (C, n) float64
    n_tok = max(counts.n_tokens, 1)
    labelled_active = tp.sum(dim=0, keepdim=True)  # (1, n) labelled tokens where i is active
    concept_tokens = counts.concept_tokens.unsqueeze(1)  # (C, 1)
    precision = torch.where(labelled_active > 0, tp / labelled_active.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(concept_tokens > 0, tp / concept_tokens.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(tp))

    k = min(TOP_K_MEAN, counts.n_latents)
    has_tokens = counts.concept_tokens > 0
    if n_c:
        best_f1, best = f1.max(dim=1)
        top5 = f1.topk(k, dim=1).values.mean(dim=1)
    else:
        best_f1, best = torch.zeros(0, dtype=tp.dtype), torch.zeros(0, dtype=torch.long)
        top5 = torch.zeros(0, dtype=tp.dtype)
    best = torch.where(has_tokens, best, torch.full_like(best, -1))
    nan = torch.full((n_c,), float("nan"), dtype=torch.float64)
    concept_l0 = torch.where(has_tokens, counts.concept_l0_sum / counts.concept_tokens.clamp(min=1), nan)

    total_var = counts.total_variance()
    nmse = float(counts.sq_err_sum) / (counts.n_tokens * total_var) if counts.has_reconstruction else float("nan")
    concept_var = counts.concept_variance()  # (C,)
    concept_nmse = counts.concept_sq_err / (counts.concept_tokens * concept_var)
    concept_nmse = torch.where(has_tokens & (concept_var > 0), concept_nmse, nan)

    concepts = latent_concepts(f1)
    if counts.gram is not None:
        cos = cosine_from_gram(counts.gram)
        cross = cross_concept_mass(cos, concepts)
        cooc: Tensor | None = cos.float()
        rank_latents = stable_rank(cos)
    else:
        cooc, cross, rank_latents = None, float("nan"), float("nan")
    rank_data = stable_rank(counts.row_gram) if counts.row_gram is not None else float("nan")
    return ProbeResult(
        architecture=architecture,
        width=counts.n_latents,
        concept_names=names,
        n_tokens=counts.n_tokens,
        n_labelled=counts.n_labelled,
        l0=float(counts.l0_sum) / n_tok,
        nmse=float(nmse),
        dead_fraction=float((counts.active_count == 0).double().mean()) if counts.n_latents else 0.0,
        precision=precision.float(),
        recall=recall.float(),
        f1=f1.float(),
        concept_tokens=counts.concept_tokens.long(),
        best_latent=best.long(),
        best_f1=best_f1.float(),
        top5_f1=top5.float(),
        concept_l0=concept_l0.float(),
        concept_nmse=concept_nmse.float(),
        firing_rate=(counts.active_count / n_tok).float(),
        latent_concept=concepts,
        latent_order=latent_order(f1),
        cooccurrence=cooc,
        cross_concept_mass=cross,
        stable_rank_latents=rank_latents,
        stable_rank_data=rank_data,
    )
