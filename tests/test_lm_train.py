"""Training: the loss falls, checkpoints, Ctrl-C and resume (bit-identical on CPU), bad corpora."""

import os
import signal

import pytest
import torch
from _lm_helpers import TINY, one_thread, saved_corpus, tiny_corpus, tiny_train
from _threads import torch_threads

from spade_lens.errors import SpadeLensError
from spade_lens.lm import LMConfig, fit, resolve_config, train_lm
from spade_lens.lm.checkpoint import load_checkpoint
from spade_lens.lm.data import evaluate_loss, pad_sequences
from spade_lens.lm.model import build_model


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_loss_falls_and_the_model_folder_is_written(tmp_path):
    corpus = tiny_corpus()
    model = train_lm(corpus, TINY, tiny_train(60), tmp_path / "lm", progress=False)
    assert not model.training
    assert sorted(os.listdir(tmp_path / "lm")) == [
        "checkpoint", "config.json", "grammar.pcfg", "model.safetensors", "provenance.json", "tokenizer.json"]
    state = load_checkpoint(tmp_path / "lm" / "checkpoint")
    history = state["history"]
    assert state["step"] == 60 and [h["step"] for h in history] == [10, 20, 30, 40, 50, 60]
    assert history[-1]["val_loss"] < history[0]["val_loss"] - 0.4
    untrained = build_model(resolve_config(TINY, longest_sequence=model.cfg.n_ctx, vocab_size=len(corpus.tokenizer)))
    val = pad_sequences([list(s) for s in corpus.dataset["validation"]["input_ids"]], corpus.tokenizer.pad_id)
    assert evaluate_loss(model, val) < evaluate_loss(untrained, val) - 1.0


def test_resume_after_ctrl_c_equals_an_uninterrupted_run(tmp_path):
    corpus = tiny_corpus()
    cfg = tiny_train(24, checkpoint_every=5)
    full = train_lm(corpus, TINY, cfg, tmp_path / "full", progress=False)

    def interrupt(step, model):
        if step == 13:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_lm(corpus, TINY, cfg, tmp_path / "cut", progress=False, callback=interrupt)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint")["step"] == 13  # saved on Ctrl-C, between steps
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = train_lm(corpus, TINY, cfg, tmp_path / "cut", progress=False, resume=True)
    a, b = _params(full), _params(resumed)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint")["history"] == \
        load_checkpoint(tmp_path / "full" / "checkpoint")["history"]


def test_sigint_stops_at_the_end_of_the_step_with_a_checkpoint(tmp_path):
    corpus = tiny_corpus()
    data = pad_sequences([list(s) for s in corpus.dataset["train"]["input_ids"]], corpus.tokenizer.pad_id)
    cfg = resolve_config(TINY, longest_sequence=int(data.lengths.max()), vocab_size=len(corpus.tokenizer))
    model = build_model(cfg, corpus.tokenizer)

    def press_ctrl_c(step, model):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    # Python's own handler, whatever the test runner inherited (a background job starts with SIGINT ignored)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(model, data, None, tiny_train(10), checkpoint_dir=tmp_path / "ckpt", progress=False,
                callback=press_ctrl_c, lm_config=cfg)
        assert load_checkpoint(tmp_path / "ckpt")["step"] == 3
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_resume_with_other_settings_is_refused(tmp_path):
    corpus = tiny_corpus()
    train_lm(corpus, TINY, tiny_train(5), tmp_path / "lm", progress=False)
    with pytest.raises(SpadeLensError, match=r"resume: LMTrainConfig\.lr is 0\.003 but the checkpoint .* used 0\.01"):
        train_lm(corpus, TINY, tiny_train(5, lr=0.003), tmp_path / "lm", progress=False, resume=True)
    with pytest.raises(SpadeLensError, match=r"resume: the checkpoint .* was trained with LMConfig"):
        train_lm(corpus, LMConfig(n_layers=1, d_model=16, n_heads=1, d_head=16, d_mlp=32), tiny_train(5),
                 tmp_path / "lm", progress=False, resume=True)


def test_train_from_a_saved_corpus_folder(tmp_path):
    model = train_lm(saved_corpus(tmp_path), TINY, tiny_train(3), None, progress=False)
    assert model.cfg.d_vocab == len(tiny_corpus().tokenizer)
    assert model.cfg.n_ctx == tiny_corpus().metadata["max_seq_len"]


def test_missing_corpus_folder(tmp_path):
    with pytest.raises(SpadeLensError, match=r"corpus: corpus path .*nowhere.* does not exist"):
        train_lm(tmp_path / "nowhere", TINY, tiny_train(3), None, progress=False)


def test_folder_that_is_not_a_corpus(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(SpadeLensError, match=r"corpus: corpus path .*junk.* is not a corpus: missing corpus\.json"):
        train_lm(tmp_path / "junk", TINY, tiny_train(3), None, progress=False)


def test_context_too_short_for_the_corpus():
    with pytest.raises(SpadeLensError, match=r"LMConfig\.n_ctx: got 4, but the corpus' longest sequence has"):
        train_lm(tiny_corpus(), LMConfig(n_layers=1, d_model=32, n_ctx=4), tiny_train(3), None, progress=False)


def test_not_a_corpus_object():
    with pytest.raises(SpadeLensError, match=r"corpus: expected a pcfg\.Corpus or the path of a saved corpus, got int"):
        train_lm(42, TINY, tiny_train(3), None, progress=False)


def test_training_into_an_unrelated_folder_is_refused_before_training(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SpadeLensError, match=r"out_dir .* exists and is not a model folder"):
        train_lm(tiny_corpus(), TINY, tiny_train(3), tmp_path, progress=False)


def test_two_trainings_with_one_seed_are_bit_identical_on_two_threads():
    """On more than one thread the embedding gradient used to accumulate in a timing-dependent order (last bits
    differed between calls); training switches torch's deterministic algorithms on for CPU runs and restores the
    caller's setting after."""
    with torch_threads(2):
        runs = [train_lm(tiny_corpus(), TINY, tiny_train(steps=6, batch_size=128, eval_every=0), None,
                         progress=False).state_dict() for _ in range(4)]
    for other in runs[1:]:
        assert [k for k in runs[0] if not torch.equal(runs[0][k], other[k])] == []
    assert not torch.are_deterministic_algorithms_enabled()
