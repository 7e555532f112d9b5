"""Provenance records for pcfg's folders (corpora): a copy of :mod:`hooks.provenance`.

``pcfg`` imports nothing from ``hooks``, so it keeps these few functions itself; the record's shape and the
identities (:func:`json_identity`, :func:`vocab_identity`, :func:`tokenizer_identity`) must stay exactly those
of :mod:`hooks.provenance`, which documents them (a test compares the two).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pcfg.errors import PCFGError

PROVENANCE_FILE = "provenance.json"
PROVENANCE_FORMAT = "spade-lens-provenance"
PROVENANCE_VERSION = 1


def package_version() -> str:
    """The installed spade-lens distribution's version ("unknown" outside an installed package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spade-lens")
    except PackageNotFoundError:
        return "unknown"


def json_identity(value: Any) -> str:
    """16 hex digits of the SHA-256 of ``value`` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def vocab_identity(vocab: Mapping[str, int]) -> str:
    """Identity of a vocabulary (token -> id): :func:`json_identity` of its ``[id, token]`` pairs by id."""
    return json_identity(sorted([int(i), str(t)] for t, i in vocab.items()))


def tokenizer_identity(tokenizer: Any) -> str | None:
    """:func:`vocab_identity` of a tokenizer's vocabulary, or None when it exposes none.

    Accepts a Hugging Face tokenizer (``get_vocab()``), a pcfg ``Tokenizer`` (``vocab``, a list by id), a model
    with a ``tokenizer`` attribute, or a mapping token -> id. Equal identities mean equal token ids.
    """
    if tokenizer is None:
        return None
    if isinstance(tokenizer, Mapping):
        return vocab_identity(tokenizer)
    if hasattr(tokenizer, "get_vocab"):
        return vocab_identity(tokenizer.get_vocab())
    vocab = getattr(tokenizer, "vocab", None)
    if isinstance(vocab, list):
        return vocab_identity({t: i for i, t in enumerate(vocab)})
    if isinstance(vocab, Mapping):
        return vocab_identity(vocab)
    inner = getattr(tokenizer, "tokenizer", None)
    return tokenizer_identity(inner) if inner is not None and inner is not tokenizer else None


def provenance_record(kind: str, *, id: str | None = None, tokenizer: str | None = None,
                      inputs: Mapping[str, Any] | None = None,
                      settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A provenance record (see the module docstring)."""
    if not isinstance(kind, str) or not kind:
        raise PCFGError(f"kind: expected a non-empty folder kind such as 'activations', got {kind!r}")
    return {"format": PROVENANCE_FORMAT, "version": PROVENANCE_VERSION, "kind": kind,
            "package_version": package_version(), "id": id, "tokenizer": tokenizer,
            "inputs": json.loads(json.dumps(dict(inputs or {}), default=str)),
            "settings": json.loads(json.dumps(dict(settings or {}), default=str))}


def write_provenance(folder: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write ``record`` to ``folder/provenance.json`` (beside, then renamed). Returns the file."""
    path = Path(folder) / PROVENANCE_FILE
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(dict(record), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_provenance(folder: str | os.PathLike, *, error: type[Exception] = PCFGError) -> dict[str, Any] | None:
    """The provenance record of ``folder``; None if it has none (written by an earlier version, or not ours).

    Raises ``error`` naming the file when it exists but is not a provenance record.
    """
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{str(path)!r} is not readable provenance ({err}); expected the JSON file spade-lens "
                    "writes (remove it, or the folder, to start afresh)") from None
    if not isinstance(data, dict) or data.get("format") != PROVENANCE_FORMAT or not isinstance(data.get("kind"), str):
        raise error(f"{str(path)!r} is not a spade-lens provenance record (format "
                    f"{data.get('format') if isinstance(data, dict) else None!r}, expected {PROVENANCE_FORMAT!r})")
    return data
