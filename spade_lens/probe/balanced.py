"""A balanced evaluation set: the same number of tokens of every concept, drawn at random from a stream.

The SpaDE paper's notebooks probe SAEs on such a set (1,000 tokens per part of speech), so that a rare concept
weighs as much as a frequent one in precision and in the co-occurrence matrices. :func:`balanced_sample` draws
it in one streaming pass with memory ``O(concepts x per_concept x d)``: every labelled token gets a uniform
random key from a generator seeded by ``seed`` (keys follow the stream order, so the same stream and seed give
the same sample), and each concept keeps the ``per_concept`` tokens with the smallest keys, i.e. a uniform
sample without replacement. Unlabelled tokens (label ``< 0``) are never drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from hooks import LabelledBatch
from spade_lens.errors import SpadeLensError

DEFAULT_PER_CONCEPT = 1000
"""Tokens per concept of the balanced view (as in the SpaDE paper's evaluation subsets)."""


class _Kept:
    """The tokens one concept keeps so far: keys (k,), stream positions (k,), rows (k, d), label columns."""

    def __init__(self) -> None:
        self.keys = torch.zeros(0, dtype=torch.float64)
        self.order = torch.zeros(0, dtype=torch.int64)
        self.acts: Tensor | None = None
        self.labels: dict[str, Tensor] = {}

    def add(self, keys: Tensor, order: Tensor, acts: Tensor, labels: dict[str, Tensor], limit: int) -> None:
        keys, order = torch.cat([self.keys, keys]), torch.cat([self.order, order])
        acts = acts if self.acts is None else torch.cat([self.acts, acts])
        labels = {k: torch.cat([self.labels[k], v]) if k in self.labels else v for k, v in labels.items()}
        if keys.numel() > limit:
            pick = torch.topk(keys, limit, largest=False).indices
            keys, order, acts = keys[pick], order[pick], acts[pick]
            labels = {k: v[pick] for k, v in labels.items()}
        self.keys, self.order, self.acts, self.labels = keys, order, acts, labels


def _columns(batch: Any, label: str, index: int) -> tuple[Tensor, dict[str, Tensor]]:
    """(acts (b, d), label columns {name: (b,)}) of a LabelledBatch or an ``(acts, labels)`` pair."""
    if hasattr(batch, "acts") and hasattr(batch, "labels"):
        acts, labels = batch.acts, batch.labels
    elif isinstance(batch, Sequence) and len(batch) == 2:
        acts, labels = batch
    else:
        raise SpadeLensError(f"batches: item {index} is a {type(batch).__name__}; expected a LabelledBatch or an "
                             "(acts, labels) pair")
    if not isinstance(labels, Mapping):
        labels = {label: labels}
    if label not in labels:
        raise SpadeLensError(f"label: {label!r} is not a label column of batch {index}; expected one of "
                             f"{sorted(labels)}")
    acts = torch.as_tensor(acts)
    if acts.ndim != 2:
        raise SpadeLensError(f"batches: acts of batch {index} have shape {tuple(acts.shape)}; expected (b, d_in)")
    return acts, {k: torch.as_tensor(v) for k, v in labels.items()}


def balanced_sample(batches: Iterable[Any], *, label: str = "pos", per_concept: int = DEFAULT_PER_CONCEPT,
                    seed: int = 0, label_names: Sequence[str] | None = None) -> LabelledBatch:
    """Exactly ``per_concept`` tokens of every concept of ``batches``, drawn uniformly without replacement.

    Args:
        batches: iterable of :class:`hooks.LabelledBatch` or ``(acts, labels)`` pairs (``labels`` a dict of (b,)
            int columns or one (b,) tensor), as :func:`~spade_lens.probe.probe_saes` reads them.
        label: the label column whose classes are balanced.
        per_concept: tokens drawn per concept.
        seed: seed of the draw (same stream + same seed -> same sample).
        label_names: names of the label ids, used in error messages; every named concept must then have
            ``per_concept`` tokens.

    Returns:
        One :class:`hooks.LabelledBatch` of ``concepts x per_concept`` rows, grouped by concept id and in stream
        order within a concept, with every label column of the input.
    Raises:
        SpadeLensError: a concept has fewer than ``per_concept`` tokens in the stream, or bad input.
    """
    if isinstance(per_concept, bool) or not isinstance(per_concept, int) or per_concept < 1:
        raise SpadeLensError(f"per_concept: received {per_concept!r}; expected a positive integer")
    generator = torch.Generator().manual_seed(int(seed))
    kept: dict[int, _Kept] = {}
    counts: dict[int, int] = {}
    position = 0
    for index, batch in enumerate(batches):
        acts, labels = _columns(batch, label, index)
        target = labels[label].to(torch.int64)
        keys = torch.rand(acts.shape[0], generator=generator, dtype=torch.float64)
        order = torch.arange(position, position + acts.shape[0])
        position += acts.shape[0]
        for concept in torch.unique(target[target >= 0]).tolist():
            rows = (target == concept).nonzero(as_tuple=True)[0]
            counts[concept] = counts.get(concept, 0) + int(rows.numel())
            kept.setdefault(concept, _Kept()).add(keys[rows], order[rows], acts[rows],
                                                  {k: v[rows] for k, v in labels.items()}, per_concept)
    wanted = sorted(set(counts) | set(range(len(label_names) if label_names is not None else 0)))
    if not wanted:
        raise SpadeLensError(f"batches: received no token with a {label!r} label; expected labelled tokens")
    short = [c for c in wanted if counts.get(c, 0) < per_concept]
    if short:
        def name(c: int) -> str:
            return repr(label_names[c]) if label_names is not None and c < len(label_names) else str(c)
        found = ", ".join(f"{name(c)}: {counts.get(c, 0)}" for c in short)
        raise SpadeLensError(f"per_concept: received {per_concept}, but the stream has fewer tokens of some "
                             f"concepts ({found}); expected at least {per_concept} of each (lower per_concept "
                             "or probe more tokens)")
    parts = []
    for concept in wanted:
        k = kept[concept]
        assert k.acts is not None
        sort = torch.argsort(k.order)
        parts.append(LabelledBatch(k.acts[sort], {c: v[sort] for c, v in k.labels.items()}))
    return LabelledBatch(torch.cat([p.acts for p in parts]),
                         {c: torch.cat([p.labels[c] for p in parts]) for c in parts[0].labels})
