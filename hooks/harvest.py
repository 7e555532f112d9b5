"""Harvest activations of any TransformerLens model into an on-disk cache (layout: :mod:`hooks.cache`).

Works for any ``HookedTransformer`` or ``TransformerBridge``, including one you loaded yourself::

    from hooks import harvest
    cache = harvest(model, dataset["train"], ["blocks.0.hook_resid_post"], "runs/acts", max_tokens=10**6)
    for batch in cache.batches("blocks.0.hook_resid_post", 4096):
        ...

(``spade-lens harvest`` does the same for a saved spade-lens model and corpus.)

Every shard file is written beside its final name and renamed into place; the manifest is rewritten the same
way after each shard, and lists only finished shards. Shards end on forward-batch boundaries, so the manifest
also says how many source sequences are covered. Running the same harvest again into the same folder
resumes after them (pass the same source), and a finished one returns at once. A folder written for another
model, other hooks or other settings is refused.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from hooks.batches import ActivationBatch
from hooks.cache import (
    FORMAT,
    MANIFEST,
    VERSION,
    ActivationCache,
    acts_path,
    labels_path,
    read_manifest,
    replace_atomic,
    write_json_atomic,
)
from hooks.capture import capture_activations, check_hook_names, check_model, excluded_ids
from hooks.errors import HooksError, check_int
from hooks.identity import model_identity
from hooks.source import default_label_columns, label_names

# Manifest fields that must match for a folder to be resumed or reused.
_SETTINGS = ("model", "hook_names", "excluded_token_ids", "dtype", "max_tokens")
def _save_atomic(tensors: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp))


def _check_settings(root: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    for key in _SETTINGS:
        if old.get(key) != new[key]:
            raise HooksError(f"out_dir: {str(root)!r} holds a harvest with other {key} ({old.get(key)!r}, now "
                             f"{new[key]!r}); use another folder or delete this one")


def harvest(
    model: Any,
    source: Any,
    hook_names: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    max_tokens: int | None = None,
    shard_tokens: int = 2**16,
    batch_size: int = 64,
    exclude_token_ids: Sequence[int] | None = None,
    pad_token_id: int | None = None,
    label_columns: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> ActivationCache:
    """Capture ``hook_names`` over ``source`` into ``out_dir``; resume it if interrupted. Returns the cache.

    ``max_tokens``: stop after exactly this many rows (None: the whole source). ``shard_tokens``: rows per
    shard, rounded up to whole forward batches. ``dtype``: stored dtype (default: the model's). Other
    arguments as in :func:`hooks.capture.capture_activations`.
    """
    check_model(model)
    names = check_hook_names(model, hook_names)
    for arg, value in (("max_tokens", max_tokens), ("shard_tokens", shard_tokens)):
        if value is not None:
            check_int(arg, value)
    root = Path(out_dir)
    param = next(iter(model.parameters()))
    settings = {
        "model": model_identity(model), "hook_names": names, "dtype": str(dtype or param.dtype),
        "excluded_token_ids": excluded_ids(model, exclude_token_ids, pad_token_id), "max_tokens": max_tokens,
    }
    columns = default_label_columns(source) if label_columns is None else list(label_columns)
    manifest = read_manifest(root) if root.is_dir() else None
    if manifest is None and root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise HooksError(f"out_dir: {str(root)!r} exists and is not an activation cache; give an empty or new "
                         "folder")
    if manifest is not None:
        _check_settings(root, manifest, settings)
        if None not in (columns, manifest["label_columns"]) and columns != manifest["label_columns"]:
            raise HooksError(f"label_columns: {str(root)!r} holds a harvest with label columns "
                             f"{manifest['label_columns']}, now {columns}; use another folder")
        if manifest["complete"]:
            return ActivationCache(root)
    else:
        manifest = {"format": FORMAT, "version": VERSION, **settings, "dims": {},
                    "label_columns": columns, "label_names": label_names(source, columns or []),
                    "shards": [], "n_tokens": 0, "n_sequences": 0, "complete": False,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    batches = capture_activations(model, source, names, batch_size=batch_size, exclude_token_ids=exclude_token_ids,
                                  pad_token_id=pad_token_id, label_columns=manifest["label_columns"],
                                  start_sequence=manifest["n_sequences"])  # checks every argument
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / MANIFEST, manifest)  # from now on the folder is ours to resume
    for tmp in root.rglob("*.tmp-*"):  # leftovers of a crashed write
        tmp.unlink()
    _run(batches, root, manifest, dtype or param.dtype, shard_tokens, progress)
    return ActivationCache(root)


def _run(batches: Iterator[ActivationBatch], root: Path, manifest: dict[str, Any], dtype: torch.dtype,
         shard_tokens: int, progress: bool) -> None:
    max_tokens = manifest["max_tokens"]
    held: list[ActivationBatch] = []
    held_rows = 0
    bar = tqdm(total=max_tokens, initial=manifest["n_tokens"], disable=not progress, desc="harvest",
               unit="tok")
    with bar:
        for batch in batches:
            if manifest["label_columns"] is None:  # an iterable source: its first batch decides
                manifest["label_columns"] = sorted(batch.labels)
            elif set(batch.labels) != set(manifest["label_columns"]):
                raise HooksError(f"source: batch labels {sorted(batch.labels)} differ from the harvest's "
                                 f"label columns {manifest['label_columns']}")
            for name, acts in batch.acts.items():
                manifest["dims"].setdefault(name, int(acts.shape[1]))
            room = None if max_tokens is None else max_tokens - manifest["n_tokens"] - held_rows
            batch = _cpu(batch, dtype, room)
            held.append(batch)
            held_rows += len(batch)
            bar.update(len(batch))
            if room is not None and len(batch) >= room:
                break
            if held_rows >= shard_tokens:
                _write_shard(root, manifest, held)
                held, held_rows = [], 0
        _write_shard(root, manifest, held)
        manifest["complete"] = True
        write_json_atomic(root / MANIFEST, manifest)


def _cpu(batch: ActivationBatch, dtype: torch.dtype, room: int | None) -> ActivationBatch:
    """The batch on the CPU in the stored dtype, cut to ``room`` rows (then it ends mid-sequence)."""
    keep = slice(None) if room is None or room >= len(batch) else slice(0, room)
    seq_range = batch.seq_range
    if keep.stop is not None:
        seq_range = (seq_range[0], int(batch.seq_index[room - 1]) + 1 if room else seq_range[0])
    return ActivationBatch({k: v[keep].to("cpu", dtype) for k, v in batch.acts.items()},
                           batch.token_ids[keep].cpu(), batch.positions[keep].cpu(), batch.seq_index[keep].cpu(),
                           {k: v[keep].cpu() for k, v in batch.labels.items()}, seq_range)


def _write_shard(root: Path, manifest: dict[str, Any], held: list[ActivationBatch]) -> None:
    """Write the held batches as the next shard (if they have rows), then the manifest."""
    if not held:
        return
    rows = sum(map(len, held))
    if rows:
        index = len(manifest["shards"])
        for name in manifest["hook_names"]:
            acts = torch.cat([b.acts[name] for b in held])  # (rows, d)
            _save_atomic({"acts": acts}, acts_path(root, name, index))
        row_labels = [b.row_labels() for b in held]
        labels = {k: torch.cat([r[k] for r in row_labels]) for k in row_labels[0]}
        _save_atomic(labels, labels_path(root, index))
        manifest["shards"].append({"index": index, "n_rows": rows, "seq_start": held[0].seq_range[0],
                                   "seq_stop": held[-1].seq_range[1]})
        manifest["n_tokens"] += rows
    manifest["n_sequences"] = held[-1].seq_range[1]
    write_json_atomic(root / MANIFEST, manifest)
