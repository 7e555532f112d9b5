"""Turn a source of token sequences into right-padded chunks with a validity mask and label columns.

A source is one of:

- a 2-D integer tensor (sequences, pos) of token ids (a 1-D tensor is one sequence);
- a mapping of columns: ``input_ids`` (a tensor or a list of lists of ids) and per-token label columns of
  the same shape (an ``attention_mask`` column, if any, marks padding and is passed to the model: left-padded
  batches need one);
- a ``datasets.Dataset`` (one split) with an ``input_ids`` column and optional per-token label columns;
- any other iterable (a ``DataLoader``, a list, a generator) of batches, each a tensor or such a mapping;
  each batch is one forward pass as given.

The first three are cut into chunks of ``batch_size`` sequences. Variable-length sequences are right-padded:
with a causal model, padding on the right never changes the activations of the real tokens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hooks.batches import ROW_KEYS
from hooks.errors import HooksError

MASK_COLUMN = "attention_mask"
BLOCK_BATCHES = 32
"""Batches of a datasets split read from Arrow at once (then sliced in memory)."""


@dataclass
class TokenChunk:
    """A group of source sequences, right-padded to a common length."""

    input_ids: Tensor
    """(batch, pos) int64 token ids; padded positions hold ``pad_value``."""
    valid: Tensor
    """(batch, pos) bool, False on padding."""
    labels: dict[str, Tensor]
    """label column -> (batch, pos) int64."""
    seq_start: int
    """Index of row 0 in the whole source."""
    attention_mask: Tensor | None = None
    """(batch, pos) the source's own attention mask when it had one with zeros (passed to the model)."""


def _is_dataset(source: Any) -> bool:
    return hasattr(source, "column_names") and hasattr(source, "features") and hasattr(source, "select")


def _is_dataset_dict(source: Any) -> bool:
    return hasattr(source, "column_names") and isinstance(source, Mapping) and not _is_dataset(source)


def default_label_columns(source: Any) -> list[str] | None:
    """The per-token label columns a table-like source offers by default (None: decided per batch)."""
    if _is_dataset(source):
        return [c for c in source.column_names
                if c not in ("input_ids", MASK_COLUMN) and hasattr(source.features[c], "feature")]
    if isinstance(source, Mapping):
        return [c for c in source if c not in ("input_ids", MASK_COLUMN)]
    return None


def label_names(source: Any, label_columns: Sequence[str]) -> dict[str, list[str]]:
    """Class names of the label columns that are sequences of ``ClassLabel`` in a dataset's features."""
    if not _is_dataset(source):
        return {}
    out = {}
    for col in label_columns:
        inner = getattr(source.features.get(col), "feature", None)
        if inner is not None and hasattr(inner, "names"):
            out[col] = list(inner.names)
    return out


def _pad(rows: Sequence[Sequence[int]] | Tensor, name: str, pad_value: int) -> tuple[Tensor, Tensor]:
    """Rows of ids -> ((batch, pos) int64 padded, (batch,) int64 lengths)."""
    if isinstance(rows, Tensor):
        if rows.dtype.is_floating_point or rows.dtype == torch.bool or rows.dim() not in (1, 2):
            raise HooksError(f"{name}: expected a 2-D integer tensor (sequences, pos), got dtype "
                             f"{rows.dtype} and shape {tuple(rows.shape)}")
        rows = rows.reshape(1, -1) if rows.dim() == 1 else rows
        return rows.long(), torch.full((rows.shape[0],), rows.shape[1], dtype=torch.long)
    if isinstance(rows, Ragged):
        return rows.pad(pad_value)
    if hasattr(rows, "combine_chunks") or hasattr(rows, "offsets"):  # an Arrow list column (datasets)
        return _pad_arrow(rows, name, pad_value)
    try:
        tensors = [torch.as_tensor(r, dtype=torch.long).reshape(-1) for r in rows]
    except (TypeError, ValueError, RuntimeError) as err:
        raise HooksError(f"{name}: expected sequences of integer ids, could not read them ({err})") from err
    lengths = torch.tensor([len(t) for t in tensors], dtype=torch.long)
    if not tensors:
        return torch.zeros((0, 0), dtype=torch.long), lengths
    padded = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True, padding_value=pad_value)
    return padded, lengths


def _pad_arrow(column: Any, name: str, pad_value: int) -> tuple[Tensor, Tensor]:
    """An Arrow list column -> ((batch, pos) int64 padded, (batch,) int64 lengths), without Python lists."""
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if not (hasattr(arr, "offsets") and hasattr(arr, "flatten")) or arr.null_count:
        return _pad(column.to_pylist(), name, pad_value)
    try:
        values = torch.from_numpy(arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64))
    except (TypeError, ValueError) as err:
        raise HooksError(f"{name}: expected sequences of integer ids, could not read them ({err})") from err
    offsets = torch.from_numpy(arr.offsets.to_numpy().astype(np.int64))
    lengths = offsets[1:] - offsets[:-1]
    width = int(lengths.max()) if len(lengths) else 0
    padded = torch.full((len(lengths), width), pad_value, dtype=torch.long)
    padded[torch.arange(width) < lengths[:, None]] = values  # row-major, like the flattened values
    return padded, lengths


class Ragged:
    """Rows of ints stored flat (``values`` (total,) int64 numpy) with ``offsets`` ((rows + 1,) int64 numpy, row i =
    ``values[offsets[i]:offsets[i + 1]]``): a block of a datasets list column read once, sliced per batch."""

    __slots__ = ("offsets", "values")

    def __init__(self, values: np.ndarray, offsets: np.ndarray) -> None:
        self.values, self.offsets = values, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def rows(self, start: int, stop: int) -> Ragged:
        """Rows [start, stop) (views, offsets rebased to 0)."""
        stop = min(stop, len(self))
        offsets = self.offsets[start:stop + 1]
        return Ragged(self.values[offsets[0]:offsets[-1]], offsets - offsets[0])

    def pad(self, pad_value: int) -> tuple[Tensor, Tensor]:
        """((rows, pos) int64 right-padded with ``pad_value``, (rows,) int64 lengths)."""
        lengths = np.diff(self.offsets)
        width = int(lengths.max()) if len(lengths) else 0
        padded = np.full((len(lengths), width), pad_value, dtype=np.int64)
        padded[np.arange(width) < lengths[:, None]] = self.values  # row-major, like the flat values
        return torch.from_numpy(padded), torch.from_numpy(lengths)


def ragged_column(column: Any) -> Ragged | None:
    """An Arrow list column of integers as :class:`Ragged` (one copy of its values), None when it has nulls or
    is not a list of integers (then it is read row by row)."""
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if not (hasattr(arr, "offsets") and hasattr(arr, "flatten")) or arr.null_count:
        return None
    flat = arr.flatten()
    if flat.null_count:
        return None
    try:
        values = flat.to_numpy(zero_copy_only=False)
    except (TypeError, ValueError):
        return None
    if values.dtype.kind not in "iub":
        return None
    offsets = arr.offsets.to_numpy().astype(np.int64)
    return Ragged(values.astype(np.int64, copy=False), offsets - offsets[0])


def make_chunk(columns: Mapping[str, Any], label_columns: Sequence[str] | None, seq_start: int,
               pad_value: int) -> TokenChunk:
    """One batch given as columns -> a :class:`TokenChunk`, checking every label column's length."""
    if "input_ids" not in columns:
        raise HooksError(f"source: a batch needs an 'input_ids' column, got columns {sorted(columns)}")
    ids, lengths = _pad(columns["input_ids"], "input_ids", pad_value)
    valid = torch.arange(ids.shape[1]) < lengths[:, None]  # (batch, pos)
    cols = default_label_columns(columns) if label_columns is None else label_columns
    labels = {}
    for col in cols:
        if col in ROW_KEYS:
            raise HooksError(f"label_columns: {col!r} is reserved for row metadata {ROW_KEYS}; rename it")
        if col not in columns:
            raise HooksError(f"label_columns: the source has no column {col!r}; columns: {sorted(columns)}")
        values, lab_lengths = _pad(columns[col], col, -1)
        if values.shape[0] != ids.shape[0] or not torch.equal(lab_lengths, lengths) \
                or values.shape[1] != ids.shape[1]:
            bad = _first_mismatch(lengths, lab_lengths)
            raise HooksError(
                f"label column {col!r}: sequence {seq_start + bad} has "
                f"{int(lab_lengths[bad]) if bad < len(lab_lengths) else 'no'} labels for "
                f"{int(lengths[bad]) if bad < len(lengths) else 'no'} tokens; expected one label per token "
                f"(shape {tuple(values.shape)} vs input_ids {tuple(ids.shape)})")
        labels[col] = values
    mask = None
    if MASK_COLUMN in columns:
        given, _ = _pad(columns[MASK_COLUMN], MASK_COLUMN, 0)
        if given.shape != ids.shape:
            raise HooksError(f"attention_mask: shape {tuple(given.shape)} differs from input_ids "
                             f"{tuple(ids.shape)}")
        valid &= given.bool()
        mask = None if bool(given.bool().all()) else given
    return TokenChunk(ids, valid, labels, seq_start, mask)


def _first_mismatch(a: Tensor, b: Tensor) -> int:
    n = min(len(a), len(b))
    diff = (a[:n] != b[:n]).nonzero()
    return int(diff[0]) if len(diff) else n


def _slice(columns: Mapping[str, Any], start: int, stop: int) -> dict[str, Any]:
    return {k: v[start:stop] for k, v in columns.items()}


def _n_rows(columns: Mapping[str, Any]) -> int:
    ids = columns["input_ids"]
    return 1 if isinstance(ids, Tensor) and ids.dim() == 1 else len(ids)


def n_batches(source: Any, batch_size: int, start_sequence: int) -> int | None:
    """How many chunks :func:`iter_chunks` will give, when it can be known up front."""
    if isinstance(source, Tensor) or _is_dataset(source) or isinstance(source, Mapping):
        n = len(source) if _is_dataset(source) else _n_rows(source if isinstance(source, Mapping)
                                                            else {"input_ids": source})
        return -(-max(n - start_sequence, 0) // batch_size)
    return len(source) if hasattr(source, "__len__") and start_sequence == 0 else None


def source_identity(source: Any) -> dict[str, Any] | None:
    """What a harvest records of its source, so a cache is resumed or reused only for the same one.

    A ``datasets`` split: its fingerprint (pcfg corpora derive it from a hash of their columns), split name and
    row count; a tensor or a mapping: a SHA-256 of its token ids; any other iterable: None (not checkable).
    """
    if _is_dataset(source):
        split = getattr(source, "split", None)
        return {"kind": "dataset", "id": str(getattr(source, "_fingerprint", None)),
                "split": None if split is None else str(split), "rows": len(source)}
    ids = source.get("input_ids") if isinstance(source, Mapping) else source if isinstance(source, Tensor) else None
    if ids is None:
        return None
    h = hashlib.sha256()
    if isinstance(ids, Tensor):
        h.update(str(tuple(ids.shape)).encode())
        h.update(ids.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
        rows = 1 if ids.dim() == 1 else int(ids.shape[0])
    else:
        rows = 0
        try:
            for row in ids:
                h.update(np.asarray(row, dtype=np.int64).tobytes() + b"|")
                rows += 1
        except (TypeError, ValueError):
            return None
    return {"kind": "tensor" if isinstance(source, Tensor) else "mapping", "id": h.hexdigest()[:16], "split": None,
            "rows": rows}


def describe_source(identity: dict[str, Any] | None) -> str:
    """A short readable name of a :func:`source_identity`."""
    if identity is None:
        return "an iterable source (not identified)"
    split = f"split {identity['split']!r} of " if identity.get("split") else ""
    return f"{split}a {identity['kind']} {identity['id']} ({identity.get('rows')} sequences)"


def check_source(source: Any) -> None:
    """HooksError unless ``source`` is one of the kinds this module reads (checked before any forward)."""
    if _is_dataset_dict(source):
        raise HooksError(f"source: got a DatasetDict with splits {sorted(source)}; pass one split, "
                         "e.g. corpus['train']")
    if _is_dataset(source) and "input_ids" not in source.column_names:
        raise HooksError(f"source: the dataset has no 'input_ids' column; columns: {source.column_names}")
    if isinstance(source, Mapping) and not _is_dataset(source) and "input_ids" not in source:
        raise HooksError(f"source: a mapping source needs an 'input_ids' column, got columns {sorted(source)}")
    if not isinstance(source, (Tensor, Iterable)) or isinstance(source, (str, bytes)):
        raise HooksError(f"source: expected a token tensor, a mapping with 'input_ids', a datasets split or "
                         f"an iterable of batches, got {type(source).__name__}")


def iter_chunks(source: Any, *, batch_size: int, label_columns: Sequence[str] | None, start_sequence: int = 0,
                pad_value: int = 0) -> Iterator[TokenChunk]:
    """Yield the source as :class:`TokenChunk` s, skipping its first ``start_sequence`` sequences."""
    check_source(source)
    if isinstance(source, Tensor):
        source = {"input_ids": source}
    if _is_dataset(source):
        cols = default_label_columns(source) if label_columns is None else list(label_columns)
        keep = [c for c in ["input_ids", *cols, MASK_COLUMN] if c in source.column_names]
        for col in cols:  # name the missing column here, before reading anything
            if col not in source.column_names:
                raise HooksError(f"label_columns: the dataset has no column {col!r}; columns: "
                                 f"{source.column_names}")
        table = source.select_columns(keep).with_format("arrow")
        block = batch_size * BLOCK_BATCHES
        for block_start in range(start_sequence, len(table), block):
            # one read and one conversion per block of batches, then numpy slices per batch
            part = table[block_start:block_start + block]  # a pyarrow Table
            columns = {c: part.column(c) for c in part.column_names}
            columns = {c: ragged_column(v) or v for c, v in columns.items()}
            for start in range(0, part.num_rows, batch_size):
                chunk = {c: v.rows(start, start + batch_size) if isinstance(v, Ragged) else v.slice(start, batch_size)
                         for c, v in columns.items()}
                yield make_chunk(chunk, cols, block_start + start, pad_value)
        return
    if isinstance(source, Mapping):
        total = _n_rows(source)
        for start in range(start_sequence, total, batch_size):
            yield make_chunk(_slice(source, start, start + batch_size) if total > 1 or start else source,
                             label_columns, start, pad_value)
        return
    seen = 0
    for item in source:
        columns = {"input_ids": item} if isinstance(item, Tensor) else item
        if not isinstance(columns, Mapping):
            raise HooksError(f"source: each batch must be a tensor or a mapping with 'input_ids', got "
                             f"{type(item).__name__}")
        n = _n_rows(columns)
        skip = min(max(start_sequence - seen, 0), n)
        if skip < n:
            part = columns if skip == 0 else _slice(columns, skip, n)
            yield make_chunk(part, label_columns, seen + skip, pad_value)
        seen += n
