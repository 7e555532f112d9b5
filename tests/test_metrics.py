"""Metrics against plain reference formulas, streamed evaluation, and their bad-input errors."""

from __future__ import annotations

import pytest
import torch
from _training_helpers import IdentitySAE, make_acts, one_torch_thread  # noqa: F401 (autouse fixture)

from spade_lens.errors import SpadeLensError
from spade_lens.metrics import SAEEvaluation, dead_fraction, evaluate_sae, explained_variance, l0, nmse


def test_l0_counts_entries_above_threshold():
    z = torch.tensor([[0.0, 2e-6, 5e-7, 1.0], [3.0, 0.0, 0.0, 0.0]])
    assert l0(z) == pytest.approx(1.5)


def test_nmse_and_explained_variance_match_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 7, generator=g) * 3 + 2
    x_hat = x + 0.3 * torch.randn(50, 7, generator=g)
    mse = ((x - x_hat) ** 2).sum(1).mean()
    total_variance = x.var(0, unbiased=False).sum()
    assert nmse(x, x_hat) == pytest.approx(float(mse / total_variance), rel=1e-6)
    assert explained_variance(x, x_hat) == pytest.approx(1 - float(mse / total_variance), rel=1e-6)
    assert nmse(x, x) == 0.0
    assert nmse(x, x.mean(0, keepdim=True).expand_as(x)) == pytest.approx(1.0)
    assert nmse(10 * x, 10 * x_hat) == pytest.approx(nmse(x, x_hat), rel=1e-6)  # scale-free


def test_dead_fraction():
    assert dead_fraction(torch.tensor([0, 3, 0, 1])) == 0.5
    assert dead_fraction(torch.tensor([True, False, True, True])) == 0.25


def test_evaluate_sae_streams_the_same_figures():
    x = make_acts(300, 6)
    sae = IdentitySAE(6, "h")
    sae.encode = lambda t: torch.cat([t.relu(), (-t).relu()], -1) * (t.abs().sum(-1, keepdim=True) > 0)
    sae.decode = lambda z: 0.9 * (z[..., :6] - z[..., 6:])
    result = evaluate_sae(sae, list(x.split(64)))
    assert isinstance(result, SAEEvaluation) and result.n_tokens == 300
    z = torch.cat([x.relu(), (-x).relu()], -1)
    assert result.l0 == pytest.approx(l0(z))
    assert result.nmse == pytest.approx(nmse(x, 0.9 * x), rel=1e-6)
    assert result.explained_variance == pytest.approx(1 - result.nmse)
    assert result.dead_fraction == pytest.approx(dead_fraction((z > 1e-6).sum(0)))
    assert evaluate_sae(sae, list(x.split(64)), max_tokens=100).n_tokens == 100


def test_bad_inputs():
    x = torch.randn(4, 3)
    with pytest.raises(SpadeLensError, match=r"x and x_hat must be tensors of one shape.*\[\(4, 3\), \(4, 2\)\]"):
        nmse(x, x[:, :2])
    with pytest.raises(SpadeLensError, match="x has total variance 0.0"):
        nmse(torch.ones(5, 3), torch.zeros(5, 3))
    with pytest.raises(SpadeLensError, match=r"z must be a \(tokens, d_sae\) tensor"):
        l0(torch.ones(3))
    with pytest.raises(SpadeLensError, match=r"counts must be a non-empty \(d_sae,\) tensor"):
        dead_fraction(torch.zeros(2, 2))
    sae = IdentitySAE(3, "h")
    with pytest.raises(SpadeLensError, match=r"evaluation batch 0 has shape torch.Size\(\[4, 2\]\); expected \(batch, 3\)"):
        evaluate_sae(sae, [torch.randn(4, 2)])
    with pytest.raises(SpadeLensError, match="batches gave 0 tokens"):
        evaluate_sae(sae, [])
