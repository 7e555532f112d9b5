"""The paper's synthetic concept-geometry datasets (DESIGN.md section 6), seeded and of any size.

* :func:`separability_dataset`: 6 isotropic 2-D Gaussians whose centres sit at angles 0, 60, ..., 300
  degrees with radii alternating 1.5 (outer, at 0/120/240) and 0.5 (inner, at 60/180/300), per-dimension
  variance 0.022. The outer clusters are linearly separable from the rest; the inner ones lie inside the
  triangle of the outer ones (its inradius is 0.75), so no half-space picks out an inner cluster alone.
* :func:`heterogeneity_dataset`: 5 Gaussians in 128-D with intrinsic dimensions 6, 14, 30, 62, 126. Concept
  ``c`` has variance ``0.02 / d_c`` on each of the first ``d_c`` coordinates and none elsewhere, so all
  concepts have the same total variance 0.02 but spread it over different numbers of directions. Our choice
  for separating them (the paper places the Gaussians at different means): each concept's mean is a random
  direction (uniform on the sphere, from the seed) of norm ``mean_norm`` = 1, far larger than the clusters'
  own spread (total standard deviation ``sqrt(0.02)`` ~ 0.14), so the concepts never overlap.

Both return a :class:`SyntheticDataset` ``(x, labels, names)``: ``x`` (n, d) float32, ``labels`` (n,) int64
concept ids, ``names`` the concept names. Samples are split as evenly as possible between the concepts (the
first ``n mod C`` concepts get one more) and shuffled; the same seed gives the same tensors.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from spade_lens.errors import SpadeLensError

SEPARABILITY_VARIANCE = 0.022
"""Per-dimension variance of each separability cluster."""
SEPARABILITY_RADII = (1.5, 0.5)
"""Radii of the separability centres, alternating from angle 0."""
HETEROGENEITY_DIMS = (6, 14, 30, 62, 126)
"""Intrinsic dimensions of the heterogeneity concepts."""
HETEROGENEITY_TOTAL_VARIANCE = 0.02
"""Total variance of each heterogeneity concept (``0.02 / d_c`` on each of its ``d_c`` coordinates)."""


class SyntheticDataset(NamedTuple):
    x: Tensor
    """(n, d) float32 points."""
    labels: Tensor
    """(n,) int64 concept id of each point."""
    names: list[str]
    """Name of each concept id."""


def _check_n_seed(n: int, seed: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise SpadeLensError(f"n: received {n!r}; expected a positive int")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SpadeLensError(f"seed: received {seed!r}; expected an int")


def _balanced_labels(n: int, n_concepts: int, gen: torch.Generator) -> Tensor:
    """(n,) int64 concept ids, as balanced as possible, in a seeded random order."""
    labels = torch.arange(n, dtype=torch.long) % n_concepts
    return labels[torch.randperm(n, generator=gen)]


def separability_centres() -> Tensor:
    """(6, 2) float32 centres of the separability clusters, at angles 0, 60, ..., 300 degrees."""
    angles = torch.arange(6, dtype=torch.float64) * (math.pi / 3)
    radii = torch.tensor([SEPARABILITY_RADII[i % 2] for i in range(6)], dtype=torch.float64)
    return torch.stack([radii * torch.cos(angles), radii * torch.sin(angles)], dim=1).float()


def separability_names() -> list[str]:
    """Names of the 6 separability concepts: ``outer_000``, ``inner_060``, ..., ``inner_300``."""
    return [f"{'outer' if i % 2 == 0 else 'inner'}_{60 * i:03d}" for i in range(6)]


def separability_dataset(n: int, seed: int = 0) -> SyntheticDataset:
    """``n`` points of the 6-cluster 2-D separability dataset (see the module docstring)."""
    _check_n_seed(n, seed)
    gen = torch.Generator().manual_seed(seed)
    labels = _balanced_labels(n, 6, gen)
    noise = torch.randn(n, 2, generator=gen, dtype=torch.float64) * math.sqrt(SEPARABILITY_VARIANCE)
    x = separability_centres().double()[labels] + noise  # (n, 2)
    return SyntheticDataset(x.float(), labels, separability_names())


def heterogeneity_means(seed: int = 0, n_concepts: int = 5, d: int = 128, mean_norm: float = 1.0) -> Tensor:
    """(n_concepts, d) float32 concept means of :func:`heterogeneity_dataset` for the same arguments:
    uniformly random directions (seeded) scaled to norm ``mean_norm``."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(n_concepts, d, generator=gen, dtype=torch.float64)
    return (means / means.norm(dim=1, keepdim=True) * mean_norm).float()


def heterogeneity_dataset(
    n: int,
    seed: int = 0,
    dims: tuple[int, ...] = HETEROGENEITY_DIMS,
    d: int = 128,
    mean_norm: float = 1.0,
    means_seed: int | None = None,
) -> SyntheticDataset:
    """``n`` points of the heterogeneity dataset: concept ``c`` is a Gaussian with mean
    ``heterogeneity_means(means_seed, len(dims), d, mean_norm)[c]`` and variance ``0.02 / dims[c]`` on each of
    the first ``dims[c]`` coordinates (0 elsewhere). Concept names are ``dim_6``, ``dim_14``, ...

    ``seed`` draws the points; ``means_seed`` (default: ``seed``) draws the concept means, so fresh points of
    the same concepts (e.g. an evaluation set) come from another ``seed`` with the training ``means_seed``."""
    _check_n_seed(n, seed)
    means_seed = seed if means_seed is None else means_seed
    if isinstance(means_seed, bool) or not isinstance(means_seed, int):
        raise SpadeLensError(f"means_seed: received {means_seed!r}; expected an int or None")
    if isinstance(d, bool) or not isinstance(d, int) or d <= 0:
        raise SpadeLensError(f"d: received {d!r}; expected a positive int")
    if not dims or any(isinstance(k, bool) or not isinstance(k, int) or not 0 < k <= d for k in dims):
        raise SpadeLensError(f"dims: received {dims!r}; expected a non-empty tuple of ints in [1, d={d}]")
    if not mean_norm >= 0:
        raise SpadeLensError(f"mean_norm: received {mean_norm!r}; expected a number >= 0")
    means = heterogeneity_means(means_seed, len(dims), d, mean_norm).double()  # (C, d)
    gen = torch.Generator().manual_seed(seed + 1)
    labels = _balanced_labels(n, len(dims), gen)
    dim_t = torch.tensor(dims, dtype=torch.long)
    std = torch.sqrt(HETEROGENEITY_TOTAL_VARIANCE / dim_t.double())  # (C,)
    mask = (torch.arange(d).unsqueeze(0) < dim_t.unsqueeze(1)).double()  # (C, d): first d_c coordinates
    noise = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x = means[labels] + noise * (mask * std.unsqueeze(1))[labels]  # (n, d)
    return SyntheticDataset(x.float(), labels, [f"dim_{k}" for k in dims])
