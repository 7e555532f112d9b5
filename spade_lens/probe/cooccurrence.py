"""Latent co-occurrence: cosine similarity of activation profiles, grouped by each latent's best concept.

The *activation profile* of latent ``i`` is the vector of its activation values ``z_i`` over all probed
tokens. With the Gram matrix ``G = sum over tokens of z z^T`` (latents x latents), the cosine similarity of
latents ``i`` and ``j`` is ``G_ij / sqrt(G_ii G_jj)`` (0 when either latent never fires).
"""

from __future__ import annotations

import torch
from torch import Tensor

PAIR_CHUNK = 2**22
"""Upper bound on the (token, latent, latent) products one chunk of the sparse Gram update materialises."""


def accumulate_gram(gram: Tensor, z: Tensor) -> None:
    """``gram += z^T z`` in place ((n, n) float64 += (b, n)^T (b, n)), exploiting sparsity of ``z``.

    With at most ``m`` non-zeros per row and ``m < n / 32`` (TopK, SpaDE and most trained wide SAEs), the
    products ``z_ti z_tj`` of each row's non-zeros are scattered into ``gram`` (cost ``b m^2`` instead of the
    dense ``b n^2``), in row chunks of at most :data:`PAIR_CHUNK` products; otherwise one dense matmul.
    """
    b, n = z.shape
    if b == 0:
        return
    m = int((z != 0).sum(dim=1).max())
    if m == 0:
        return
    if 1024 * m * m >= n * n:  # measured on CPU: a scattered product costs ~1000x a matmul multiply-add
        gram += (z.T @ z).double()
        return
    vals, idx = z.abs().topk(m, dim=1)  # (b, m): every non-zero of each row (padding has value 0)
    vals = z.gather(1, idx).double()
    flat_gram = gram.view(-1)
    rows = max(1, PAIR_CHUNK // (m * m))
    for start in range(0, b, rows):
        v, i = vals[start : start + rows], idx[start : start + rows]
        prod = v.unsqueeze(2) * v.unsqueeze(1)  # (rows, m, m)
        flat = i.unsqueeze(2) * n + i.unsqueeze(1)  # (rows, m, m) positions in the flattened (n, n) gram
        flat_gram.index_add_(0, flat.reshape(-1), prod.reshape(-1))


def cosine_from_gram(gram: Tensor) -> Tensor:
    """(n, n) cosine similarity of activation profiles from their (n, n) Gram matrix; rows and columns of
    latents whose profile is zero are 0 (diagonal included)."""
    diag = gram.diagonal().clamp(min=0).sqrt()  # (n,)
    denom = diag.unsqueeze(0) * diag.unsqueeze(1)
    cos = torch.where(denom > 0, gram / denom.clamp(min=torch.finfo(gram.dtype).tiny), torch.zeros_like(gram))
    return cos.clamp(-1.0, 1.0)


def latent_concepts(f1: Tensor) -> Tensor:
    """(n,) each latent's best concept, ``argmax_c F1[c, i]`` of the (C, n) F1 matrix; -1 where the latent
    has F1 0 for every concept (dead, or firing only on unlabelled tokens)."""
    if f1.shape[0] == 0:
        return torch.full((f1.shape[1],), -1, dtype=torch.long)
    best_f1, best = f1.max(dim=0)
    return torch.where(best_f1 > 0, best, torch.full_like(best, -1))


def latent_order(f1: Tensor) -> Tensor:
    """(n,) a permutation of the latents grouped by best concept (concept 0 first, latents without a concept
    last), by decreasing F1 for that concept within a group (ties by latent index)."""
    concept = latent_concepts(f1)  # (n,)
    n = f1.shape[1]
    group = torch.where(concept >= 0, concept, torch.full_like(concept, f1.shape[0]))
    score = f1.max(dim=0).values if f1.shape[0] else torch.zeros(n, dtype=f1.dtype)
    # Sort by (group asc, score desc, index asc): stable sorts from the last key to the first.
    order = torch.arange(n)
    order = order[torch.sort(-score[order].double(), stable=True).indices]
    order = order[torch.sort(group[order], stable=True).indices]
    return order


def cross_concept_mass(cosine: Tensor, concepts: Tensor) -> float:
    """Share of the off-diagonal co-occurrence mass that lies between latents of different best concepts.

    Over the latents with a best concept (``concepts >= 0``, see :func:`latent_concepts`), with ``|cos|``
    summed over ordered pairs ``i != j``: ``sum_{concept_i != concept_j} |cos_ij| / sum_{i != j} |cos_ij|``.
    0 means latents only co-fire with latents of their own concept (a monosemantic dictionary), values near
    1 mean co-firing mostly crosses concepts. NaN when there is no off-diagonal mass.
    """
    keep = (concepts >= 0).nonzero(as_tuple=True)[0]
    cos = cosine[keep][:, keep].abs().double()
    c = concepts[keep]
    off = ~torch.eye(len(keep), dtype=torch.bool)
    total = float(cos[off].sum())
    if total <= 0:
        return float("nan")
    cross = float(cos[off & (c.unsqueeze(0) != c.unsqueeze(1))].sum())
    return cross / total


def stable_rank(matrix: Tensor) -> float:
    """``trace(M) / ||M||_2`` of a symmetric positive semi-definite ``M`` (n, n): how many dimensions its mass
    spreads over (1 when one direction holds it all, n for a multiple of the identity). The SpaDE paper reports it
    for the data-data and latent-latent co-occurrence matrices. NaN for a zero matrix."""
    m = matrix.double()
    if m.numel() == 0:
        return float("nan")
    top = float(torch.linalg.eigvalsh(m)[-1])
    return float(m.diagonal().sum()) / top if top > 0 else float("nan")
