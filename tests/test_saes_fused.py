"""The fused training forms of the linear SAEs equal the plain encode / decode / loss path (values and gradients)."""

from __future__ import annotations

import pytest
import torch

from spade_lens.saes import SAE, create_sae
from spade_lens.saes.jumprelu import JumpReLUFunction, JumpReLUWithL0, StepFunction


def _grads(sae: SAE, x: torch.Tensor, fused: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    sae.zero_grad(set_to_none=True)
    x_n = sae.normalize(x)
    terms = sae.training_terms(x_n, None) if fused else SAE.training_terms(sae, x_n, None)
    x_hat_n, z, sparsity, aux = terms
    loss = (x_hat_n - x_n).pow(2).sum(-1).mean() + sparsity + aux
    loss.backward()
    values = [x_hat_n.detach(), z.detach(), sparsity.detach().reshape(1)]
    return values, [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in sae.parameters()]


@pytest.mark.parametrize("arch", ["relu", "jumprelu", "topk"])
def test_fused_training_terms_match_the_plain_path(arch):
    kwargs = {"jumprelu": {"init_threshold": 0.3, "bandwidth": 0.5}, "topk": {"k": 3}}.get(arch, {})
    sae = create_sae(arch, d_in=6, d_sae=20, seed=1, dtype=torch.float64, **kwargs)
    with torch.no_grad():  # a non-zero decoder bias and normalisation, so every term of the fused forms counts
        sae.b_dec.copy_(torch.linspace(-0.3, 0.4, 6, dtype=torch.float64))
        sae.set_normalization(torch.full((6,), 0.2, dtype=torch.float64), 1.5)
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fused_values, fused_grads = _grads(sae, x, fused=True)
    plain_values, plain_grads = _grads(sae, x, fused=False)
    for a, b in zip(fused_values + fused_grads, plain_values + plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert any(g.abs().sum() > 0 for g in fused_grads)
    if arch == "jumprelu":
        assert sae.log_threshold.grad.abs().sum() > 0  # some entries fell inside the kernel's window


def test_jumprelu_with_l0_gradients_equal_the_two_functions():
    gen = torch.Generator().manual_seed(3)
    pre = torch.randn(30, 12, generator=gen, dtype=torch.float64)
    theta = torch.rand(12, generator=gen, dtype=torch.float64) * 0.5 + 0.05
    gz = torch.randn(30, 12, generator=gen, dtype=torch.float64)
    gl = torch.randn(30, generator=gen, dtype=torch.float64)
    outs = []
    for fused in (True, False):
        p, t = pre.clone().requires_grad_(), theta.clone().requires_grad_()
        if fused:
            z, l0 = JumpReLUWithL0.apply(p, t, 0.4)
        else:
            z, l0 = JumpReLUFunction.apply(p, t, 0.4), StepFunction.apply(p, t, 0.4).sum(-1)
        ((z * gz).sum() + (l0 * gl).sum()).backward()
        outs.append((z.detach(), l0.detach(), p.grad, t.grad))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert outs[0][3].abs().sum() > 0


def test_jumprelu_with_l0_when_only_one_output_is_used():
    pre = torch.tensor([[0.1, 0.5, 0.29]], dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([0.3, 0.3, 0.3], dtype=torch.float64, requires_grad=True)
    _, l0 = JumpReLUWithL0.apply(pre, theta, 0.1)
    l0.sum().backward()
    # only the third entry is within eps / 2 = 0.05 of theta: dL0/dtheta = -1 / eps there
    torch.testing.assert_close(theta.grad, torch.tensor([0.0, 0.0, -10.0], dtype=torch.float64))
    assert pre.grad is None or pre.grad.abs().sum() == 0
