"""LMConfig / LMTrainConfig validation and resolution against a corpus."""

import pytest

from spade_lens.errors import SpadeLensError
from spade_lens.lm.config import LMConfig, LMTrainConfig, resolve_config


def test_defaults_are_the_papers_model():
    c = LMConfig()
    assert (c.n_layers, c.d_model, c.n_heads, c.d_head, c.d_mlp, c.act_fn, c.positional) == (
        2, 128, 2, 64, 512, "gelu", "standard")
    assert c.n_ctx is None and c.d_vocab is None
    t = LMTrainConfig()
    assert (t.lr, t.beta1, t.beta2, t.grad_clip) == (1e-3, 0.9, 0.95, 1.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, r"LMTrainConfig\.steps: expected a positive integer, got 0"),
    ({"steps": -5}, r"LMTrainConfig\.steps: expected a positive integer, got -5"),
    ({"lr": 0.0}, r"LMTrainConfig\.lr: expected a positive number, got 0\.0"),
    ({"lr": -1e-3}, r"LMTrainConfig\.lr: expected a positive number, got -0\.001"),
    ({"batch_size": 0}, r"LMTrainConfig\.batch_size: expected a positive integer"),
    ({"beta2": 1.0}, r"LMTrainConfig\.beta2: expected a number in \[0, 1\), got 1\.0"),
    ({"min_lr_ratio": 1.5}, r"LMTrainConfig\.min_lr_ratio: expected a number in \[0, 1\]"),
    ({"grad_clip": -1.0}, r"LMTrainConfig\.grad_clip: expected a non-negative number"),
    ({"eval_every": -1}, r"LMTrainConfig\.eval_every: expected a non-negative integer"),
])
def test_bad_train_config(kwargs, match):
    with pytest.raises(SpadeLensError, match=match):
        LMTrainConfig(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_layers": 0}, r"LMConfig\.n_layers: expected a positive integer, got 0"),
    ({"d_model": 12.5}, r"LMConfig\.d_model: expected a positive integer, got 12\.5"),
    ({"act_fn": "tanh"}, r"LMConfig\.act_fn: expected one of .*'gelu'.*, got 'tanh'"),
    ({"positional": "rotary"}, r"LMConfig\.positional: expected one of \('standard',\), got 'rotary'"),
    ({"n_ctx": 0}, r"LMConfig\.n_ctx: expected a positive integer, got 0"),
])
def test_bad_model_config(kwargs, match):
    with pytest.raises(SpadeLensError, match=match):
        LMConfig(**kwargs)


def test_resolve_derives_context_and_vocabulary():
    c = resolve_config(LMConfig(), longest_sequence=17, vocab_size=64)
    assert (c.n_ctx, c.d_vocab) == (17, 64)
    assert resolve_config(LMConfig(n_ctx=40), longest_sequence=17, vocab_size=64).n_ctx == 40


def test_context_shorter_than_the_data_is_an_error():
    with pytest.raises(SpadeLensError, match=r"LMConfig\.n_ctx: got 10, but the corpus' longest sequence has 17"):
        resolve_config(LMConfig(n_ctx=10), longest_sequence=17, vocab_size=64)


def test_vocabulary_other_than_the_tokenizers_is_an_error():
    with pytest.raises(SpadeLensError, match=r"LMConfig\.d_vocab: got 50, but the tokenizer has 64 tokens"):
        resolve_config(LMConfig(d_vocab=50), longest_sequence=17, vocab_size=64)


def test_round_trip_and_unknown_keys():
    c = LMConfig(n_ctx=20, d_vocab=30)
    assert LMConfig.from_dict(c.to_dict()) == c
    with pytest.raises(SpadeLensError, match=r"LMConfig: unknown keys \['bogus'\]"):
        LMConfig.from_dict({**c.to_dict(), "bogus": 1})
