"""Corpora for a pretrained model's own tokenizer: grammar words split into sub-tokens, gold labels aligned.

    tok = AutoTokenizer.from_pretrained("models/all-MiniLM-L6-v2", local_files_only=True)   # or model.tokenizer
    corpus = build_subtoken_corpus(load_grammar("real"), tok, n=20_000, seed=0, labels="first")
    save_corpus(corpus, "runs/minilm/corpus")        # load_corpus reads it back, tokenizer included

Each sentence is sampled as for :func:`pcfg.build_corpus` (same seed, same words and gold tags), then every word
is split by the tokenizer (BERT's WordPiece: ``scarecrow`` -> ``scare ##crow``) and the tokenizer's own special
tokens frame the sentence (``[CLS] ... [SEP]`` for BERT; for a tokenizer that adds none but has a BOS token,
as GPT-2's, BOS is put in front, as TransformerLens does). Label alignment, ``labels=``:

- ``"first"`` (default): the first sub-token of a word carries its ``pos``, ``phrase`` and ``depth``; the other
  sub-tokens carry :data:`~pcfg.corpus.NO_LABEL`, so a probe sees each word once (the usual choice for
  token-classification with BERT);
- ``"all"``: every sub-token carries its word's labels.

Special tokens always carry ``NO_LABEL`` (and :func:`hooks.capture_activations` leaves them out by default).
Two more per-token columns say where each sub-token came from: ``word_index`` (the word's index in the sentence)
and ``piece_index`` (0 for a word's first sub-token, 1, 2, ... for the next), both -1 on special tokens.

The ids are the concatenation of each word's pieces; every sentence is checked against the tokenizer's own
tokenization of the space-joined sentence, so a tokenizer whose pieces depend on their neighbours is refused
rather than mislabelled. A word the tokenizer can only spell with its unknown token is refused too.

The corpus metadata records the tokenizer's identity as :func:`vocab_fingerprint` (also usable on the tokenizer
attached to a model, to check that a corpus belongs to it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

import datasets
import numpy as np
from tqdm.auto import tqdm

from pcfg.corpus import (
    CORPUS_FORMAT,
    NO_LABEL,
    Corpus,
    assemble_splits,
    corpus_features,
    split_tables,
    tables_identity,
    validation_count,
)
from pcfg.errors import PCFGError
from pcfg.grammar import Grammar
from pcfg.provenance import tokenizer_identity
from pcfg.sampler import _check_int, iter_sentences

LabelPolicy = Literal["first", "all"]
LABEL_POLICIES: tuple[str, ...] = ("first", "all")
"""Label alignments of :func:`build_subtoken_corpus`: on the word's first sub-token only, or on all of them."""
ORIGIN_COLUMNS: tuple[str, ...] = ("word_index", "piece_index")
"""Per-token columns of a sub-token corpus: the source word's index, the sub-token's index within the word."""
_CHECK_BATCH = 1024


def vocab_fingerprint(tokenizer: Any) -> str:
    """SHA-256 of a tokenizer's vocabulary: JSON ``[[token, id], ...]`` sorted by id (compact separators).

    Works on a :class:`pcfg.Tokenizer` (its ``vocab`` list) and on a Hugging Face tokenizer (``get_vocab()``,
    added tokens included), so a corpus's tokenizer and a model's can be compared without either package."""
    if hasattr(tokenizer, "get_vocab"):
        vocab = dict(tokenizer.get_vocab())
    elif isinstance(getattr(tokenizer, "vocab", None), list):
        vocab = {w: i for i, w in enumerate(tokenizer.vocab)}
    else:
        raise PCFGError(f"tokenizer: expected a pcfg.Tokenizer or a Hugging Face tokenizer, got "
                        f"{type(tokenizer).__name__}")
    items = sorted(vocab.items(), key=lambda kv: (kv[1], kv[0]))
    return hashlib.sha256(json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def _encode(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special-token ids the tokenizer puts before and after a sentence (BOS first when it adds none)."""
    probe = "cat"
    bare, framed = _encode(tokenizer, probe, False), _encode(tokenizer, probe, True)
    for start in range(len(framed) - len(bare) + 1):
        if framed[start:start + len(bare)] == bare:
            prefix, suffix = framed[:start], framed[start + len(bare):]
            break
    else:
        raise PCFGError(f"tokenizer: {type(tokenizer).__name__} tokenizes {probe!r} as {framed} with special "
                        f"tokens and {bare} without; expected the second inside the first")
    bos = getattr(tokenizer, "bos_token_id", None)
    if not prefix and not suffix and bos is not None:
        prefix = [int(bos)]
    return [int(i) for i in prefix], [int(i) for i in suffix]


class _Pieces:
    """Each grammar word's sub-token ids, as the first word of a sentence and after a space (GPT-2's BPE tells
    them apart; BERT's WordPiece does not)."""

    def __init__(self, tokenizer: Any, words: Sequence[str]) -> None:
        unk = getattr(tokenizer, "unk_token_id", None)
        self.table: dict[tuple[str, bool], list[int]] = {}
        for w in words:
            for first in (True, False):
                ids = _encode(tokenizer, w if first else " " + w, False)
                if not ids or (unk is not None and unk in ids):
                    raise PCFGError(f"tokenizer: the grammar word {w!r} becomes {ids} (unknown token {unk}); "
                                    f"expected sub-tokens of {type(tokenizer).__name__}'s vocabulary")
                self.table[(w, first)] = ids

    def __call__(self, words: Sequence[str]) -> list[list[int]]:
        return [self.table[(w, i == 0)] for i, w in enumerate(words)]


def build_subtoken_corpus(
    grammar: Grammar,
    tokenizer: Any,
    n: int,
    seed: int,
    *,
    labels: LabelPolicy = "first",
    val_fraction: float = 0.1,
    max_length: int = 64,
    progress: bool = True,
) -> Corpus:
    """Sample ``n`` sentences of ``grammar`` (as :func:`pcfg.build_corpus` does) tokenized by ``tokenizer``.

    ``tokenizer``: a Hugging Face tokenizer (e.g. ``model.tokenizer`` of :func:`hooks.load_hf_model`).
    ``labels``: ``"first"`` or ``"all"`` (see the module docstring). Same arguments, same corpus.
    """
    if not isinstance(grammar, Grammar):
        raise PCFGError(f"grammar: expected a pcfg.Grammar, got {type(grammar).__name__}")
    if not callable(tokenizer) or not hasattr(tokenizer, "get_vocab"):
        raise PCFGError(f"tokenizer: expected a Hugging Face tokenizer (callable, with get_vocab), got "
                        f"{type(tokenizer).__name__}")
    if labels not in LABEL_POLICIES:
        raise PCFGError(f"labels: expected one of {list(LABEL_POLICIES)}, got {labels!r}")
    n = _check_int("n", n, 1)
    seed = _check_int("seed", seed, 0)
    max_length = _check_int("max_length", max_length, 1)
    n_val = validation_count(n, val_fraction)
    prefix, suffix = special_frame(tokenizer)
    pieces_of = _Pieces(tokenizer, grammar.terminals)
    pos_id = {s: i for i, s in enumerate(grammar.parts_of_speech)}
    phrase_id = {s: i for i, s in enumerate(grammar.phrase_labels)}
    names = ("input_ids", "pos", "phrase", "depth", *ORIGIN_COLUMNS)
    cols: dict[str, list[int]] = {c: [] for c in names}
    offsets = [0]
    texts: list[str] = []
    expected: list[list[int]] = []
    stream = iter_sentences(grammar, seed, max_length)
    for _ in tqdm(range(n), desc=f"sampling {grammar.name} (sub-tokens)", unit="sent", disable=not progress):
        s = next(stream)
        pieces = pieces_of(s.words)
        _frame(cols, prefix)
        for j, ids in enumerate(pieces):
            word = (pos_id[s.pos[j]], phrase_id[s.phrase[j]], s.depth[j])
            for k, token in enumerate(ids):
                lab = word if k == 0 or labels == "all" else (NO_LABEL, NO_LABEL, NO_LABEL)
                for c, v in zip(names, (token, *lab, j, k), strict=True):
                    cols[c].append(v)
        _frame(cols, suffix)
        offsets.append(len(cols["input_ids"]))
        texts.append(" ".join(s.words))
        expected.append([t for ids in pieces for t in ids])
        if len(texts) == _CHECK_BATCH:
            _check_against_tokenizer(tokenizer, texts, expected, len(offsets) - 1 - len(texts))
            texts, expected = [], []
    if texts:
        _check_against_tokenizer(tokenizer, texts, expected, len(offsets) - 1 - len(texts))
    lengths = np.diff(offsets)
    metadata: dict[str, Any] = {
        "format": CORPUS_FORMAT,
        "version": 1,
        "grammar": grammar.name,
        "grammar_text": grammar.text,
        "seed": seed,
        "n": n,
        "val_fraction": val_fraction,
        "max_length": max_length,
        "splits": {"train": n - n_val, "validation": n_val},
        "vocab_size": len(tokenizer),
        "max_seq_len": int(lengths.max()),
        "n_tokens": len(cols["input_ids"]),
        "label_names": {"pos": list(grammar.parts_of_speech), "phrase": list(grammar.phrase_labels)},
        "no_label": NO_LABEL,
        "special_tokens": _special_ids(tokenizer),
        "tokenizer": {"kind": "hf", "class": type(tokenizer).__name__, "vocab_size": len(tokenizer),
                      "vocab_sha256": vocab_fingerprint(tokenizer)},
        "subtokens": {"labels": labels, "prefix": prefix, "suffix": suffix,
                      "words": int((np.asarray(cols["piece_index"]) == 0).sum())},
    }
    features = subtoken_features(grammar)
    tables = split_tables(cols, offsets, features, n - n_val)
    metadata["tokenizer_id"] = tokenizer_identity(tokenizer)
    metadata["content_id"] = tables_identity(tables)
    dataset = assemble_splits(tables, features, metadata, f"pcfg-{grammar.name}-subtokens")
    return Corpus(dataset, tokenizer, grammar, metadata)


def subtoken_features(grammar: Grammar) -> datasets.Features:
    """The features of a sub-token corpus split: :func:`pcfg.corpus.corpus_features` plus :data:`ORIGIN_COLUMNS`."""
    features = corpus_features(grammar)
    for c in ORIGIN_COLUMNS:
        features[c] = datasets.Sequence(datasets.Value("int32"))
    return features


def _frame(cols: dict[str, list[int]], ids: list[int]) -> None:
    """Append special tokens: no labels, no word."""
    for token in ids:
        cols["input_ids"].append(token)
        for c in ("pos", "phrase", "depth", *ORIGIN_COLUMNS):
            cols[c].append(NO_LABEL)


def _special_ids(tokenizer: Any) -> dict[str, int]:
    """The tokenizer's named special tokens (``cls``, ``sep``, ``pad``, ``bos``...) -> ids."""
    out = {}
    for attr in ("pad", "bos", "eos", "unk", "cls", "sep", "mask"):
        value = getattr(tokenizer, f"{attr}_token_id", None)
        if value is not None:
            out[attr] = int(value)
    return out


def _check_against_tokenizer(tokenizer: Any, texts: list[str], expected: list[list[int]], first: int) -> None:
    got = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for i, (ids, want) in enumerate(zip(got, expected, strict=True)):
        if list(ids) != want:
            raise PCFGError(f"tokenizer: sentence {first + i} ({texts[i]!r}) tokenizes to {list(ids)} as a whole "
                            f"but to {want} word by word; sub-token labels would be misaligned")
