"""Exact streaming histograms of each latent's nonzero activations, without knowing their range in advance.

Latent ``i`` counts its active values (``z > ACTIVE_THRESHOLD``) in ``bins`` bins of width ``2^e_i`` starting at 0:
bin ``j`` holds ``[j 2^e_i, (j + 1) 2^e_i)``. When a larger value arrives, the width doubles as often as needed
and neighbouring bins are added pairwise, which is exact because the new edges are old edges. So the counts are
integers that never depend on how the stream was batched, and they sum to the latent's number of firings.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spade_lens.errors import SpadeLensError
from spade_lens.probe import ACTIVE_THRESHOLD

_UNSET = -(2**30)  # exponent of a latent that has not fired yet


class ActivationHistogram:
    """Per-latent histograms of active values, ``bins`` (a power of two) linear bins from 0 to above the max."""

    def __init__(self, n_latents: int, bins: int = 32) -> None:
        if bins < 2 or bins & (bins - 1):
            raise SpadeLensError(f"bins: received {bins}; expected a power of two >= 2")
        self.bins = bins
        self.counts = torch.zeros(n_latents, bins, dtype=torch.int64)  # (n, bins)
        self.exponent = torch.full((n_latents,), _UNSET, dtype=torch.int64)  # (n,) bin width 2^exponent

    def update(self, z: Tensor) -> None:
        """Add one batch of latents ``z`` (b, n)."""
        z = z.detach().float().cpu()
        zmax = z.max(dim=0).values  # (n,) the largest active value wherever the latent fired
        fired = zmax > ACTIVE_THRESHOLD
        if not bool(fired.any()):
            return
        # Smallest e with zmax < bins * 2^e: frexp gives zmax / bins = m 2^p with m in [0.5, 1), so e = p.
        _, p = torch.frexp(zmax / self.bins)
        need = torch.where(fired, p.to(torch.int64), torch.full_like(self.exponent, _UNSET))
        grow = need > self.exponent
        first = grow & (self.exponent == _UNSET)
        self.exponent[first] = need[first]
        for d in torch.unique((need - self.exponent)[grow & ~first]).tolist():
            lat = (grow & ~first & (need - self.exponent == d)).nonzero(as_tuple=True)[0]
            self.counts[lat] = self._coarsen(self.counts[lat], int(d))
            self.exponent[lat] += d
        rows, lat = (z > ACTIVE_THRESHOLD).nonzero(as_tuple=True)
        # v / 2^e is exact in float32 (a power-of-two scaling), so the bins are exact.
        binned = torch.ldexp(z[rows, lat], -self.exponent[lat].float()).floor().long().clamp(max=self.bins - 1)
        flat = lat * self.bins + binned
        self.counts.view(-1).add_(torch.bincount(flat, minlength=self.counts.numel()))

    def _coarsen(self, counts: Tensor, d: int) -> Tensor:
        """(m, bins) counts with bins ``2^d`` times wider: groups of ``2^d`` neighbours added, zeros after."""
        group = min(2**d, self.bins)
        merged = counts.view(counts.shape[0], self.bins // group, group).sum(dim=2)
        out = torch.zeros_like(counts)
        out[:, : merged.shape[1]] = merged
        return out

    def latent(self, i: int) -> dict[str, object] | None:
        """``{"width": bin width, "counts": [...]}`` of latent ``i`` up to its last non-empty bin; None if it
        never fired."""
        e = int(self.exponent[i])
        if e == _UNSET:
            return None
        counts = self.counts[i].tolist()
        last = max(j for j, c in enumerate(counts) if c)
        return {"width": float(2.0**e), "counts": counts[: last + 1]}
