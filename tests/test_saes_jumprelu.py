"""JumpReLU: forward is pre * 1[pre > theta]; the threshold gradient is the rectangle-kernel estimator."""

from __future__ import annotations

import math

import torch
from _saes_helpers import activations, make_sae

from spade_lens.saes import JumpReLUSAE
from spade_lens.saes.jumprelu import JumpReLUFunction, StepFunction

PRE = torch.tensor([[0.50, 1.00, 0.20], [0.53, 0.20, 0.49]], dtype=torch.float64)
THETA = torch.tensor([0.51, 0.30, 0.50], dtype=torch.float64)
EPS = 0.05
# rect((pre - theta) / eps) on (-1/2, 1/2): latent 0 both rows, latent 1 none, latent 2 row 1 only.
RECT_COUNT = torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)


def test_jumprelu_function_hand_case() -> None:
    theta = THETA.clone().requires_grad_()
    pre = PRE.clone().requires_grad_()
    z = JumpReLUFunction.apply(pre, theta, EPS)
    torch.testing.assert_close(z.detach(), PRE * (PRE > THETA))
    z.sum().backward()
    torch.testing.assert_close(theta.grad, -(THETA / EPS) * RECT_COUNT)  # [-20.4, 0, -10]
    torch.testing.assert_close(pre.grad, (PRE > THETA).double())


def test_step_function_hand_case() -> None:
    theta = THETA.clone().requires_grad_()
    pre = PRE.clone().requires_grad_()
    h = StepFunction.apply(pre, theta, EPS)
    torch.testing.assert_close(h.detach(), (PRE > THETA).double())
    h.sum().backward()
    torch.testing.assert_close(theta.grad, -(1 / EPS) * RECT_COUNT)  # [-40, 0, -20]
    assert pre.grad is None


def test_sae_l0_gradient_on_log_threshold_matches_estimator() -> None:
    x = activations(n=64)
    sae = make_sae("jumprelu", x=x, l0_coefficient=0.5, bandwidth=0.2, init_threshold=0.3)
    assert isinstance(sae, JumpReLUSAE)
    out = sae(x)
    (g,) = torch.autograd.grad(out.sparsity_loss, [sae.log_threshold])
    with torch.no_grad():
        pre = sae.pre_activations(sae.normalize(x))
        theta = sae.threshold
        rect = (((pre - theta) / 0.2).abs() < 0.5).float().sum(0)
        expected = 0.5 * (-(1 / 0.2) * rect / x.shape[0]) * theta  # chain rule through theta = exp(log_theta)
        torch.testing.assert_close(g, expected)
        torch.testing.assert_close(out.sparsity_loss, 0.5 * (pre > theta).float().sum(-1).mean())
        torch.testing.assert_close(theta, torch.full_like(theta, 0.3))
        assert math.isclose(float(sae.log_threshold[0]), math.log(0.3), rel_tol=1e-6)
