"""Corpora: sampled sentences as a ``datasets.DatasetDict`` of token ids and per-token gold labels, on disk.

Columns of both splits (one row per sentence, ``L = len(words) + 2``):

- ``input_ids``: ``Sequence(int32)`` ``[L]``, ``BOS w1 ... wn EOS``;
- ``pos``, ``phrase``: ``Sequence(ClassLabel)`` ``[L]``, label ids into the names kept in the features
  (``corpus.label_names``), :data:`NO_LABEL` (-1) on BOS/EOS;
- ``depth``: ``Sequence(int32)`` ``[L]``, the preterminal's depth in the tree, -1 on BOS/EOS.

A saved corpus is a ``DatasetDict.save_to_disk`` folder (so ``datasets.load_from_disk`` reads it) plus
``tokenizer.json``, ``grammar.pcfg`` and ``corpus.json`` (the metadata, also in each split's
``info.description`` as JSON). A corpus built for a pretrained model's tokenizer
(:func:`pcfg.subtokens.build_subtoken_corpus`) has two more columns and that tokenizer's own files
(``tokenizer.json``, ``tokenizer_config.json``; ``corpus.json`` says ``"tokenizer": {"kind": "hf", ...}``). Building twice with one seed writes byte-identical files: the datasets get a
fingerprint derived from the metadata instead of a random one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import datasets.table
import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from pcfg.errors import PCFGError
from pcfg.grammar import Grammar
from pcfg.sampler import _check_int, iter_sentences
from pcfg.tokenizer import Tokenizer

NO_LABEL = -1
"""Label id on tokens without a label (BOS, EOS, padding)."""
LABEL_COLUMNS: tuple[str, ...] = ("pos", "phrase", "depth")
"""Per-token label columns of a corpus, aligned with ``input_ids``."""
CLASS_LABEL_COLUMNS: tuple[str, ...] = ("pos", "phrase")
"""The label columns stored as ``ClassLabel`` (names in the features)."""
SPLITS: tuple[str, ...] = ("train", "validation")
CORPUS_FORMAT = "pcfg-corpus"
_FILES = ("corpus.json", "tokenizer.json", "grammar.pcfg", "dataset_dict.json")


@dataclass
class Corpus:
    """A built or loaded corpus: the dataset, its tokenizer, its grammar and metadata."""

    dataset: datasets.DatasetDict
    """Splits ``train`` and ``validation`` with columns ``input_ids``, ``pos``, ``phrase``, ``depth``."""
    tokenizer: Tokenizer | Any
    """The tokenizer of ``input_ids``: the grammar's word-level :class:`Tokenizer`, or for a corpus built for a
    pretrained model (:func:`pcfg.subtokens.build_subtoken_corpus`) that model's Hugging Face tokenizer."""
    grammar: Grammar
    """The grammar the sentences were drawn from."""
    metadata: dict[str, Any]
    """Grammar name and text, seed, n, split counts, max_length, vocab size, longest row, label names."""

    @property
    def label_names(self) -> dict[str, list[str]]:
        """Names of the ``ClassLabel`` columns' ids: ``{"pos": [...], "phrase": [...]}``."""
        feats = self.dataset["train"].features
        return {c: list(feats[c].feature.names) for c in CLASS_LABEL_COLUMNS}


def corpus_features(grammar: Grammar) -> datasets.Features:
    """The features of a corpus split for ``grammar``."""
    return datasets.Features({
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "pos": datasets.Sequence(datasets.ClassLabel(names=list(grammar.parts_of_speech))),
        "phrase": datasets.Sequence(datasets.ClassLabel(names=list(grammar.phrase_labels))),
        "depth": datasets.Sequence(datasets.Value("int32")),
    })


def build_corpus(
    grammar: Grammar,
    n: int,
    seed: int,
    val_fraction: float = 0.1,
    max_length: int = 64,
    progress: bool = True,
) -> Corpus:
    """Sample ``n`` sentences (``sample_sentences(grammar, n, seed, max_length)``) into a corpus.

    The last ``round(n * val_fraction)`` sentences (at least one when ``val_fraction > 0`` and ``n >= 2``)
    form the validation split, the others the training split. Same arguments, same corpus.
    """
    if not isinstance(grammar, Grammar):
        raise PCFGError(f"grammar: expected a pcfg.Grammar, got {type(grammar).__name__}")
    n = _check_int("n", n, 1)
    seed = _check_int("seed", seed, 0)
    max_length = _check_int("max_length", max_length, 1)
    n_val = validation_count(n, val_fraction)
    tok = Tokenizer.from_grammar(grammar)
    pos_id = {s: i for i, s in enumerate(grammar.parts_of_speech)}
    phrase_id = {s: i for i, s in enumerate(grammar.phrase_labels)}
    word_id = {w: tok.token_id(w) for w in grammar.terminals}
    # flat token-level columns + row offsets (n + 1,), turned into arrow list arrays without per-row encoding
    cols: dict[str, list[int]] = {"input_ids": [], "pos": [], "phrase": [], "depth": []}
    ids, pos, phrase, depth = cols["input_ids"], cols["pos"], cols["phrase"], cols["depth"]
    offsets = [0]
    bos, eos, none = tok.bos_id, tok.eos_id, NO_LABEL
    stream = iter_sentences(grammar, seed, max_length)
    for _ in tqdm(range(n), desc=f"sampling {grammar.name}", unit="sent", disable=not progress):
        s = next(stream)
        ids.append(bos)
        ids.extend([word_id[w] for w in s.words])
        ids.append(eos)
        pos.append(none)
        pos.extend([pos_id[p] for p in s.pos])
        pos.append(none)
        phrase.append(none)
        phrase.extend([phrase_id[p] for p in s.phrase])
        phrase.append(none)
        depth.append(none)
        depth.extend(s.depth)
        depth.append(none)
        offsets.append(len(ids))
    n_train = n - n_val
    metadata: dict[str, Any] = {
        "format": CORPUS_FORMAT,
        "version": 1,
        "grammar": grammar.name,
        "grammar_text": grammar.text,
        "seed": seed,
        "n": n,
        "val_fraction": val_fraction,
        "max_length": max_length,
        "splits": {"train": n_train, "validation": n_val},
        "vocab_size": len(tok),
        "max_seq_len": int(np.diff(offsets).max()),
        "n_tokens": len(ids),
        "label_names": {"pos": list(grammar.parts_of_speech), "phrase": list(grammar.phrase_labels)},
        "no_label": NO_LABEL,
        "special_tokens": {"pad": tok.pad_id, "bos": tok.bos_id, "eos": tok.eos_id, "unk": tok.unk_id},
    }
    dataset = assemble_splits(cols, offsets, corpus_features(grammar), metadata, n_train, f"pcfg-{grammar.name}")
    return Corpus(dataset, tok, grammar, metadata)


def validation_count(n: int, val_fraction: float) -> int:
    """Sentences of ``n`` that go to the validation split: ``round(n * val_fraction)``, at least one when
    ``val_fraction > 0`` and ``n >= 2``, never all of them."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise PCFGError(f"val_fraction: expected a number in [0, 1), got {val_fraction!r}")
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n_val == 0 and n >= 2:
        n_val = 1
    return min(n_val, n - 1)


def assemble_splits(cols: dict[str, list[int]], offsets: list[int], features: datasets.Features,
                    metadata: dict[str, Any], n_train: int, dataset_name: str) -> datasets.DatasetDict:
    """Rows ``[0, n_train)`` of the flat columns as ``train``, the rest as ``validation``, each with the metadata
    in its description and a fingerprint derived from it (so one seed gives byte-identical files)."""
    n = len(offsets) - 1
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()
    parts = {"train": slice(0, n_train), "validation": slice(n_train, n)}
    splits = {}
    for name, sl in parts.items():
        table = _table(cols, offsets, sl, features)
        info = datasets.DatasetInfo(description=json.dumps(metadata), features=features, dataset_name=dataset_name)
        splits[name] = datasets.Dataset(table, info=info, split=datasets.NamedSplit(name),
                                        fingerprint=hashlib.sha256(f"{digest}/{name}".encode()).hexdigest()[:16])
    return datasets.DatasetDict(splits)


def _table(cols: dict[str, list[int]], offsets: list[int], rows: slice, features: datasets.Features):
    """Arrow table of rows ``rows`` from flat columns and row offsets, typed by ``features``."""
    schema = features.arrow_schema
    lo, hi = offsets[rows.start], offsets[rows.stop]
    offs = pa.array(np.asarray(offsets[rows.start : rows.stop + 1], dtype=np.int64) - lo, pa.int32())
    arrays = [
        pa.ListArray.from_arrays(offs, pa.array(cols[f.name][lo:hi], schema.field(f.name).type.value_type))
        for f in schema
    ]
    return datasets.table.InMemoryTable(pa.Table.from_arrays(arrays, schema=schema))


def save_corpus(corpus: Corpus, out_dir: str | os.PathLike) -> Path:
    """Write ``corpus`` to folder ``out_dir`` atomically (temp folder beside it, then rename).

    An existing corpus folder there is replaced; any other existing non-empty folder raises :class:`PCFGError`.
    """
    if not isinstance(corpus, Corpus):
        raise PCFGError(f"corpus: expected a pcfg.Corpus, got {type(corpus).__name__}")
    out = Path(out_dir)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / "corpus.json").is_file())):
        raise PCFGError(f"out_dir {str(out)!r} exists and is not a corpus folder; expected a new or empty "
                        f"folder, or a corpus to replace")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        was_disabled = datasets.are_progress_bars_disabled()
        datasets.disable_progress_bars()
        try:
            corpus.dataset.save_to_disk(str(tmp))
        finally:
            if not was_disabled:
                datasets.enable_progress_bars()
        _save_tokenizer(corpus.tokenizer, tmp)
        (tmp / "grammar.pcfg").write_text(corpus.grammar.text, encoding="utf-8")
        (tmp / "corpus.json").write_text(json.dumps(corpus.metadata, indent=1) + "\n", encoding="utf-8")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _save_tokenizer(tokenizer: Any, folder: Path) -> None:
    """The word-level tokenizer as ``tokenizer.json``; a model's Hugging Face tokenizer by ``save_pretrained``
    (its own ``tokenizer.json`` and ``tokenizer_config.json``, so ``AutoTokenizer`` reads the corpus folder)."""
    if isinstance(tokenizer, Tokenizer):
        tokenizer.save(folder / "tokenizer.json")
    else:
        tokenizer.save_pretrained(str(folder))


def _load_tokenizer(folder: Path, metadata: dict[str, Any]) -> Any:
    kind = (metadata.get("tokenizer") or {}).get("kind", "word-level")
    if kind == "word-level":
        return Tokenizer.load(folder / "tokenizer.json")
    if kind != "hf":
        raise PCFGError(f"corpus path {str(folder)!r}: corpus.json names tokenizer kind {kind!r}; expected "
                        "'word-level' or 'hf'")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as err:
        raise PCFGError(f"corpus path {str(folder)!r}: its Hugging Face tokenizer files cannot be read "
                        f"({type(err).__name__}: {err})") from None


def load_corpus(path: str | os.PathLike) -> Corpus:
    """Read a folder written by :func:`save_corpus`; :class:`PCFGError` naming the path if it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise PCFGError(f"corpus path {str(p)!r} does not exist or is not a folder; expected a folder "
                        f"written by save_corpus / `spade-lens corpus`")
    missing = [f for f in _FILES if not (p / f).is_file()]
    if missing:
        raise PCFGError(f"corpus path {str(p)!r} is not a corpus: missing {', '.join(missing)}")
    try:
        metadata = json.loads((p / "corpus.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PCFGError(f"corpus path {str(p)!r}: corpus.json is not valid JSON ({err})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != CORPUS_FORMAT:
        raise PCFGError(f"corpus path {str(p)!r}: corpus.json has no format={CORPUS_FORMAT!r}; not a corpus")
    try:
        grammar = Grammar.from_string((p / "grammar.pcfg").read_text(encoding="utf-8"),
                                      name=metadata.get("grammar", "custom"))
    except PCFGError as err:
        raise PCFGError(f"corpus path {str(p)!r}: grammar.pcfg: {err}") from None
    tokenizer = _load_tokenizer(p, metadata)
    dataset = datasets.load_from_disk(str(p))
    if not isinstance(dataset, datasets.DatasetDict) or set(dataset) != set(SPLITS):
        raise PCFGError(f"corpus path {str(p)!r}: expected a DatasetDict with splits {list(SPLITS)}")
    return Corpus(dataset, tokenizer, grammar, metadata)
