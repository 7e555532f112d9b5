"""Normalisation statistics: a mean and one scalar scale so that ``(x - mean) / scale`` has E||.||^2 = d.

An SAE stores them (``sae.set_normalization(stats.mean, stats.scale)``) and applies them to raw activations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hooks.batches import LabelledBatch
from hooks.errors import HooksError


@dataclass(frozen=True)
class NormStats:
    """Centre-and-scale statistics of one hook's activations."""

    mean: Tensor
    """(d,) mean activation."""
    scale: float
    """sqrt(E||x - mean||^2 / d) over the sample: dividing by it makes E||.||^2 = d."""

    def __post_init__(self) -> None:
        if not isinstance(self.mean, Tensor) or self.mean.dim() != 1:
            raise HooksError(f"mean: expected a 1-D tensor (d,), got {getattr(self.mean, 'shape', self.mean)!r}")
        if not (isinstance(self.scale, float) and math.isfinite(self.scale) and self.scale > 0):
            raise HooksError(f"scale: expected a positive finite float, got {self.scale!r}")

    @property
    def d(self) -> int:
        return int(self.mean.shape[0])

    def apply(self, x: Tensor) -> Tensor:
        """(..., d) raw -> (..., d) normalised, in x's dtype and device."""
        return (x - self.mean.to(x)) / self.scale

    def invert(self, x: Tensor) -> Tensor:
        """(..., d) normalised -> (..., d) raw."""
        return x * self.scale + self.mean.to(x)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": [float(v) for v in self.mean.tolist()], "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormStats:
        if not isinstance(data, dict) or set(data) != {"mean", "scale"}:
            raise HooksError(f"data: expected a dict with keys 'mean' and 'scale', got {data!r:.200}")
        return cls(torch.tensor(data["mean"], dtype=torch.float32), float(data["scale"]))


def estimate_norm_stats(sample: Tensor | Iterable[Tensor | LabelledBatch], n_max: int | None = None) -> NormStats:
    """Estimate :class:`NormStats` from a (n, d) tensor or an iterable of them / of LabelledBatch.

    Sums run in float64, so a large common mean does not cost precision. Reads at most ``n_max`` rows.
    """
    chunks = [sample] if isinstance(sample, Tensor) else sample
    n, total, total_sq = 0, None, 0.0
    for chunk in chunks:
        x = chunk.acts if isinstance(chunk, LabelledBatch) else chunk
        if not isinstance(x, Tensor) or x.dim() != 2:
            raise HooksError(f"sample: expected (n, d) tensors, got {getattr(x, 'shape', type(x).__name__)}")
        if n_max is not None:
            x = x[: n_max - n]
        x = x.double()
        total = x.sum(0) if total is None else total + x.sum(0)
        total_sq += float((x * x).sum())
        n += x.shape[0]
        if n_max is not None and n >= n_max:
            break
    if n < 2 or total is None:
        raise HooksError(f"sample: expected at least 2 rows to estimate statistics, got {n}")
    mean = total / n
    var = total_sq / n - float(mean @ mean)  # E||x - mean||^2
    if not var > 0:
        raise HooksError(f"sample: the {n} rows are all equal (variance {var}); cannot scale them")
    return NormStats(mean.float(), math.sqrt(var / mean.shape[0]))
