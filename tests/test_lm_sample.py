"""Sampling (seeded, KV cache consistent with a full forward pass) and judging with the grammar."""

import random

import pytest
import torch
from _lm_helpers import one_thread, tiny_corpus, trained_model

from pcfg import grammaticality_rate, is_grammatical
from spade_lens.errors import SpadeLensError
from spade_lens.lm import judge_lm, sample_lm
from spade_lens.lm.sample import sample_ids, tag_sentence


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def test_sampling_is_seeded():
    model = trained_model()
    a = sample_lm(model, 20, seed=3)
    assert a == sample_lm(model, 20, seed=3)
    assert a != sample_lm(model, 20, seed=4)
    assert len(a) == 20 and all(isinstance(w, str) for s in a for w in s)


def test_sampled_tokens_follow_the_full_forward_distribution():
    """The key-value cache path gives the same next-token logits as running the whole prefix."""
    model = trained_model()
    raw = sample_ids(model, 4, seed=0, max_length=8)
    bos = model.tokenizer.bos_token_id
    for row in raw.ids:
        tokens = torch.tensor([[bos, *row]])
        full = model(tokens)[0]  # (L, V)
        from transformer_lens import TransformerLensKeyValueCache

        cache = TransformerLensKeyValueCache.init_cache(model.cfg, "cpu", 1)
        step = [model(tokens[:, i : i + 1], past_kv_cache=cache, attention_mask=torch.ones_like(tokens[:, i : i + 1]))[0, -1]
                for i in range(tokens.shape[1])]
        torch.testing.assert_close(torch.stack(step), full, atol=1e-4, rtol=1e-4)


def test_sampling_stops_at_eos_and_respects_max_length():
    model = trained_model()
    raw = sample_ids(model, 30, seed=1, max_length=4)
    eos = model.tokenizer.eos_token_id
    assert all(len(r) <= 3 and eos not in r for r in raw.ids)
    assert all(f == (len(r) < 3 or f) for r, f in zip(raw.ids, raw.finished, strict=True))


def test_grammaticality_of_corpus_sentences_and_shuffled_ones():
    corpus = tiny_corpus()
    sentences = [corpus.tokenizer.decode(ids) for ids in corpus.dataset["train"]["input_ids"][:200]]
    assert grammaticality_rate(corpus.grammar, sentences) == 1.0
    rng = random.Random(0)
    shuffled = [rng.sample(s, len(s)) for s in sentences if len(s) > 3]
    assert grammaticality_rate(corpus.grammar, shuffled) < 0.8


def test_judge_reports_rate_loss_and_entropy():
    model, grammar = trained_model(), tiny_corpus().grammar
    verdict = judge_lm(model, grammar, n=100, seed=0, n_loss=100)
    assert 0.0 <= verdict.grammaticality <= 1.0
    assert verdict.grammaticality == sum(verdict.grammatical) / 100
    assert verdict.grammatical == [is_grammatical(grammar, s) for s in verdict.samples] or not all(
        verdict.grammatical)
    assert verdict.entropy == pytest.approx(grammar.entropy_per_token())
    assert verdict.loss < 3.5  # an untrained model is at ~ln(64) = 4.2 nats/token
    assert verdict.samples == sample_lm(model, 100, seed=0)


def test_tags_come_from_the_parse():
    grammar = tiny_corpus().grammar
    assert tag_sentence(grammar, ["she", "sees", "big", "dog"]) == [
        ("she", "Pro"), ("sees", "V"), ("big", "Adj"), ("dog", "N")]
    assert tag_sentence(grammar, ["sees", "she"]) is None
    assert tag_sentence(grammar, ["<pad>"]) is None


@pytest.mark.parametrize("kwargs, match", [
    ({"n": -1}, r"n: expected a non-negative integer, got -1"),
    ({"temperature": 0.0}, r"temperature: expected a positive number, got 0\.0"),
    ({"max_length": 1000}, r"max_length: expected an integer in \[2, n_ctx=\d+\]"),
    ({"seed": -2}, r"seed: expected a non-negative integer, got -2"),
])
def test_bad_sampling_arguments(kwargs, match):
    with pytest.raises(SpadeLensError, match=match):
        sample_lm(trained_model(), **{"n": 2, **kwargs})


def test_model_without_tokenizer_cannot_be_sampled():
    from _lm_helpers import TINY

    from spade_lens.lm import build_model, resolve_config

    bare = build_model(resolve_config(TINY, longest_sequence=8, vocab_size=20))
    with pytest.raises(SpadeLensError, match=r"model: has no tokenizer with BOS and EOS tokens"):
        sample_lm(bare, 2)
