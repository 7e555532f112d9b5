"""The trainer's small parts: schedules, dead-latent tracking, the batch stream, normalisation, W&B hook-up."""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch
from _training_helpers import batches_of, make_acts, one_torch_thread  # noqa: F401 (autouse fixture)

from spade_lens.errors import SpadeLensError
from spade_lens.saes import create_sae
from spade_lens.training import (
    DeadLatentTracker,
    SAETrainConfig,
    estimate_normalization,
    learning_rate,
    sparsity_coefficient,
    train_saes,
)
from spade_lens.training.stream import batch_stream


def test_learning_rate_warms_up_then_decays_by_cosine_to_final():
    cfg = SAETrainConfig(steps=12, lr=1e-2, final_lr=1e-4, warmup_steps=2)
    lrs = [learning_rate(i, cfg) for i in range(12)]
    assert lrs[0] == pytest.approx(5e-3) and lrs[1] == pytest.approx(1e-2)
    assert lrs[2] == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-4)
    # step 6 is 4 of the 9 intervals of the 10 decay steps (2..11)
    assert learning_rate(6, cfg) == pytest.approx(1e-4 + (1e-2 - 1e-4) * 0.5 * (1 + math.cos(math.pi * 4 / 9)))
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:], strict=False))
    assert SAETrainConfig(steps=3, lr=1e-2).end_lr == pytest.approx(1e-4)  # default: lr / 100


def test_sparsity_coefficient_warmup():
    cfg = SAETrainConfig(steps=10, sparsity_warmup_steps=4)
    assert [sparsity_coefficient(i, cfg) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert sparsity_coefficient(0, SAETrainConfig(steps=10)) == 1.0


def test_dead_tracker_counts_tokens_since_fired():
    tracker = DeadLatentTracker(3, window=10)
    z = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    tracker.update(z)
    assert tracker.tokens_since_fired.tolist() == [0, 4, 4] and not tracker.dead_mask.any()
    tracker.update(z)
    tracker.update(torch.tensor([[0.0, 5e-7, 2.0], [0.0, 0.0, 0.0]]))  # 5e-7 is not "active"
    assert tracker.tokens_since_fired.tolist() == [2, 10, 0]
    assert tracker.dead_mask.tolist() == [False, True, False] and tracker.dead_fraction() == pytest.approx(1 / 3)


def test_stream_epochs_and_skip():
    data = [torch.full((1, 2), float(i)) for i in range(3)]
    take = lambda it, n: [int(b[0, 0]) for b, _ in zip(it, range(n), strict=False)]  # noqa: E731
    assert take(batch_stream(data), 7) == [0, 1, 2, 0, 1, 2, 0]  # re-iterable: epochs
    assert take(batch_stream(lambda: iter(data), skip=4), 3) == [1, 2, 0]  # callable: a fresh epoch per call
    assert take(batch_stream(iter(data)), 7) == [0, 1, 2]  # one-shot iterator: ends
    assert take(batch_stream([]), 3) == []


def test_estimate_normalization_gives_unit_mean_square_per_dim():
    x = make_acts(400, 8)
    mean, scale = estimate_normalization(list(x.split(100)))
    x_n = (x - mean) / scale
    assert torch.allclose(mean, x.mean(0), atol=1e-5)
    assert x_n.pow(2).sum(-1).mean().item() == pytest.approx(8, rel=1e-4)
    with pytest.raises(SpadeLensError, match="total variance 0.0"):
        estimate_normalization([torch.ones(4, 3)])


def test_given_norm_stats_are_used():
    from hooks import NormStats

    data = batches_of(make_acts(256, 16), 64)
    for stats in (NormStats(torch.full((16,), 2.0), 3.0), (torch.full((16,), 2.0), 3.0)):
        sae = create_sae("relu", d_in=16, d_sae=32)
        train_saes({"relu": sae}, data, SAETrainConfig(steps=1, batch_size=64), norm_stats=stats, progress=False)
        assert torch.equal(sae.norm_mean, torch.full((16,), 2.0)) and float(sae.norm_scale) == 3.0
    with pytest.raises(SpadeLensError, match="norm_stats is a str; expected hooks.NormStats"):
        train_saes({"relu": sae}, data, SAETrainConfig(steps=1), norm_stats="x", progress=False)


def test_dead_mask_reaches_the_sae():
    seen = []
    sae = create_sae("topk", d_in=16, d_sae=32, k=2)
    forward = sae.forward

    def spy(x, dead_mask=None):
        seen.append(dead_mask.clone())
        return forward(x, dead_mask=dead_mask)

    sae.forward = spy
    train_saes({"topk": sae}, batches_of(make_acts(512, 16), 64),
               SAETrainConfig(steps=8, batch_size=64, dead_window_tokens=128), progress=False)
    assert not seen[0].any() and seen[-1].dtype == torch.bool and seen[-1].shape == (32,)
    assert seen[-1].any()  # with k=2 of 32, some latents go silent for 128 tokens


def test_wandb_logging_when_installed_and_asked(monkeypatch):
    logged = []
    run = types.SimpleNamespace(log=lambda values, step: logged.append((step, values)), finish=lambda: None)
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: run
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = SAETrainConfig(steps=4, batch_size=64, log_every=2, wandb=True)
    train_saes({"relu": create_sae("relu", d_in=16, d_sae=32)}, batches_of(make_acts(256, 16), 64), cfg,
               progress=False)
    assert [step for step, _ in logged] == [2, 4] and "relu/nmse" in logged[0][1]
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed: a warning, training goes on
    with pytest.warns(UserWarning, match="wandb package is not installed"):
        train_saes({"relu": create_sae("relu", d_in=16, d_sae=32)}, batches_of(make_acts(256, 16), 64), cfg,
                   progress=False)
