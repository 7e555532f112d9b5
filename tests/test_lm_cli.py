"""`spade-lens train-lm` and `spade-lens sample`, in-process."""

import pytest
from _lm_helpers import one_thread, saved_corpus

from spade_lens.cli import main

TINY_FLAGS = ["--n-layers", "1", "--d-model", "32", "--n-heads", "2", "--d-head", "16", "--d-mlp", "64",
              "--batch-size", "16", "--lr", "0.01", "--warmup-steps", "2", "--eval-every", "5"]


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def test_train_then_sample(tmp_path, capsys):
    corpus = saved_corpus(tmp_path)
    code = main(["train-lm", "--corpus", str(corpus), "--out", str(tmp_path / "lm"), "--steps", "30",
                 "--no-progress", "--judge", "50", *TINY_FLAGS])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "trained 1 layers, d_model 32" in out and "grammatical samples:" in out
    assert (tmp_path / "lm" / "model.safetensors").is_file()

    code = main(["sample", "--model", str(tmp_path / "lm"), "--n", "40", "--show", "3", "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert len(lines) == 5 and lines[3].startswith("grammatical: ") and "of 40 samples" in lines[3]
    assert "grammar entropy per token" in lines[4]
    for line in lines[:3]:  # word/TAG for grammatical samples, a marker otherwise
        assert line.startswith("  [ungrammatical]") or all("/" in w for w in line.split())

    code = main(["train-lm", "--corpus", str(corpus), "--out", str(tmp_path / "lm"), "--steps", "30",
                 "--no-progress", "--judge", "0", "--resume", *TINY_FLAGS])
    assert code == 0 and "grammatical" not in capsys.readouterr().out


def test_train_on_a_missing_corpus_is_a_clean_error(tmp_path, capsys):
    code = main(["train-lm", "--corpus", str(tmp_path / "nowhere"), "--out", str(tmp_path / "lm")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("spade-lens train-lm: error: corpus: corpus path") and "does not exist" in err


def test_non_positive_steps_or_lr(tmp_path, capsys):
    corpus = saved_corpus(tmp_path)
    assert main(["train-lm", "--corpus", str(corpus), "--out", str(tmp_path / "lm"), "--steps", "0"]) == 2
    assert "LMTrainConfig.steps: expected a positive integer, got 0" in capsys.readouterr().err
    assert main(["train-lm", "--corpus", str(corpus), "--out", str(tmp_path / "lm"), "--lr", "-1"]) == 2
    assert "LMTrainConfig.lr: expected a positive number, got -1.0" in capsys.readouterr().err


def test_sample_from_a_folder_missing_a_file(tmp_path, capsys):
    (tmp_path / "lm").mkdir()
    assert main(["sample", "--model", str(tmp_path / "lm")]) == 2
    assert "config.json is missing" in capsys.readouterr().err
