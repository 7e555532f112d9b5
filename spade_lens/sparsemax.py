"""Sparsemax (Martins & Astudillo, 2016) with a partial-top-k forward and a sparse closed-form backward.

``sparsemax(v) = argmin_{p in simplex} ||p - v||^2 = max(v - tau, 0)`` with ``tau`` such that the result sums
to 1. The classic algorithm sorts each whole row (O(n log n)). Supports are usually small, so we sort only
the ``k`` largest entries of each row (``torch.topk``): if the support found among them is smaller than
``k`` it is the exact support; rows whose support fills all ``k`` candidates (so it may extend beyond them)
are redone with a full sort. The result is therefore always exact, and the backward
``g_in = s * (g - mean_{support} g)`` (``s`` the support mask) touches only the support.

Public: :class:`SparsemaxFunction` (the ``autograd.Function``), :func:`sparsemax` (plain function, any dim,
any float dtype, any device), :class:`Sparsemax` (module), and :func:`sparsemax_sort` (the plain full-sort
reference, for tests and benchmarks).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spade_lens.errors import SpadeLensError

DEFAULT_K = 64
"""Candidates per row of the partial sort when ``k`` is not given (capped at the row length)."""


def _threshold_from_sorted(vals: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of values sorted descending (rows, m) -> (tau (rows, 1), support size (rows, 1) int64).

    Computed in float32 at least (cumulative sums in half precision are too coarse).
    """
    work = vals if vals.dtype in (torch.float32, torch.float64) else vals.float()
    cums = work.cumsum(-1)
    ranks = torch.arange(1, work.shape[-1] + 1, device=work.device, dtype=work.dtype)
    support = (1 + ranks * work > cums).sum(-1, keepdim=True)  # the condition holds exactly for ranks <= size
    tau = (cums.gather(-1, support - 1) - 1) / support.to(work.dtype)
    return tau, support


def _check(x: Tensor, k: int | None) -> None:
    if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise SpadeLensError(f"sparsemax input must be a floating point tensor, got {got}")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise SpadeLensError(f"k must be a positive integer or None, got {k!r}")


def _forward_rows(rows: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(R, n) -> (out (R, n), candidate indices (R, k), support size (R, 1), fallback row mask (R,))."""
    n = rows.shape[-1]
    k = min(k, n)
    vals, idx = torch.topk(rows, k, dim=-1, sorted=True)
    tau, support = _threshold_from_sorted(vals)
    # Support filling all k candidates may continue past them: redo those rows exactly with a full sort.
    fallback = (support.squeeze(-1) == k) if k < n else torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
    if bool(fallback.any()):
        rows_fb = rows[fallback]
        tau_fb, support_fb = _threshold_from_sorted(torch.sort(rows_fb, dim=-1, descending=True).values)
        tau = tau.index_put((fallback,), tau_fb)
        support = support.index_put((fallback,), support_fb)
    out = rows - tau.to(rows.dtype)
    out.clamp_(min=0)
    return out, idx, support, fallback


class SparsemaxFunction(torch.autograd.Function):
    """``SparsemaxFunction.apply(x, dim, k)``: sparsemax along ``dim`` with ``k`` candidates per row."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, dim: int = -1, k: int | None = None) -> Tensor:
        moved = x.movedim(dim, -1)
        shape = moved.shape
        rows = moved.reshape(-1, shape[-1])
        out, idx, support, fallback = _forward_rows(rows, DEFAULT_K if k is None else k)
        ctx.dim = dim
        ctx.save_for_backward(out, idx, support, fallback)
        ctx.moved_shape = shape
        return out.reshape(shape).movedim(-1, dim)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None]:
        out, idx, support, fallback = ctx.saved_tensors
        g = grad_out.movedim(ctx.dim, -1).reshape(out.shape)
        kk = idx.shape[-1]
        g_sel = g.gather(-1, idx)  # (R, k)
        in_support = torch.arange(kk, device=idx.device) < support  # (R, k); supports are the first entries
        sel = torch.where(in_support, g_sel, 0)
        mean = sel.sum(-1, keepdim=True) / support.clamp(max=kk).to(g.dtype)
        grad_in = torch.zeros_like(g)
        grad_in.scatter_(-1, idx, torch.where(in_support, g_sel - mean, 0))
        if bool(fallback.any()):
            mask = out[fallback] > 0
            g_fb = g[fallback]
            mean_fb = (g_fb * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)
            grad_in[fallback] = (g_fb - mean_fb) * mask
        grad_in = grad_in.reshape(ctx.moved_shape).movedim(-1, ctx.dim)
        return grad_in, None, None


def sparsemax(x: Tensor, dim: int = -1, k: int | None = None) -> Tensor:
    """Sparsemax of ``x`` along ``dim``: non-negative, summing to 1, exact whatever ``k``.

    ``k`` is the number of candidates sorted per row (default :data:`DEFAULT_K`); rows whose support may be
    larger are redone with a full sort, so ``k`` only affects speed.
    """
    _check(x, k)
    if x.ndim == 0 or x.shape[dim] == 0:
        raise SpadeLensError(f"sparsemax needs a non-empty dim {dim}, got shape {tuple(x.shape)}")
    return SparsemaxFunction.apply(x, dim, k)


def sparsemax_sort(x: Tensor, dim: int = -1) -> Tensor:
    """Plain full-sort sparsemax (autograd through sort/cumsum/clamp): the slow, obvious reference."""
    _check(x, None)
    v = x.movedim(dim, -1)
    vals = torch.sort(v, dim=-1, descending=True).values
    cums = vals.cumsum(-1)
    ranks = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    support = (1 + ranks * vals > cums).sum(-1, keepdim=True)
    tau = (cums.gather(-1, support - 1) - 1) / support.to(v.dtype)
    return (v - tau).clamp(min=0).movedim(-1, dim)


class Sparsemax(nn.Module):
    """Module form of :func:`sparsemax`."""

    def __init__(self, dim: int = -1, k: int | None = None) -> None:
        super().__init__()
        _check(torch.zeros(1), k)
        self.dim = dim
        self.k = k

    def forward(self, x: Tensor) -> Tensor:
        return sparsemax(x, self.dim, self.k)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, k={self.k}"
