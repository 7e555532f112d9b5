"""Sample sentences from the model and judge them with the grammar.

Sampling starts every sequence at BOS, draws each next token from ``softmax(logits / temperature)`` with a
seeded ``torch.Generator`` (``torch.multinomial``), and stops a sequence at EOS; sequences are generated in
batches with TransformerLens' key-value cache (one token per forward pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens import HookedTransformer, TransformerLensKeyValueCache

from spade_lens.errors import SpadeLensError
from spade_lens.lm.data import evaluate_loss, pad_sequences


@dataclass(frozen=True)
class SampledIds:
    """Raw samples: token ids after BOS, up to and excluding EOS."""

    ids: list[list[int]]
    """Generated ids of each sample (no BOS, no EOS)."""
    finished: list[bool]
    """Whether each sample ended with EOS within ``max_length`` tokens."""


def _check_tokenizer(model: HookedTransformer) -> Any:
    tok = model.tokenizer
    if tok is None or tok.bos_token_id is None or tok.eos_token_id is None:
        raise SpadeLensError("model: has no tokenizer with BOS and EOS tokens; expected a model from "
                             "spade_lens.lm.build_model / load_lm / train_lm")
    return tok


@torch.no_grad()
def sample_ids(
    model: HookedTransformer,
    n: int,
    seed: int = 0,
    *,
    temperature: float = 1.0,
    max_length: int | None = None,
    batch_size: int = 500,
) -> SampledIds:
    """``n`` samples as token ids (see :func:`sample_lm`)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise SpadeLensError(f"n: expected a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpadeLensError(f"seed: expected a non-negative integer, got {seed!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise SpadeLensError(f"temperature: expected a positive number, got {temperature!r}")
    n_ctx = model.cfg.n_ctx
    max_length = n_ctx if max_length is None else max_length
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 2 <= max_length <= n_ctx:
        raise SpadeLensError(f"max_length: expected an integer in [2, n_ctx={n_ctx}] (tokens with BOS), "
                             f"got {max_length!r}")
    tok = _check_tokenizer(model)
    device = model.W_E.device
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    ids: list[list[int]] = []
    finished: list[bool] = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        cache = TransformerLensKeyValueCache.init_cache(model.cfg, device, b)
        current = torch.full((b, 1), tok.bos_token_id, dtype=torch.int64, device=device)
        out = torch.empty((b, 0), dtype=torch.int64, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        for _ in range(max_length - 1):
            # An explicit all-ones mask: TransformerLens would otherwise mask every sampled <pad> token.
            logits = model(current, past_kv_cache=cache, attention_mask=torch.ones_like(current))
            probs = torch.softmax(logits[:, -1].float() / temperature, dim=-1)  # (b, d_vocab)
            current = torch.multinomial(probs, 1, generator=generator)  # (b, 1)
            out = torch.cat([out, current], dim=1)
            done |= current[:, 0] == tok.eos_token_id
            if bool(done.all()):
                break
        for row in out.tolist():
            end = row.index(tok.eos_token_id) if tok.eos_token_id in row else None
            ids.append(row[:end] if end is not None else row)
            finished.append(end is not None)
    model.train(was_training)
    return SampledIds(ids, finished)


def ids_to_words(model: HookedTransformer, ids: list[int]) -> list[str]:
    """Token strings of ``ids``; special tokens are kept (as ``<pad>`` etc.) so they are never grammatical."""
    return list(_check_tokenizer(model).convert_ids_to_tokens(ids))


def sample_lm(
    model: HookedTransformer,
    n: int,
    seed: int = 0,
    *,
    temperature: float = 1.0,
    max_length: int | None = None,
    batch_size: int = 500,
) -> list[list[str]]:
    """``n`` sentences sampled from ``model`` (seeded: same seed, same sentences on the same device).

    Args:
        temperature: divides the logits (1: the model's distribution).
        max_length: most tokens per sequence, BOS included (default and maximum: ``model.cfg.n_ctx``); a
            sequence without EOS by then is returned as it is (cut short).
        batch_size: sequences generated together.

    Returns the words between BOS and EOS of each sample. A special token sampled mid-sentence stays in
    as its string (e.g. ``"<pad>"``).
    """
    samples = sample_ids(model, n, seed, temperature=temperature, max_length=max_length, batch_size=batch_size)
    return [ids_to_words(model, row) for row in samples.ids]


@dataclass(frozen=True)
class LMJudgement:
    """How close a model is to its grammar (:func:`judge_lm`)."""

    grammaticality: float
    """Fraction of samples that end with EOS and are sentences of the grammar."""
    loss: float
    """Cross-entropy of the model on fresh grammar samples, nats per predicted token (EOS included)."""
    entropy: float
    """The grammar's entropy per token (``grammar.entropy_per_token()``): the loss of the true distribution
    (an upper bound on it if the grammar is ambiguous, as the derivation entropy counts parses)."""
    samples: list[list[str]]
    """The sampled sentences."""
    grammatical: list[bool]
    """Verdict on each sample."""


def judge_lm(
    model: HookedTransformer,
    grammar: Any,
    n: int = 1000,
    seed: int = 0,
    *,
    temperature: float = 1.0,
    n_loss: int = 1000,
) -> LMJudgement:
    """Sample ``n`` sentences and parse them with ``grammar``; measure the loss on ``n_loss`` fresh
    grammar sentences (drawn with ``seed``, at most ``n_ctx - 2`` words) beside the grammar's entropy."""
    from pcfg import is_grammatical, sample_sentences

    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise SpadeLensError(f"n: expected a positive integer, got {n!r}")
    if isinstance(n_loss, bool) or not isinstance(n_loss, int) or n_loss <= 0:
        raise SpadeLensError(f"n_loss: expected a positive integer, got {n_loss!r}")
    from spade_lens.devices import check_fits

    # the samples' ids and their words, kept for the verdict (about 24 bytes per position plus a list each)
    check_fits(f"n: {n:,} samples", n * (24 * int(model.cfg.n_ctx) + 200))
    tok = _check_tokenizer(model)
    raw = sample_ids(model, n, seed, temperature=temperature)
    special = set(tok.all_special_ids)
    samples, verdicts = [], []
    for row, ended in zip(raw.ids, raw.finished, strict=True):
        words = ids_to_words(model, row)
        samples.append(words)
        verdicts.append(ended and not special.intersection(row) and is_grammatical(grammar, words))
    fresh = sample_sentences(grammar, n_loss, seed, max_length=model.cfg.n_ctx - 2)
    vocab = tok.get_vocab()
    unknown = sorted({w for s in fresh for w in s.words if w not in vocab})
    if unknown:
        raise SpadeLensError(f"grammar: words {unknown[:5]} are not in the model's vocabulary; expected the "
                             "grammar the model was trained on")
    seqs = [[tok.bos_token_id, *(vocab[w] for w in s.words), tok.eos_token_id] for s in fresh]
    loss = evaluate_loss(model, pad_sequences(seqs, tok.pad_token_id))
    return LMJudgement(sum(verdicts) / n, loss, grammar.entropy_per_token(), samples, verdicts)


def tag_sentence(grammar: Any, words: list[str]) -> list[tuple[str, str]] | None:
    """``[(word, part of speech), ...]`` from the grammar's most probable parse, or None if none exists."""
    import nltk

    if not words:
        return None
    parser = nltk.ViterbiParser(grammar.nltk)
    try:
        tree = next(iter(parser.parse(words)), None)
    except ValueError:  # a word the grammar does not cover
        return None
    return None if tree is None else [(word, tag) for word, tag in tree.pos()]
