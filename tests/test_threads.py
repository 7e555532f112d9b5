"""The thread helper (spade_lens.threads) and the --threads flag of the training commands."""

from __future__ import annotations

import os

import pytest
import torch

from spade_lens import threads as th
from spade_lens.cli import build_parser, main
from spade_lens.errors import SpadeLensError


@pytest.fixture
def no_thread_env(monkeypatch):
    for name in th.ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_environment_variable_leaves_torch_its_choice(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert th.default_threads(10**12) == torch.get_num_threads()
    assert th.default_threads(1) == torch.get_num_threads()


def test_small_work_gets_one_thread(no_thread_env, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert th.default_threads(th.SMALL_WORK - 1) == 1
    assert th.default_threads(2 * 16 * 256) == 1


def test_large_work_gets_torch_default_whatever_the_load(no_thread_env, monkeypatch):
    monkeypatch.setattr(th, "_TORCH_DEFAULT", 4)
    for load in (0.0, 3.0, 9.0):  # the rule never looks at the load: same command, same thread count, same bits
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert th.default_threads(th.SMALL_WORK) == 4
        assert th.default_threads(None) == 4
    assert th.default_threads(1024 * 128 * 256) == 1  # the SAE stage of `spade-lens run`


def test_apply_threads_sets_and_returns_the_count(no_thread_env):
    assert th.apply_threads(1) == 1 and torch.get_num_threads() == 1
    assert th.apply_threads(None, work=1) == 1


@pytest.mark.parametrize("bad", [0, -2, True, 1.5, "2"])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(SpadeLensError, match=r"threads: received .*; expected a positive integer"):
        th.apply_threads(bad)


@pytest.mark.parametrize("command", ["train-sae", "sweep", "run", "train-lm"])
def test_training_commands_take_threads(command, tmp_path):
    extra = {"train-sae": ["--activations", "a", "--out", "o"], "sweep": ["--activations", "a", "--out", "o"],
             "run": [], "train-lm": ["--corpus", "c", "--out", "o"]}[command]
    args = build_parser().parse_args([command, *extra, "--threads", "3"])
    assert args.threads == 3


@pytest.mark.parametrize("command", ["train-sae", "sweep", "train-lm"])
def test_zero_threads_is_one_line_error(command, tmp_path, capsys):
    source = "--corpus" if command == "train-lm" else "--activations"
    code = main([command, source, str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--threads", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--threads: received 0; expected a positive integer" in err, err


class _Stop(Exception):
    pass


def test_run_sets_threads_per_stage_and_restores_them(no_thread_env, monkeypatch, tmp_path):
    """Without ``threads`` the language model trains on torch's own count and the run's small SAEs on one thread;
    with it, every stage uses it; torch's count is restored afterwards, also when a stage fails."""
    from spade_lens import pipeline

    seen: dict[str, int] = {}
    lm_stage = pipeline._lm_stage

    def record_lm(*args, **kwargs):
        seen["lm"] = torch.get_num_threads()
        return lm_stage(*args, **kwargs)

    def record_sae(*args, **kwargs):
        seen["saes"] = torch.get_num_threads()
        raise _Stop

    monkeypatch.setattr(th, "_TORCH_DEFAULT", 2)
    monkeypatch.setattr(pipeline, "_lm_stage", record_lm)
    monkeypatch.setattr(pipeline, "_sae_stage", record_sae)
    cfg = pipeline.RunConfig.quick(n_sentences=200, lm_steps=5, max_tokens=500, probe_tokens=200)
    for threads, expected in ((None, {"lm": 2, "saes": 1}), (3, {"lm": 3, "saes": 3})):
        torch.set_num_threads(1)
        with pytest.raises(_Stop):
            pipeline.run_pipeline(tmp_path / "run", cfg, progress=False, threads=threads)
        assert seen == expected
        assert torch.get_num_threads() == 1


def test_run_refuses_zero_threads_before_any_work(tmp_path, capsys):
    code = main(["run", "--quick", "--out", str(tmp_path / "run"), "--threads", "0"])
    assert code == 2
    assert "--threads: received 0; expected a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
