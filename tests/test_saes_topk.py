"""TopK: sparse fast path equals the dense obvious one; AuxK revives a latent made dead on purpose."""

from __future__ import annotations

import torch
from _saes_helpers import D_SAE, activations, grads_on_two_threads, make_sae

from spade_lens.saes import TopKSAE


def dense_reference_loss(sae: TopKSAE, x: torch.Tensor) -> torch.Tensor:
    x_n = sae.normalize(x)
    pre = (x_n - sae.b_dec) @ sae.W_enc + sae.b_enc
    top = torch.topk(pre, sae.cfg.k, dim=-1)
    z = torch.zeros_like(pre).scatter(1, top.indices, top.values.relu())
    return ((z @ sae.W_dec + sae.b_dec) - x_n).pow(2).sum(-1).mean()


def test_k_active_and_fast_gradient_equals_dense() -> None:
    x = activations()
    sae = make_sae("topk", x=x)
    assert isinstance(sae, TopKSAE)
    out = sae(x)
    assert bool(((out.z != 0).sum(-1) <= sae.cfg.k).all())
    params = [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec]
    fast = torch.autograd.grad(out.mse_loss, params)
    ref = torch.autograd.grad(dense_reference_loss(sae, x), params)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_aux_loss_zero_without_dead_latents() -> None:
    x = activations()
    sae = make_sae("topk", x=x)
    with torch.no_grad():
        _check_aux(sae, x)


def _check_aux(sae: TopKSAE, x: torch.Tensor) -> None:
    assert float(sae(x).aux_loss) == 0.0
    assert float(sae(x, dead_mask=torch.zeros(D_SAE, dtype=torch.bool)).aux_loss) == 0.0
    assert float(sae(x, dead_mask=torch.ones(D_SAE, dtype=torch.bool)).aux_loss) > 0.0


def _killed_latent_sae() -> tuple[TopKSAE, torch.Tensor, torch.Tensor]:
    """TopK SAE whose latent 0 never fires (its pre-activation is -3 for every input); (sae, x, dead_mask)."""
    x = activations(n=256, seed=1)
    sae = make_sae("topk", x=x, k=6, k_aux=4, aux_coefficient=1.0)
    assert isinstance(sae, TopKSAE)
    with torch.no_grad():
        sae.W_enc[:, 0] = 0.0
        sae.b_enc[0] = -3.0
        assert int((sae.encode(x)[:, 0] > 0).sum()) == 0
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[0] = True
    return sae, x, dead


def test_auxk_revives_a_dead_latent() -> None:
    sae, x, dead = _killed_latent_sae()
    out = sae(x)  # without AuxK no gradient ever reaches the dead latent's encoder
    (out.mse_loss + out.aux_loss).backward()
    assert float(sae.W_enc.grad[:, 0].abs().max()) == 0.0 and float(sae.b_enc.grad[0]) == 0.0
    opt = torch.optim.Adam(sae.parameters(), lr=5e-2)
    for _ in range(40):
        opt.zero_grad()
        out = sae(x, dead_mask=dead)
        (out.mse_loss + out.aux_loss).backward()
        opt.step()
    with torch.no_grad():
        assert int((sae.encode(x)[:, 0] > 0).sum()) > 0


def test_gradients_are_bit_identical_on_two_threads():
    runs = grads_on_two_threads("topk", k=64)
    for other in runs[1:]:
        assert [k for k in runs[0] if not torch.equal(runs[0][k], other[k])] == []
