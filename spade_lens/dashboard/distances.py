"""SpaDE prototype distances: how far the tokens a latent fires on sit from its prototype.

For an SAE with prototypes (``distances(x_n)`` and ``normalize(x)``, as :class:`spade_lens.saes.spade.SpaDESAE`),
the Euclidean distance ``||x_n - w_i||`` in the SAE's normalised input space (where ``E||x_n||^2 = d_in``) is
summarised per latent over the tokens where it fires (count, mean, standard deviation, min, max) and, for
contrast, averaged over all tokens.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spade_lens.probe import ACTIVE_THRESHOLD


def has_prototypes(sae: Any) -> bool:
    """True for an SAE whose latents are distances to prototypes (it has ``distances`` and ``normalize``)."""
    return callable(getattr(sae, "distances", None)) and callable(getattr(sae, "normalize", None))


class PrototypeDistances:
    """Streaming per-latent statistics of prototype distances (float64 sums)."""

    def __init__(self, n_latents: int) -> None:
        f64 = torch.float64
        self.n_tokens = 0
        self.count = torch.zeros(n_latents, dtype=f64)  # (n,) firing tokens
        self.sum = torch.zeros(n_latents, dtype=f64)  # (n,) sum of distances over firing tokens
        self.sq_sum = torch.zeros(n_latents, dtype=f64)  # (n,) sum of squared distances over firing tokens
        self.min = torch.full((n_latents,), float("inf"), dtype=f64)  # (n,)
        self.max = torch.full((n_latents,), float("-inf"), dtype=f64)  # (n,)
        self.all_sum = torch.zeros(n_latents, dtype=f64)  # (n,) sum of distances over all tokens

    @torch.no_grad()
    def update(self, sae: Any, x: Tensor, z: Tensor) -> None:
        """Add one batch: the SAE's raw input ``x`` (b, d_in) and its latents ``z`` (b, n)."""
        dist = sae.distances(sae.normalize(x)).detach().clamp(min=0).sqrt().float().cpu()  # (b, n)
        rows, lat = (z.detach().cpu() > ACTIVE_THRESHOLD).nonzero(as_tuple=True)  # the firing entries
        on = dist[rows, lat].double()
        n = self.count.shape[0]
        self.n_tokens += dist.shape[0]
        self.all_sum += dist.sum(dim=0, dtype=torch.float64)
        self.count += torch.bincount(lat, minlength=n).double()
        self.sum += torch.bincount(lat, weights=on, minlength=n)
        self.sq_sum += torch.bincount(lat, weights=on * on, minlength=n)
        self.min.scatter_reduce_(0, lat, on, reduce="amin")
        self.max.scatter_reduce_(0, lat, on, reduce="amax")

    def latent(self, i: int) -> dict[str, float | None]:
        """Statistics of latent ``i``: ``mean``, ``std``, ``min``, ``max`` over its firings (None if it never
        fired) and ``mean_all`` over every token."""
        n = float(self.count[i])
        mean_all = float(self.all_sum[i]) / self.n_tokens if self.n_tokens else None
        if n == 0:
            return {"mean": None, "std": None, "min": None, "max": None, "mean_all": mean_all}
        mean = float(self.sum[i]) / n
        var = max(float(self.sq_sum[i]) / n - mean * mean, 0.0)
        return {"mean": mean, "std": var**0.5, "min": float(self.min[i]), "max": float(self.max[i]),
                "mean_all": mean_all}
