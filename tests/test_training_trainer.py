"""The trainer: several SAEs side by side, logs, checkpoints, resume, Ctrl-C, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from _training_helpers import batches_of, make_acts, one_torch_thread  # noqa: F401 (autouse fixture)

from spade_lens.errors import SpadeLensError
from spade_lens.saes import create_sae, list_architectures
from spade_lens.training import SAETrainConfig, load_checkpoint, train_saes

D, WIDTH, BATCH = 16, 32, 64
ARCH_KWARGS = {"relu": {"l1_coefficient": 0.01}, "topk": {"k": 4}, "jumprelu": {}, "spade": {}}


def make_saes(archs=("relu", "topk")) -> dict:
    archs = [a for a in archs if a in list_architectures()]
    return {a: create_sae(a, d_in=D, d_sae=WIDTH, seed=1, **ARCH_KWARGS[a]) for a in archs}


def cfg(**kw) -> SAETrainConfig:
    base = dict(steps=12, batch_size=BATCH, lr=3e-3, warmup_steps=2, sparsity_warmup_steps=3, log_every=3,
                dead_window_tokens=4 * BATCH, norm_batches=2)
    base.update(kw)
    return SAETrainConfig(**base)


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_several_saes_side_by_side_lower_their_loss(tmp_path):
    saes = make_saes(tuple(ARCH_KWARGS))
    data = batches_of(make_acts(2048, D), BATCH)
    metrics = train_saes(saes, data, cfg(steps=30, log_every=10), out_dir=tmp_path, progress=False,
                         eval_batches=data[:4])
    assert set(metrics) == set(saes)
    log = read_log(tmp_path / "log.jsonl")
    for name in saes:
        train = [r for r in log if r["sae"] == name and r["kind"] == "train"]
        assert [r["step"] for r in train] == [10, 20, 30]
        assert train[-1]["mse_loss"] < train[0]["mse_loss"]
        for key in ("loss", "l0", "nmse", "dead_fraction", "lr", "tokens", "tokens_per_s", "aux_loss"):
            assert key in train[-1]
        assert metrics[name]["steps"] == 30 and metrics[name]["tokens"] == 30 * BATCH
        assert 0 <= metrics[name]["eval_dead_fraction"] <= 1 and metrics[name]["eval_nmse"] < 1
        assert (tmp_path / name / "cfg.json").is_file()  # final SAE folders
    assert any(r["kind"] == "eval" for r in log)


def test_normalisation_is_estimated_and_given_to_every_sae():
    saes = make_saes()
    x = make_acts(512, D)
    train_saes(saes, batches_of(x, BATCH), cfg(steps=2, norm_batches=8), progress=False)
    for sae in saes.values():
        x_n = (x - sae.norm_mean) / sae.norm_scale
        assert x_n.pow(2).sum(-1).mean().item() == pytest.approx(D, rel=1e-3)
        assert x_n.mean(0).abs().max().item() < 1e-4


def test_resume_equals_uninterrupted_and_ctrl_c_saves(tmp_path):
    data = batches_of(make_acts(512, D, seed=3), BATCH)  # 8 batches; 12 steps -> a second epoch
    config = cfg(steps=12, checkpoint_every=4)
    reference = make_saes()
    train_saes(reference, lambda: iter(data), config, out_dir=tmp_path / "a", progress=False)

    armed = [True]

    def source():  # a fresh, identical epoch per call
        for i, batch in enumerate(data):
            if armed[0] and i == 5:
                raise KeyboardInterrupt  # as if Ctrl-C arrived while fetching batch 5
            yield batch

    saes = make_saes()
    with pytest.raises(KeyboardInterrupt):
        train_saes(saes, source, config, out_dir=tmp_path / "b", progress=False)
    assert load_checkpoint(tmp_path / "b")["step"] == 5  # Ctrl-C saved the state after 5 steps
    armed[0] = False
    resumed = make_saes()  # fresh SAEs: everything comes from the checkpoint
    train_saes(resumed, source, config, out_dir=tmp_path / "b", progress=False, resume=True)
    for name in reference:
        ref_state, res_state = reference[name].state_dict(), resumed[name].state_dict()
        for key in ref_state:
            assert torch.equal(ref_state[key], res_state[key]), (name, key)
    with pytest.warns(UserWarning, match=r"differs from the checkpoint's in \['lr'\]"):
        train_saes(make_saes(), source, cfg(steps=12, checkpoint_every=4, lr=1e-2), out_dir=tmp_path / "b",
                   progress=False, resume=True)
    log = read_log(tmp_path / "b" / "log.jsonl")
    assert [r["step"] for r in log if r["sae"] == "relu"] == [3, 6, 9, 12]


def test_non_finite_activations_stop_with_step_and_keep_last_checkpoint(tmp_path):
    data = batches_of(make_acts(640, D), BATCH)
    data[7] = data[7].clone()
    data[7][3, 2] = float("nan")
    with pytest.raises(SpadeLensError, match=r"step 7 has non-finite activations.*relu"):
        train_saes(make_saes(), data, cfg(checkpoint_every=3), out_dir=tmp_path, progress=False)
    assert load_checkpoint(tmp_path)["step"] == 6


def test_non_finite_loss_names_step_and_sae(tmp_path):
    data = batches_of(make_acts(640, D), BATCH)
    data[4] = data[4] * 1e25  # finite, but the squared error overflows float32
    with pytest.raises(SpadeLensError, match=r"non-finite loss at step 4 for SAE 'relu'"):
        train_saes(make_saes(("relu",)), data, cfg(normalize=False, checkpoint_every=2), out_dir=tmp_path,
                   progress=False)
    assert load_checkpoint(tmp_path)["step"] == 4


def test_width_mismatch_names_sae_shape_and_expected():
    data = batches_of(make_acts(256, 8), BATCH)
    with pytest.raises(SpadeLensError, match=r"shape \(64, 8\), but SAE 'relu' expects \(batch, 16\)"):
        train_saes(make_saes(("relu",)), data, cfg(), progress=False)
    with pytest.raises(SpadeLensError, match=r"shape \(64, 8\), but SAE 'relu' expects \(batch, 16\)"):
        train_saes(make_saes(("relu",)), data, cfg(normalize=False), progress=False)


def test_labelled_batches_and_one_shot_iterators():
    from collections import namedtuple

    Labelled = namedtuple("Labelled", ["acts", "labels"])
    data = [Labelled(x, {}) for x in batches_of(make_acts(256, D), BATCH)]
    with pytest.warns(UserWarning, match="ran out after 4 of 12 steps"):
        metrics = train_saes(make_saes(("relu",)), iter(data), cfg(), progress=False)
    assert metrics["relu"]["steps"] == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of total_tokens and steps"),
        ({"steps": 3, "total_tokens": 10}, "exactly one of total_tokens and steps"),
        ({"steps": 0}, "steps must be an integer >= 1, got 0"),
        ({"steps": 3, "lr": -1.0}, r"lr must be a finite number > 0, got -1.0"),
        ({"steps": 3, "grad_clip": float("nan")}, "grad_clip must be a finite number >= 0"),
        ({"steps": 3, "adam_betas": (0.9, 1.0)}, r"adam_betas must be two numbers in \[0, 1\)"),
        ({"steps": 3, "dead_window_tokens": 0}, "dead_window_tokens must be an integer >= 1"),
        ({"steps": 3, "log_every": True}, "log_every must be an integer >= 1, got True"),
        ({"steps": 3, "lr_scale": {"spade": 0.0}}, r"lr_scale\['spade'\] must be a finite number > 0, got 0.0"),
        ({"steps": 3, "lr_scale": [("spade", 10.0)]}, "lr_scale must be a dict of SAE name -> factor"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(SpadeLensError, match=message):
        SAETrainConfig(**kwargs)


def test_total_tokens_sets_the_step_count():
    assert SAETrainConfig(total_tokens=1000, batch_size=64).total_steps == 16


def test_bad_arguments(tmp_path):
    data = batches_of(make_acts(256, D), BATCH)
    with pytest.raises(SpadeLensError, match="saes must be a non-empty dict"):
        train_saes({}, data, cfg(), progress=False)
    with pytest.raises(SpadeLensError, match=r"saes\['x'\] is a int; expected an SAE"):
        train_saes({"x": 3}, data, cfg(), progress=False)
    with pytest.raises(SpadeLensError, match="SAE name 'a/b' must be a folder-safe name"):
        train_saes({"a/b": make_saes(("relu",))["relu"]}, data, cfg(), progress=False)
    with pytest.raises(SpadeLensError, match="batches must be an iterable of batches or a callable"):
        train_saes(make_saes(("relu",)), 3, cfg(), progress=False)
    with pytest.raises(SpadeLensError, match="batch at step 0 is a str"):
        train_saes(make_saes(("relu",)), ["ab"], cfg(normalize=False), progress=False)
    with pytest.raises(SpadeLensError, match=r"batch at step 0 has shape \(0, 16\).*with batch >= 1"):
        train_saes(make_saes(("relu",)), [torch.zeros(0, D)], cfg(normalize=False), progress=False)

    with pytest.raises(SpadeLensError, match="no checkpoint at"):
        train_saes(make_saes(("relu",)), data, cfg(), out_dir=tmp_path, progress=False, resume=True)
    with pytest.raises(SpadeLensError, match="resume=True needs out_dir"):
        train_saes(make_saes(("relu",)), data, cfg(), progress=False, resume=True)
    with pytest.raises(SpadeLensError, match="cfg must be an SAETrainConfig"):
        train_saes(make_saes(("relu",)), data, {"steps": 3}, progress=False)


def test_a_one_row_batch_is_trained_on_and_logged():
    data = batches_of(make_acts(64 * 3 + 1, D), BATCH)  # the last batch has one row
    metrics = train_saes(make_saes(("relu",)), data, cfg(steps=4, log_every=1), progress=False)
    assert metrics["relu"]["tokens"] == 64 * 3 + 1 and metrics["relu"]["nmse"] != metrics["relu"]["nmse"]  # nan


def test_lr_scale_gives_one_sae_its_own_learning_rate():
    x = make_acts()
    fast_alone = make_saes(("relu",))
    train_saes(fast_alone, batches_of(x, BATCH), cfg(lr=3e-2), progress=False)
    side_by_side = {"slow": make_saes(("relu",))["relu"], "fast": make_saes(("relu",))["relu"]}
    train_saes(side_by_side, batches_of(x, BATCH), cfg(lr=3e-3, lr_scale={"fast": 10.0}), progress=False)
    slow, fast, alone = side_by_side["slow"].W_enc, side_by_side["fast"].W_enc, fast_alone["relu"].W_enc
    assert torch.allclose(fast, alone, rtol=1e-4, atol=1e-6)  # the same schedule, ten times higher
    assert not torch.allclose(slow, fast, atol=1e-3)


def test_lr_scale_for_an_sae_that_is_not_there():
    with pytest.raises(SpadeLensError, match=r"lr_scale: \['spade'\] are not SAEs of this run; expected some of \['relu'\]"):
        train_saes(make_saes(("relu",)), batches_of(make_acts(), BATCH), cfg(lr_scale={"spade": 10.0}), progress=False)
