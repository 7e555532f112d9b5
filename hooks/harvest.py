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
model, other hooks, other settings or another source (a different corpus, or another split of it) is refused
(``overwrite=True`` replaces it); so is a source whose tokenizer is not the model's (``source_tokenizer``).
One process writes a folder at a time (:mod:`hooks.folders`), and a finished cache gets a ``provenance.json``
(:mod:`hooks.provenance`). In a process group of several ranks (``torchrun``) every rank harvests its own slice
of the source and rank 0 joins the slices into the one cache (:mod:`hooks.harvest_parallel`).
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
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
from hooks.distributed import is_distributed
from hooks.errors import HooksError, check_int
from hooks.folders import readable, user_entries, writing
from hooks.identity import model_identity
from hooks.provenance import (
    PROVENANCE_FILE,
    json_identity,
    provenance_record,
    tokenizer_identity,
    write_provenance,
)
from hooks.source import default_label_columns, describe_source, label_names, n_batches, source_identity

# Manifest fields that must match for a folder to be resumed or reused.
_SETTINGS = ("model", "hook_names", "excluded_token_ids", "dtype", "max_tokens", "source")
MISMATCH_HINT = "use another folder, or pass overwrite=True (--overwrite) to replace it"


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path) -> int:
    """Write a shard beside its name, then rename it; returns its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
        readable(tmp)

    replace_atomic(path, write)
    return path.stat().st_size


def _check_settings(root: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    for key in _SETTINGS:
        if key == "source" and key not in old:
            warnings.warn(f"out_dir: {str(root)!r} was harvested by an earlier version that did not record its "
                          "source; reusing it without checking that it came from the same corpus and split",
                          stacklevel=3)
            continue
        if old.get(key) != new[key]:
            if key == "source":
                raise HooksError(f"out_dir: {str(root)!r} holds a harvest of another source "
                                 f"({describe_source(old.get(key))}; now {describe_source(new[key])}); {MISMATCH_HINT}")
            raise HooksError(f"out_dir: {str(root)!r} holds a harvest with other {key} ({old.get(key)!r}, now "
                             f"{new[key]!r}); {MISMATCH_HINT}")


def _check_tokenizer(model: Any, source_tokenizer: Any) -> str | None:
    """The model's tokenizer identity; HooksError when ``source_tokenizer`` is known and differs from it."""
    ours = tokenizer_identity(getattr(model, "tokenizer", None))
    if source_tokenizer is None:
        return ours
    theirs = source_tokenizer if isinstance(source_tokenizer, str) else tokenizer_identity(source_tokenizer)
    if theirs is None:
        raise HooksError(f"source_tokenizer: got a {type(source_tokenizer).__name__} without a vocabulary; "
                         "expected a tokenizer (get_vocab() or vocab) or its identity string")
    if ours is not None and ours != theirs:
        raise HooksError(f"source_tokenizer: the source's token ids come from another tokenizer (vocabulary "
                         f"{theirs}) than the model's (vocabulary {ours}); its activations would mean nothing. "
                         "Expected a corpus made with the model's tokenizer (for a spade-lens model: a corpus of "
                         "the grammar it was trained on)")
    return ours or theirs


def check_not_parallel(root: Path, manifest: dict[str, Any], world_size: int) -> None:
    """HooksError unless the unfinished harvest in ``root`` (if any) was begun on ``world_size`` processes."""
    begun = (manifest.get("parallel") or {}).get("ranks", 1)
    if not manifest.get("complete") and begun != world_size:
        raise HooksError(f"out_dir: {str(root)!r} holds a harvest begun on {begun} process(es), now run on "
                         f"{world_size}; resume it on {begun} (torchrun --nproc-per-node {begun}), or {MISMATCH_HINT}")


def _clear(root: Path) -> None:
    """Remove the files of the activation cache in ``root`` (and nothing else)."""
    for name in ("acts", "labels", "parts"):
        shutil.rmtree(root / name, ignore_errors=True)
    for name in (MANIFEST, PROVENANCE_FILE):
        (root / name).unlink(missing_ok=True)


def harvest_settings(model: Any, source: Any, names: list[str], dtype: torch.dtype | None,
                     exclude_token_ids: Sequence[int] | None, pad_token_id: int | None,
                     max_tokens: int | None) -> dict[str, Any]:
    """The settings a cache records and a resumed harvest must agree on: model, hooks, dtype, excluded ids,
    ``max_tokens`` and the source's identity."""
    param = next(iter(model.parameters()))
    return {
        "model": model_identity(model), "hook_names": names, "dtype": str(dtype or param.dtype),
        "excluded_token_ids": excluded_ids(model, exclude_token_ids, pad_token_id), "max_tokens": max_tokens,
        "source": source_identity(source),
    }


def write_cache_provenance(root: Path, manifest: dict[str, Any], tokenizer: str | None,
                           inputs: Mapping[str, Any] | None, **settings: Any) -> None:
    """``root/provenance.json`` of the finished cache whose manifest is ``manifest`` (its id: the manifest's
    hash); ``settings``: entries beyond the manifest's own settings."""
    model = manifest["model"]
    write_provenance(root, provenance_record(
        "activations", id=json_identity({k: v for k, v in manifest.items() if k != "created"}), tokenizer=tokenizer,
        inputs={"model": {"kind": "model", "id": model["weights_hash"], **model}, "source": manifest["source"],
                **dict(inputs or {})},
        settings={**{k: manifest[k] for k in ("hook_names", "max_tokens", "dtype", "excluded_token_ids",
                                              "label_columns")}, **settings}))


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
    source_tokenizer: Any = None,
    overwrite: bool = False,
    inputs: Mapping[str, Any] | None = None,
) -> ActivationCache:
    """Capture ``hook_names`` over ``source`` into ``out_dir``; resume it if interrupted. Returns the cache.

    ``max_tokens``: stop after exactly this many rows (None: the whole source). ``shard_tokens``: rows per
    shard, rounded up to whole forward batches. ``dtype``: stored dtype (default: the model's).
    ``source_tokenizer``: the tokenizer the source's ids were made with (or its
    :func:`~hooks.provenance.tokenizer_identity`); refused when it is not the model's. ``overwrite``: replace a
    cache of other settings or another source in ``out_dir`` instead of refusing it. ``inputs``: extra entries
    for the ``inputs`` of ``provenance.json`` (e.g. the folders the model and corpus came from). Other
    arguments as in :func:`hooks.capture.capture_activations`.

    Called on every rank of a process group (``torchrun``), each rank harvests a contiguous slice of the source
    (a datasets split, a tensor or a mapping) and the result is one cache of the same rows; see
    :mod:`hooks.harvest_parallel`.
    """
    kwargs = dict(max_tokens=max_tokens, shard_tokens=shard_tokens, batch_size=batch_size,
                  exclude_token_ids=exclude_token_ids, pad_token_id=pad_token_id, label_columns=label_columns,
                  dtype=dtype, progress=progress, source_tokenizer=source_tokenizer, overwrite=overwrite,
                  inputs=inputs)
    if is_distributed():
        from hooks.harvest_parallel import harvest_parallel

        return harvest_parallel(model, source, hook_names, out_dir, **kwargs)
    return harvest_here(model, source, hook_names, out_dir, **kwargs)


def harvest_here(
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
    source_tokenizer: Any = None,
    overwrite: bool = False,
    inputs: Mapping[str, Any] | None = None,
) -> ActivationCache:
    """:func:`harvest` in this process alone, whatever process group it belongs to."""
    check_model(model)
    names = check_hook_names(model, hook_names)
    for arg, value in (("max_tokens", max_tokens), ("shard_tokens", shard_tokens)):
        if value is not None:
            check_int(arg, value)
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise HooksError(f"out_dir: {str(root)!r} is a file; expected a new or empty folder, or an activation cache")
    tokenizer = _check_tokenizer(model, source_tokenizer)
    param = next(iter(model.parameters()))
    settings = harvest_settings(model, source, names, dtype, exclude_token_ids, pad_token_id, max_tokens)
    columns = default_label_columns(source) if label_columns is None else list(label_columns)
    with writing(root, what=f"out_dir {str(root)!r}"):
        manifest = read_manifest(root) if root.is_dir() else None
        if manifest is None and root.exists() and user_entries(root):
            raise HooksError(f"out_dir: {str(root)!r} exists and is not an activation cache (it holds "
                             f"{', '.join(user_entries(root)[:4])}); give an empty or new folder")
        if manifest is not None and overwrite:
            try:
                _check_settings(root, manifest, settings)
                check_not_parallel(root, manifest, 1)
            except HooksError:
                _clear(root)
                manifest = None
        if manifest is not None:
            _check_settings(root, manifest, settings)
            check_not_parallel(root, manifest, 1)
            if None not in (columns, manifest["label_columns"]) and columns != manifest["label_columns"]:
                raise HooksError(f"label_columns: {str(root)!r} holds a harvest with label columns "
                                 f"{manifest['label_columns']}, now {columns}; {MISMATCH_HINT}")
            if manifest["complete"]:
                return ActivationCache(root)
        else:
            manifest = {"format": FORMAT, "version": VERSION, **settings, "tokenizer": tokenizer, "dims": {},
                        "label_columns": columns, "label_names": label_names(source, columns or []),
                        "shards": [], "n_tokens": 0, "n_sequences": 0, "complete": False,
                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        batches = capture_activations(model, source, names, batch_size=batch_size,
                                      exclude_token_ids=exclude_token_ids, pad_token_id=pad_token_id,
                                      label_columns=manifest["label_columns"],
                                      start_sequence=manifest["n_sequences"])  # checks every argument
        if manifest["n_sequences"] == 0 and n_batches(source, batch_size, 0) == 0:
            raise HooksError(f"source: {describe_source(settings['source'])} has no sequences (an empty split?); "
                             "expected at least one")
        root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(root / MANIFEST, manifest)  # from now on the folder is ours to resume
        for tmp in root.rglob("*.tmp-*"):  # leftovers of a crashed write
            tmp.unlink()
        _run(batches, root, manifest, dtype or param.dtype, shard_tokens, progress)
        write_cache_provenance(root, manifest, tokenizer, inputs)
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
        sizes = {}
        for name in manifest["hook_names"]:
            acts = torch.cat([b.acts[name] for b in held])  # (rows, d)
            path = acts_path(root, name, index)
            sizes[path.relative_to(root).as_posix()] = _save_atomic({"acts": acts}, path)
        row_labels = [b.row_labels() for b in held]
        labels = {k: torch.cat([r[k] for r in row_labels]) for k in row_labels[0]}
        path = labels_path(root, index)
        sizes[path.relative_to(root).as_posix()] = _save_atomic(labels, path)
        manifest["shards"].append({"index": index, "n_rows": rows, "seq_start": held[0].seq_range[0],
                                   "seq_stop": held[-1].seq_range[1], "bytes": sizes})
        manifest["n_tokens"] += rows
    manifest["n_sequences"] = held[-1].seq_range[1]
    write_json_atomic(root / MANIFEST, manifest)
