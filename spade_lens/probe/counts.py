"""Streaming counts for concept probing: everything the probe needs, accumulated one batch at a time.

Memory is ``O(concepts x latents + latents^2 + concepts x d_in)``, never ``tokens x latents``: each batch's
activations ``z`` are reduced to counts with a few matmuls and then dropped.

Legend: ``b`` tokens in a batch, ``n`` latents, ``C`` concepts, ``d`` input dimension.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from spade_lens.metrics import ACTIVE_THRESHOLD
from spade_lens.probe.cooccurrence import accumulate_gram


def _grow_rows(t: Tensor, rows: int) -> Tensor:
    """``t`` with zero rows appended along dim 0 up to ``rows`` rows."""
    if t.shape[0] >= rows:
        return t
    pad = torch.zeros((rows - t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
    return torch.cat([t, pad], dim=0)


class ProbeCounts:
    """Per-latent and per-(concept, latent) counts of one SAE over a stream of labelled tokens.

    Call :meth:`update` once per batch. Labels ``< 0`` mean "no label": those tokens count for L0, NMSE,
    dead latents and co-occurrence, but not for any concept statistic. The number of concepts grows with
    the largest label seen (or is fixed by ``n_concepts``). All sums are float64 and live on the device of the
    first batch's ``z`` (no per-batch host transfer); :func:`~spade_lens.probe.result.result_from_counts` moves
    them to the CPU.
    """

    def __init__(self, n_latents: int, *, n_concepts: int = 0, cooccurrence: bool = True) -> None:
        self.n_latents = n_latents
        self.n_concepts = n_concepts
        self.n_tokens = 0
        self.n_labelled = 0
        f64 = torch.float64
        self.l0_sum = torch.zeros((), dtype=f64)  # () sum over tokens of L0
        self.active_count = torch.zeros(n_latents, dtype=f64)  # (n,) tokens where latent i is active
        self.tp = torch.zeros(n_concepts, n_latents, dtype=f64)  # (C, n) labelled-c tokens where i is active
        self.concept_tokens = torch.zeros(n_concepts, dtype=f64)  # (C,)
        self.concept_l0_sum = torch.zeros(n_concepts, dtype=f64)  # (C,) sum over tokens of c of L0
        self.gram: Tensor | None = torch.zeros(n_latents, n_latents, dtype=f64) if cooccurrence else None
        # sum over tokens of z_hat z_hat^T with z_hat = z / ||z||: the tokens' cosine-similarity matrix (tokens x
        # tokens, the paper's data-data co-occurrence) has the same non-zero eigenvalues, so its stable rank comes
        # from this (n, n) matrix.
        self.row_gram: Tensor | None = torch.zeros(n_latents, n_latents, dtype=f64) if cooccurrence else None
        # Reconstruction statistics (only when x_hat is given). Inputs are shifted by the first batch's mean
        # (``shift``) before summing squares, so the variance stays accurate for data with a large mean.
        self.has_reconstruction = False
        self.shift: Tensor | None = None  # (d,)
        self.sq_err_sum = torch.zeros((), dtype=f64)
        self.x_sum: Tensor | None = None  # (d,) sum of (x - shift)
        self.x_sq_sum = torch.zeros((), dtype=f64)  # sum of ||x - shift||^2
        self.concept_sq_err = torch.zeros(n_concepts, dtype=f64)  # (C,)
        self.concept_x_sum: Tensor | None = None  # (C, d)
        self.concept_x_sq = torch.zeros(n_concepts, dtype=f64)  # (C,)

    def to(self, device: torch.device | str) -> ProbeCounts:
        """Move every accumulator to ``device`` (in place); returns self."""
        for key, value in vars(self).items():
            if isinstance(value, Tensor):
                setattr(self, key, value.to(device))
        return self

    _CONCEPT_ROWS = ("tp", "concept_tokens", "concept_l0_sum", "concept_sq_err", "concept_x_sq", "concept_x_sum")
    """The accumulators with one row per concept: all sums over tokens, so concepts merge by adding rows."""

    def regrouped(self, lookup: Tensor, n_concepts: int) -> ProbeCounts:
        """A copy whose concept ``lookup[c]`` holds the sums of every old concept ``c`` mapped to it (exact: every
        per-concept accumulator is a sum over tokens). ``lookup``: (old concepts,) int64 new ids < ``n_concepts``."""
        self._ensure_concepts(int(lookup.numel()))
        out = copy.copy(self)
        out.n_concepts = n_concepts
        index = lookup.to(self.tp.device)
        for key in self._CONCEPT_ROWS:
            rows = getattr(self, key)
            if rows is not None:
                merged = torch.zeros((n_concepts, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
                setattr(out, key, merged.index_add_(0, index, rows))
        return out

    def _ensure_concepts(self, n_concepts: int) -> None:
        if n_concepts <= self.n_concepts:
            return
        self.n_concepts = n_concepts
        for key in self._CONCEPT_ROWS:
            rows = getattr(self, key)
            if rows is not None:
                setattr(self, key, _grow_rows(rows, n_concepts))

    @torch.no_grad()
    def update(self, z: Tensor, labels: Tensor, x: Tensor | None = None, x_hat: Tensor | None = None) -> None:
        """Add one batch: ``z`` (b, n) latent activations, ``labels`` (b,) int concept ids (``< 0``: none),
        and optionally the input ``x`` (b, d) with its reconstruction ``x_hat`` (b, d)."""
        z = z.detach().float()
        if self.active_count.device != z.device:
            self.to(z.device)
        labels = labels.to(device=z.device, dtype=torch.long)
        b = z.shape[0]
        active = (z > ACTIVE_THRESHOLD).float()  # (b, n)
        tok_l0 = active.sum(dim=1)  # (b,)
        labelled = labels >= 0
        if labelled.any():
            self._ensure_concepts(int(labels.max()) + 1)
        onehot = torch.zeros(b, self.n_concepts, device=z.device)  # (b, C); all-zero rows for no label
        rows = labelled.nonzero(as_tuple=True)[0]
        onehot[rows, labels[rows]] = 1.0

        self.n_tokens += b
        self.n_labelled += int(rows.numel())
        self.l0_sum += tok_l0.double().sum()
        self.active_count += active.sum(dim=0).double()
        self.tp += (onehot.T @ active).double()  # (C, n); exact: per-batch counts < 2^24
        self.concept_tokens += onehot.sum(dim=0).double()
        self.concept_l0_sum += (onehot.T @ tok_l0).double()
        if self.gram is not None:
            accumulate_gram(self.gram, z)  # (n, n) activation-profile Gram matrix
        if self.row_gram is not None:
            norms = z.norm(dim=1, keepdim=True)  # (b, 1)
            accumulate_gram(self.row_gram, z / norms.clamp(min=torch.finfo(z.dtype).tiny))

        if x is None or x_hat is None:
            return
        x = x.detach().to(device=z.device, dtype=torch.float64)
        x_hat = x_hat.detach().to(device=z.device, dtype=torch.float64)
        if self.shift is None:
            self.has_reconstruction = True
            self.shift = x.mean(dim=0)
            self.x_sum = torch.zeros(x.shape[1], dtype=torch.float64, device=z.device)
            self.concept_x_sum = torch.zeros(self.n_concepts, x.shape[1], dtype=torch.float64, device=z.device)
        assert self.x_sum is not None and self.concept_x_sum is not None
        xs = x - self.shift  # (b, d)
        err = ((x - x_hat) ** 2).sum(dim=1)  # (b,)
        sq = (xs**2).sum(dim=1)  # (b,)
        oh = onehot.double()
        self.sq_err_sum += err.sum()
        self.x_sum += xs.sum(dim=0)
        self.x_sq_sum += sq.sum()
        self.concept_sq_err += oh.T @ err
        self.concept_x_sum += oh.T @ xs
        self.concept_x_sq += oh.T @ sq

    def total_variance(self) -> float:
        """Sum over dims of Var(x_dim) over all tokens (population variance); NaN without reconstructions."""
        if not self.has_reconstruction or self.n_tokens == 0:
            return float("nan")
        assert self.x_sum is not None
        mean = self.x_sum / self.n_tokens
        return float(self.x_sq_sum) / self.n_tokens - float((mean**2).sum())

    def concept_variance(self) -> Tensor:
        """(C,) total variance of each concept's tokens; NaN where unknown (no tokens / no reconstruction)."""
        if not self.has_reconstruction or self.concept_x_sum is None:
            return torch.full((self.n_concepts,), float("nan"), dtype=torch.float64)
        cnt = self.concept_tokens
        mean = self.concept_x_sum / cnt.clamp(min=1).unsqueeze(1)  # (C, d)
        var = self.concept_x_sq / cnt.clamp(min=1) - (mean**2).sum(dim=1)
        return torch.where(cnt > 0, var, torch.full_like(var, float("nan")))
