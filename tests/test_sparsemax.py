"""Sparsemax: exact against a plain full-sort reference, closed-form backward, simplex invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spade_lens.errors import SpadeLensError
from spade_lens.sparsemax import Sparsemax, SparsemaxFunction, sparsemax, sparsemax_sort


def reference(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Row by row in float64 with a full sort (Martins & Astudillo, Algorithm 1)."""
    v = x.double().movedim(dim, -1)
    flat = v.reshape(-1, v.shape[-1])
    out = torch.empty_like(flat)
    for r, row in enumerate(flat):
        srt = torch.sort(row, descending=True).values
        cums = torch.cumsum(srt, 0)
        ks = torch.arange(1, len(row) + 1, dtype=torch.float64)
        size = int((1 + ks * srt > cums).sum())
        tau = (cums[size - 1] - 1) / size
        out[r] = (row - tau).clamp(min=0)
    return out.reshape(v.shape).movedim(-1, dim).to(x.dtype)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


CASES = {
    "random": lambda: torch.randn(40, 300, generator=gen()),
    "huge": lambda: torch.randn(20, 100, generator=gen(1)) * 1e4,
    "tiny": lambda: torch.randn(20, 100, generator=gen(2)) * 1e-6,  # support = all entries
    "ties": lambda: torch.randint(0, 4, (30, 50), generator=gen(3)).float() * 0.25,
    "one_hot": lambda: torch.zeros(5, 70).index_fill_(1, torch.tensor([3]), 10.0),  # support = 1 entry
    "constant": lambda: torch.full((4, 33), 2.5),  # support = all, uniform
    "wide_support": lambda: torch.randn(8, 500, generator=gen(4)) * 0.01,
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("k", [1, 3, None, 10_000])
def test_matches_full_sort_reference(case: str, k: int | None) -> None:
    x = CASES[case]()
    out = sparsemax(x, k=k)
    torch.testing.assert_close(out, reference(x), rtol=0, atol=1e-6)


def test_support_one_and_all() -> None:
    x = CASES["one_hot"]()
    assert bool(((sparsemax(x) > 0).sum(-1) == 1).all())
    x = CASES["tiny"]()
    assert bool(((sparsemax(x, k=4) > 0).sum(-1) == x.shape[1]).all())


@pytest.mark.parametrize("dim", [0, 1, -1, 2])
def test_any_dim(dim: int) -> None:
    x = torch.randn(6, 7, 9, generator=gen(5))
    torch.testing.assert_close(sparsemax(x, dim=dim, k=2), reference(x, dim=dim), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes(dtype: torch.dtype) -> None:
    x = torch.randn(10, 40, generator=gen(6)).to(dtype)
    out = sparsemax(x, k=4)
    assert out.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 2e-2
    torch.testing.assert_close(out.double(), reference(x.double()), rtol=0, atol=tol)


def test_neg_inf_entries_are_outside_support() -> None:
    x = torch.randn(4, 20, generator=gen(7))
    x[:, ::2] = float("-inf")
    out = sparsemax(x, k=2)
    assert bool((out[:, ::2] == 0).all())
    torch.testing.assert_close(out.sum(-1), torch.ones(4))


@pytest.mark.parametrize("k", [1, 2, None])
def test_gradcheck_float64(k: int | None) -> None:
    x = (torch.randn(5, 6, 7, generator=gen(8), dtype=torch.float64) * 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: sparsemax(t, dim=1, k=k), (x,))


@pytest.mark.parametrize("k", [1, 5, None])
def test_backward_matches_autograd_of_reference(k: int | None) -> None:
    x = torch.randn(30, 80, generator=gen(9), dtype=torch.float64) * 0.3
    g = torch.randn(30, 80, generator=gen(10), dtype=torch.float64)
    a = x.clone().requires_grad_()
    sparsemax(a, k=k).backward(g)
    b = x.clone().requires_grad_()
    sparsemax_sort(b).backward(g)
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)


def test_closed_form_backward_on_support() -> None:
    x = torch.tensor([[1.0, 0.8, -3.0, 0.9]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[1.0, 2.0, 5.0, 6.0]], dtype=torch.float64)
    sparsemax(x, k=2).backward(g)
    # support {0, 1, 3}: g - mean(g on support) = g - 3 on it, 0 off it
    torch.testing.assert_close(x.grad, torch.tensor([[-2.0, -1.0, 0.0, 3.0]], dtype=torch.float64))


@settings(max_examples=40, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 40)),
        elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    ),
    st.one_of(st.none(), st.integers(1, 8)),
)
def test_rows_on_simplex(values: np.ndarray, k: int | None) -> None:
    out = sparsemax(torch.from_numpy(values), k=k)
    assert bool((out >= 0).all())
    torch.testing.assert_close(out.sum(-1), torch.ones(values.shape[0], dtype=torch.float64), rtol=0, atol=1e-9)


def test_module_and_function_agree() -> None:
    x = torch.randn(3, 11, generator=gen(11))
    torch.testing.assert_close(Sparsemax(dim=0, k=2)(x), SparsemaxFunction.apply(x, 0, None))
    assert "dim=0" in repr(Sparsemax(dim=0, k=2))


def test_bad_inputs() -> None:
    with pytest.raises(SpadeLensError, match="floating point"):
        sparsemax(torch.arange(5))
    with pytest.raises(SpadeLensError, match="k must be a positive integer"):
        sparsemax(torch.randn(2, 3), k=0)
    with pytest.raises(SpadeLensError, match="k must be a positive integer"):
        Sparsemax(k=-1)
    with pytest.raises(SpadeLensError, match="non-empty"):
        sparsemax(torch.randn(2, 0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    x = torch.randn(64, 500, generator=gen(12))
    torch.testing.assert_close(sparsemax(x.cuda(), k=4).cpu(), sparsemax(x, k=4), rtol=0, atol=1e-6)
