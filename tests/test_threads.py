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


@pytest.mark.parametrize("command", ["train-sae", "sweep", "run"])
def test_training_commands_take_threads(command, tmp_path):
    extra = {"train-sae": ["--activations", "a", "--out", "o"], "sweep": ["--activations", "a", "--out", "o"],
             "run": []}[command]
    args = build_parser().parse_args([command, *extra, "--threads", "3"])
    assert args.threads == 3


@pytest.mark.parametrize("command", ["train-sae", "sweep"])
def test_zero_threads_is_one_line_error(command, tmp_path, capsys):
    code = main([command, "--activations", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--threads", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--threads: received 0; expected a positive integer" in err, err
