"""Sparse building blocks shared by the TopK and SpaDE fast paths.

Both architectures pick, per input row, ``k`` latents out of ``n`` from a dense score matrix computed without
gradient, then need the gradient of only those ``k`` scores. :func:`gathered_dot` gives the selected dot
products ``x[b] . weight[idx[b, j]]`` with a sparse backward: the input gradient by ``embedding_bag`` and the
weight gradient ``G^T x`` by one sparse (CSR) matmul, instead of a dense (batch, n) gradient and a dense
matmul.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor


def sparse_transpose_matmul(idx: Tensor, g: Tensor, x: Tensor, n: int) -> Tensor:
    """``G^T @ x`` for G (batch, n) holding ``g`` at ``idx``: (batch, k), (batch, k), (batch, d) -> (n, d).

    Repeated indices within a row are summed, as a dense G built with ``index_add`` would.
    """
    batch, k = idx.shape
    flat = idx.reshape(-1)
    order = torch.argsort(flat, stable=True)  # a fixed order of equal indices: same bits on any thread count
    cols = torch.arange(batch, device=idx.device).repeat_interleave(k)[order]
    crow = torch.zeros(n + 1, dtype=torch.int64, device=idx.device)
    crow[1:] = torch.bincount(flat, minlength=n).cumsum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        gt = torch.sparse_csr_tensor(crow, cols, g.reshape(-1)[order].to(x.dtype), (n, batch))
        return gt @ x


class GatheredDot(torch.autograd.Function):
    """``out[b, j] = x[b] . weight[idx[b, j]]``, values read from a precomputed ``scores = x @ weight.T``.

    Inputs: x (batch, d), weight (n, d), idx (batch, k) int64, scores (batch, n) computed without gradient.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, idx: Tensor, scores: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight, idx)
        return scores.gather(1, idx)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, weight, idx = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.functional.embedding_bag(idx, weight, per_sample_weights=grad.to(weight.dtype),
                                                       mode="sum")
        if ctx.needs_input_grad[1]:
            grad_w = sparse_transpose_matmul(idx, grad, x, weight.shape[0])
        return grad_x, grad_w, None, None


def gathered_dot(x: Tensor, weight: Tensor, idx: Tensor, scores: Tensor) -> Tensor:
    """See :class:`GatheredDot`."""
    return GatheredDot.apply(x, weight, idx, scores)
