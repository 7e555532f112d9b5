"""Invariants that every registered SAE architecture must satisfy, plus the registry and config errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from _saes_helpers import ARCH_KWARGS, D_IN, D_SAE, activations, make_sae

from spade_lens.errors import SpadeLensError
from spade_lens.saes import (
    ARCHITECTURES,
    SAE,
    ReLUSAE,
    SAEOutput,
    create_sae,
    list_architectures,
    load_sae,
    register_sae,
)

ARCHS = list_architectures()


def test_builtin_architectures_registered() -> None:
    assert {"relu", "topk", "jumprelu", "spade"} <= set(ARCHS)
    assert set(ARCHITECTURES) == set(ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_equals_decode_of_encode(arch: str) -> None:
    x = activations()
    sae = make_sae(arch, x=x)
    out = sae(x)
    assert isinstance(out, SAEOutput)
    assert out.x_hat.shape == x.shape and out.z.shape == (x.shape[0], D_SAE)
    for loss in out[2:]:
        assert loss.shape == () and bool(torch.isfinite(loss))
    with torch.no_grad():
        z = sae.encode(x)
        torch.testing.assert_close(out.z.detach(), z, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.x_hat.detach(), sae.decode(z), rtol=1e-5, atol=1e-5)
    # leading dims are kept by encode / decode
    assert sae.encode(x.reshape(4, -1, D_IN)).shape == (4, x.shape[0] // 4, D_SAE)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_identical(arch: str, tmp_path) -> None:
    x = activations()
    sae = make_sae(arch, x=x)
    sae.save(tmp_path / "sae")
    loaded = load_sae(tmp_path / "sae")
    assert type(loaded) is type(sae) and loaded.cfg == sae.cfg
    with torch.no_grad():
        a, b = sae(x), loaded(x)
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)
    assert not list(tmp_path.glob("*.tmp-*"))


@pytest.mark.parametrize("arch", ARCHS)
def test_same_seed_same_weights(arch: str) -> None:
    a, b, c = make_sae(arch, seed=3), make_sae(arch, seed=3), make_sae(arch, seed=4)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert any(not torch.equal(p, r) for p, r in zip(a.parameters(), c.parameters(), strict=True))


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_training_lowers_loss(arch: str) -> None:
    x = activations(n=256)
    sae = make_sae(arch, x=x)
    opt = torch.optim.Adam([p for p in sae.parameters() if p.requires_grad], lr=1e-2)

    def total() -> torch.Tensor:
        out = sae(x)
        return out.mse_loss + out.sparsity_loss + out.aux_loss

    with torch.no_grad():
        first = float(total())
    for _ in range(50):
        opt.zero_grad()
        loss = total()
        loss.backward()
        opt.step()
        sae.post_step()
    with torch.no_grad():
        last = float(total())
    assert last < 0.8 * first, (first, last)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_trainable_parameter_gets_a_gradient(arch: str) -> None:
    x = activations()
    sae = make_sae(arch, x=x)
    out = sae(x, dead_mask=torch.ones(D_SAE, dtype=torch.bool))
    (out.mse_loss + out.sparsity_loss + out.aux_loss).backward()
    for name, p in sae.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name


@pytest.mark.parametrize("arch", ARCHS)
def test_float64_and_device_from_weights(arch: str) -> None:
    x = activations().double()
    sae = create_sae(arch, d_in=D_IN, d_sae=D_SAE, dtype=torch.float64, **ARCH_KWARGS.get(arch, {}))
    out = sae(x)
    assert out.x_hat.dtype == torch.float64 and out.z.dtype == torch.float64


@pytest.mark.parametrize("arch", ARCHS)
def test_input_width_mismatch(arch: str) -> None:
    sae = make_sae(arch)
    with pytest.raises(SpadeLensError, match=r"shape \(5, 7\), expected \(\.\.\., 8\)"):
        sae(torch.randn(5, 7))
    with pytest.raises(SpadeLensError, match="shape"):
        sae.encode(torch.randn(5, 9))
    with pytest.raises(SpadeLensError, match=r"z has shape \(5, 3\)"):
        sae.decode(torch.randn(5, 3))
    with pytest.raises(SpadeLensError, match="dead_mask"):
        sae(torch.randn(5, D_IN), dead_mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(SpadeLensError, match="floating point"):
        sae(torch.ones(5, D_IN, dtype=torch.int64))


def test_unknown_architecture_lists_registered() -> None:
    with pytest.raises(SpadeLensError, match="unknown SAE architecture 'gated'.*jumprelu, relu, spade, topk"):
        create_sae("gated", d_in=4, d_sae=8)


def test_register_twice_raises() -> None:
    with pytest.raises(SpadeLensError, match="'relu' is already registered"):
        register_sae("relu", ReLUSAE)


def test_unknown_kwarg_names_accepted_ones() -> None:
    with pytest.raises(SpadeLensError, match="unknown argument.*kk.*accepts: aux_coefficient, k, k_aux"):
        create_sae("topk", d_in=4, d_sae=8, kk=3)


@pytest.mark.parametrize(
    ("arch", "kwargs", "match"),
    [
        ("topk", {"k": 9}, r"k must be <= d_sae \(8\), got k=9"),
        ("topk", {"k": 0}, "k must be a positive integer"),
        ("topk", {"k": 2, "k_aux": 20}, "k_aux must be <= d_sae"),
        ("topk", {"k": 2, "aux_coefficient": -1.0}, "aux_coefficient must be a finite number >= 0, got -1.0"),
        ("relu", {"l1_coefficient": -0.1}, "l1_coefficient must be a finite number >= 0"),
        ("jumprelu", {"l0_coefficient": -2}, "l0_coefficient must be"),
        ("jumprelu", {"bandwidth": 0.0}, "bandwidth must be a finite number > 0"),
        ("jumprelu", {"init_threshold": -1.0}, "init_threshold must be"),
        ("spade", {"kds_coefficient": -1e-3}, "kds_coefficient must be"),
        ("spade", {"lambda_init": 0.0}, "lambda_init must be"),
        ("spade", {"candidates": 0}, "candidates must be a positive integer"),
    ],
)
def test_bad_config_values(arch: str, kwargs: dict, match: str) -> None:
    with pytest.raises(SpadeLensError, match=match):
        create_sae(arch, d_in=4, d_sae=8, **kwargs)


@pytest.mark.parametrize(("d_in", "d_sae"), [(0, 8), (4, -1), (4.5, 8), (True, 8)])
def test_bad_widths(d_in: object, d_sae: object) -> None:
    with pytest.raises(SpadeLensError, match="d_in must be|d_sae must be"):
        create_sae("relu", d_in=d_in, d_sae=d_sae)


def test_set_normalization_validates() -> None:
    sae = make_sae("relu")
    with pytest.raises(SpadeLensError, match=r"mean must have shape \(8,\)"):
        sae.set_normalization(torch.zeros(3), 1.0)
    with pytest.raises(SpadeLensError, match="scale must be one finite number > 0"):
        sae.set_normalization(torch.zeros(D_IN), 0.0)
    with pytest.raises(SpadeLensError, match="mean must be finite"):
        sae.set_normalization(torch.full((D_IN,), float("nan")), 1.0)


def test_normalisation_is_applied_inside() -> None:
    x = activations()
    sae = make_sae("relu", x=x)
    x_n = (x - sae.norm_mean) / sae.norm_scale
    pre = (x_n - sae.b_dec) @ sae.W_enc + sae.b_enc
    torch.testing.assert_close(sae.encode(x), pre.relu())
    out = sae(x)
    expected = ((out.x_hat - x) / sae.norm_scale).pow(2).sum(-1).mean()
    torch.testing.assert_close(out.mse_loss, expected, rtol=1e-4, atol=1e-5)


def test_configs_are_flat_dataclasses() -> None:
    for arch in ARCHS:
        cls: type[SAE] = ARCHITECTURES[arch]
        cfg_cls = cls.config_class
        assert dataclasses.is_dataclass(cfg_cls) and cfg_cls.architecture == arch
        for f in dataclasses.fields(cfg_cls):
            assert not dataclasses.is_dataclass(f.type)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("arch", ARCHS)
def test_cuda_matches_cpu(arch: str) -> None:
    x = activations()
    cpu = make_sae(arch, x=x)
    gpu = make_sae(arch, x=x).to("cuda")
    out_c = cpu(x, dead_mask=torch.ones(D_SAE, dtype=torch.bool))
    out_g = gpu(x.cuda(), dead_mask=torch.ones(D_SAE, dtype=torch.bool, device="cuda"))
    for a, b in zip(out_c, out_g, strict=True):
        torch.testing.assert_close(b.detach().cpu(), a.detach(), rtol=1e-3, atol=1e-4)
    (out_g.mse_loss + out_g.sparsity_loss + out_g.aux_loss).backward()
    (out_c.mse_loss + out_c.sparsity_loss + out_c.aux_loss).backward()
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
        if p.requires_grad:
            torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-3, atol=1e-4, msg=name)
