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


def test_an_interrupted_or_finished_training_is_never_silently_restarted(tmp_path, capsys):
    """Issue 11: train-lm after a Ctrl-C without --resume used to start afresh over the checkpoint."""
    from spade_lens.lm.checkpoint import load_checkpoint

    corpus, lm = saved_corpus(tmp_path), tmp_path / "lm"
    argv = ["train-lm", "--corpus", str(corpus), "--out", str(lm), "--no-progress", "--judge", "0", *TINY_FLAGS]
    assert main([*argv, "--steps", "4"]) == 0
    assert main([*argv, "--steps", "6"]) == 2
    assert "holds a trained model; pass overwrite=True (--overwrite)" in capsys.readouterr().err
    for path in lm.iterdir():  # what a Ctrl-C leaves: the checkpoint only
        if path.name != "checkpoint":
            path.unlink()
    assert main([*argv, "--steps", "6"]) == 2
    assert "holds the checkpoint of an interrupted training (step 4); pass resume=True (--resume)" in \
        capsys.readouterr().err
    assert load_checkpoint(lm / "checkpoint")["step"] == 4  # untouched
    assert main([*argv, "--steps", "4", "--resume"]) == 0 and (lm / "model.safetensors").is_file()
    assert main([*argv, "--steps", "3", "--overwrite"]) == 0
    assert load_checkpoint(lm / "checkpoint")["step"] == 3


def test_ctrl_c_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import spade_lens.lm

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(spade_lens.lm, "train_lm", interrupted)
    code = main(["train-lm", "--corpus", str(saved_corpus(tmp_path)), "--out", str(tmp_path / "lm")])
    assert code == 130
    assert "interrupted; the checkpoint of the last finished step is kept in OUT/checkpoint: run the same command " \
           "with --resume to continue" in capsys.readouterr().err


def test_an_unavailable_device_is_refused_before_any_work(tmp_path, capsys):
    corpus = saved_corpus(tmp_path)
    assert main(["train-lm", "--corpus", str(corpus), "--out", str(tmp_path / "lm"), "--device", "cuda:7"]) == 2
    assert "--device: 'cuda:7'" in capsys.readouterr().err and not (tmp_path / "lm").exists()
