"""SpaDE prototypes that die: resampling onto badly reconstructed inputs revives them (a test that fails
without it), deterministically and through a resume; k-means++ and data initialisation; the dead-prototype
auxiliary loss gives dead prototypes a gradient."""

from __future__ import annotations

import pytest
import torch

import spade_lens as sl
from spade_lens.errors import SpadeLensError
from spade_lens.training import SAETrainConfig, train_saes

D, WIDTH = 8, 32


def clusters(n: int = 2048, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, D, generator=g) * 4
    return centres[torch.randint(0, 4, (n,), generator=g)] + 0.5 * torch.randn(n, D, generator=g)


def far_spade(**kw) -> sl.saes.SpaDESAE:
    """Half the prototypes placed far from the data (they never enter a support and die)."""
    sae = sl.create_sae("spade", d_in=D, d_sae=WIDTH, seed=0, kds_coefficient=0.1, **kw)
    with torch.no_grad():
        sae.prototypes[WIDTH // 2:] += 12.0
        sae.W_dec.copy_(sae.prototypes)
    return sae


def dead_fraction(sae, x) -> float:
    z = sae.encode(x)
    return float(((z > 1e-6).sum(0) == 0).float().mean())


CFG = dict(steps=160, batch_size=128, lr=1e-2, dead_window_tokens=1024)


def test_resampling_revives_prototypes_far_from_the_data():
    x = clusters()
    batches = list(x.split(128))
    plain, resampled = far_spade(), far_spade(resample_every=20)
    train_saes({"plain": plain, "resampled": resampled}, batches, SAETrainConfig(**CFG), progress=False)
    assert dead_fraction(plain, x) >= 0.45  # the far half never comes back on its own
    assert dead_fraction(resampled, x) <= 0.1


def test_resampling_places_dead_prototypes_on_inputs_and_clears_their_optimiser_state():
    x = clusters(256)
    sae = far_spade(resample_every=1, resample_until=1.0)
    opt = torch.optim.Adam(sae.parameters())
    sae(x).mse_loss.backward()
    opt.step()
    dead = torch.zeros(WIDTH, dtype=torch.bool)
    dead[WIDTH // 2:] = True
    out = sae(x)
    idx = sae.resample(x, out.x_hat.detach(), dead, step=0, total_steps=10)
    assert torch.equal(idx, torch.arange(WIDTH // 2, WIDTH))
    x_n = sae.normalize(x)
    for p in sae.prototypes[idx]:
        assert bool((x_n == p).all(-1).any())
    assert torch.equal(sae.W_dec[idx], sae.prototypes[idx])
    again = far_spade(resample_every=1, resample_until=1.0)
    assert torch.equal(again.resample(x, out.x_hat.detach(), dead, 0, 10), idx)
    assert torch.equal(again.prototypes[idx], sae.prototypes[idx])  # seeded by the SAE's seed and the step
    half = far_spade(resample_every=1)  # resample_until 0.5: steps 1-5 of 10
    assert half.resample(x, out.x_hat.detach(), dead, step=4, total_steps=10) is not None
    assert half.resample(x, out.x_hat.detach(), dead, step=5, total_steps=10) is None
    assert sae.resample(x, out.x_hat.detach(), torch.zeros(WIDTH, dtype=torch.bool), 0, 10) is None


def test_trainer_clears_adam_moments_of_resampled_prototypes(monkeypatch):
    import spade_lens.training.trainer as trainer

    seen = {}
    real = trainer._clear_optimizer_rows

    def spy(slot, latents):
        real(slot, latents)
        state = slot.optimizer.state[slot.sae.prototypes]
        seen["rows"] = state["exp_avg"][latents].abs().sum().item() + state["exp_avg_sq"][latents].abs().sum().item()
        seen["latents"] = latents

    monkeypatch.setattr(trainer, "_clear_optimizer_rows", spy)
    x = clusters(1024)
    sae = far_spade(resample_every=5, resample_until=1.0)
    train_saes({"s": sae}, list(x.split(128)), SAETrainConfig(steps=12, batch_size=128, lr=1e-2,
                                                              dead_window_tokens=256), progress=False)
    assert seen["latents"].numel() > 0 and seen["rows"] == 0.0


def test_resume_with_resampling_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    import spade_lens.training.trainer as trainer

    x = clusters()
    batches = list(x.split(128))
    cfg = SAETrainConfig(checkpoint_every=30, **CFG)  # resumes from step 30; resampling at 20, 40, 60, 80
    ref = far_spade(resample_every=20)
    train_saes({"s": ref}, batches, cfg, progress=False)

    real = trainer._train_step
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 50:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "_train_step", failing)
    cut = far_spade(resample_every=20)
    with pytest.raises(KeyboardInterrupt):
        train_saes({"s": cut}, batches, cfg, out_dir=tmp_path, progress=False)
    monkeypatch.setattr(trainer, "_train_step", real)
    resumed = far_spade(resample_every=20)
    train_saes({"s": resumed}, batches, cfg, out_dir=tmp_path, progress=False, resume=True)
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("init", ["data", "kmeans++"])
def test_data_initialisations_put_every_prototype_on_an_input(init):
    x = clusters(512)
    sae = sl.create_sae("spade", d_in=D, d_sae=WIDTH, seed=3, init=init)
    sae.set_normalization(x.mean(0), 2.0)
    sae.init_from_batch(x)
    x_n = sae.normalize(x)
    assert all(bool((x_n == p).all(-1).any()) for p in sae.prototypes)
    assert torch.equal(sae.W_dec, sae.prototypes)


def test_kmeanspp_spreads_prototypes_over_the_clusters():
    # 4 clusters, one holding 97% of the points: uniform draws of 16 prototypes miss a small cluster with
    # probability 0.85 each, k-means++ (far points first) covers all four
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0] * D, [20.0] * D, [-20.0] * D, [20.0, -20.0] * (D // 2)])
    which = torch.cat([torch.zeros(970, dtype=torch.long), torch.tensor([1] * 10 + [2] * 10 + [3] * 10)])
    x = centres[which] + 0.3 * torch.randn(len(which), D, generator=g)
    sae = sl.create_sae("spade", d_in=D, d_sae=16, seed=0, init="kmeans++")
    sae.init_from_batch(x)
    owner = torch.cdist(sae.prototypes, centres).argmin(1)
    assert set(owner.tolist()) == {0, 1, 2, 3}
    uniform = sl.create_sae("spade", d_in=D, d_sae=16, seed=0, init="data")
    uniform.init_from_batch(x)
    assert len(set(torch.cdist(uniform.prototypes, centres).argmin(1).tolist())) < 4


def test_trainer_initialises_from_the_stream_head():
    x = clusters(1024)
    sae = sl.create_sae("spade", d_in=D, d_sae=WIDTH, seed=0, init="data")
    before = sae.prototypes.detach().clone()
    train_saes({"s": sae}, list(x.split(128)), SAETrainConfig(steps=1, batch_size=128, lr=1e-9), progress=False)
    assert not torch.allclose(before, sae.prototypes)
    x_n = sae.normalize(x)
    near = torch.cdist(sae.prototypes.detach(), x_n, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    assert float(near.max()) < 1e-3  # every prototype sits on an input (one tiny step later)


def low_dimensional_clusters(n: int = 4096, d: int = 32, rank: int = 3, seed: int = 0) -> torch.Tensor:
    """Five clusters in a 3-dimensional subspace of R^32: like a transformer's activations, the data spans few of
    the directions, so random N(0, I) prototypes are far from all of it and their own norm decides which win."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, rank, generator=g))[0].T  # (rank, d)
    centres = torch.randn(5, rank, generator=g) * 3
    return (centres[torch.randint(0, 5, (n,), generator=g)] + 0.4 * torch.randn(n, rank, generator=g)) @ basis


def test_dead_prototype_aux_loss_revives_the_reference_init_on_low_dimensional_data():
    x = low_dimensional_clusters()
    batches = list(x.split(128))
    cfg = SAETrainConfig(steps=200, batch_size=128, lr=1e-2, dead_window_tokens=2048)
    plain = sl.create_sae("spade", d_in=32, d_sae=64, seed=0, kds_coefficient=0.3)
    revived = sl.create_sae("spade", d_in=32, d_sae=64, seed=0, kds_coefficient=0.3, dead_aux_coefficient=30.0,
                            dead_aux_lambda_scale=0.1)
    train_saes({"plain": plain, "revived": revived}, batches, cfg, progress=False)
    assert dead_fraction(plain, x) >= 0.5  # most prototypes never enter a support
    assert dead_fraction(revived, x) <= 0.1


def test_dead_prototype_aux_loss_gives_dead_prototypes_a_gradient():
    x = clusters(256)
    sae = far_spade(dead_aux_coefficient=1.0)
    dead = torch.zeros(WIDTH, dtype=torch.bool)
    dead[WIDTH // 2:] = True
    out = sae(x, dead_mask=dead)
    assert float(out.aux_loss.detach()) > 0
    out.aux_loss.backward()
    grad = sae.prototypes.grad
    assert float(grad[WIDTH // 2:].abs().sum()) > 0
    assert float(grad[: WIDTH // 2].abs().sum()) == 0  # only the dead ones
    assert float(far_spade()(x, dead_mask=dead).aux_loss.detach()) == 0.0  # off by default


@pytest.mark.parametrize("kwargs, message", [
    ({"init": "zeros"}, "init must be one of"),
    ({"resample_every": -1}, "resample_every must be an integer >= 0"),
    ({"resample_until": 0.0}, "resample_until must be a number in \\(0, 1\\]"),
    ({"dead_aux_coefficient": -1.0}, "dead_aux_coefficient must be a finite number >= 0"),
    ({"dead_aux_lambda_scale": 0.0}, "dead_aux_lambda_scale must be a finite number > 0"),
])
def test_bad_revival_settings(kwargs, message):
    with pytest.raises(SpadeLensError, match=message):
        sl.create_sae("spade", d_in=D, d_sae=WIDTH, **kwargs)
