"""Harvest on several processes (``torchrun`` ranks) into one activation cache.

:func:`hooks.harvest` comes here when it runs in a process group of several ranks. Rank 0 plans: it counts the
kept tokens of every sequence (token ids only, no forward pass), takes the sequences a single process would
harvest (all of them, or those holding the first ``max_tokens`` rows) and cuts them into one contiguous slice per
rank with about the same number of tokens each. Every rank harvests its slice into ``out_dir/parts/rank-<r>``
(a cache of its own, resumable like any harvest), then rank 0 joins the parts into ``out_dir``: shard files are
renamed into place with their numbers running on, each label shard gets its sequence indices shifted to the whole
source, and one manifest and one ``provenance.json`` are written, in the layout of :mod:`hooks.cache`. The rows
are those of a single-process harvest, in the same order (activations equal to float tolerance: forward batches
are cut differently); only the shard boundaries differ.

An interrupted run resumes when started again on the same number of ranks (the manifest records the plan); a join
cut short is finished. All ranks must see ``out_dir`` (one machine, or a shared file system).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hooks.cache import (
    FORMAT,
    MANIFEST,
    VERSION,
    ActivationCache,
    acts_path,
    labels_path,
    read_manifest,
    write_json_atomic,
)
from hooks.capture import check_hook_names, check_model
from hooks.distributed import barrier, check_all, from_main, ranks
from hooks.errors import HooksError
from hooks.folders import readable, user_entries, writing
from hooks.harvest import (
    MISMATCH_HINT,
    _check_settings,
    _check_tokenizer,
    _clear,
    check_not_parallel,
    harvest_here,
    harvest_settings,
    write_cache_provenance,
)
from hooks.source import (
    _is_dataset,
    check_source,
    default_label_columns,
    describe_source,
    iter_chunks,
    label_names,
)

PARTS = "parts"


def part_folder(root: Path, rank: int) -> Path:
    return root / PARTS / f"rank-{rank}"


def _slice(source: Any, start: int, stop: int) -> Any:
    """Sequences ``[start, stop)`` of a datasets split, a tensor or a mapping of columns."""
    if _is_dataset(source):
        return source.select(range(start, stop))
    if isinstance(source, torch.Tensor):
        return (source.reshape(1, -1) if source.dim() == 1 else source)[start:stop]
    return {k: v[start:stop] for k, v in source.items()}


def kept_tokens(source: Any, excluded: Sequence[int]) -> torch.Tensor:
    """(sequences,) int64: the rows each sequence gives a harvest (tokens neither padding nor excluded ids)."""
    banned = torch.tensor(list(excluded), dtype=torch.long)
    counts = [(chunk.valid & ~torch.isin(chunk.input_ids, banned)).sum(1)
              for chunk in iter_chunks(source, batch_size=4096, label_columns=[], pad_value=0)]
    return torch.cat(counts) if counts else torch.zeros(0, dtype=torch.long)


def plan_slices(counts: torch.Tensor, max_tokens: int | None, world_size: int) -> list[list[Any]]:
    """Per rank ``[start, stop, max_tokens]``: contiguous sequence slices, about equal in rows, covering the rows a
    single process harvests (the slice that ends there gets ``max_tokens`` to cut it where that harvest stops)."""
    cum = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])  # cum[i]: rows before sequence i
    total = int(cum[-1]) if max_tokens is None else min(int(cum[-1]), max_tokens)
    n_seq = int(torch.searchsorted(cum, total, side="left")) if total else 0  # the sequences holding `total` rows
    bounds = []
    for r in range(world_size):
        target = total * r // world_size
        i = int(torch.searchsorted(cum[:n_seq + 1], target, side="left"))
        if i > 0 and target - int(cum[i - 1]) < int(cum[i]) - target:  # the nearer of the two boundaries
            i -= 1
        bounds.append(max(i, bounds[-1] if bounds else 0))
    bounds.append(n_seq)
    slices: list[list[Any]] = []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        last = max_tokens is not None and stop == n_seq and stop > start
        slices.append([start, stop, total - int(cum[start]) if last else None])
    return slices


def _plan(root: Path, source: Any, settings: dict[str, Any], extra: dict[str, Any], world_size: int,
          overwrite: bool) -> dict[str, Any]:
    """On rank 0: the manifest of an unfinished parallel harvest of these settings in ``root`` (new or found)."""
    manifest = read_manifest(root) if root.is_dir() else None
    if manifest is None and root.exists() and user_entries(root):
        raise HooksError(f"out_dir: {str(root)!r} exists and is not an activation cache (it holds "
                         f"{', '.join(user_entries(root)[:4])}); give an empty or new folder")
    if manifest is not None and overwrite:
        try:
            _check_settings(root, manifest, settings)
            check_not_parallel(root, manifest, world_size)
        except HooksError:
            _clear(root)
            manifest = None
    if manifest is not None:
        _check_settings(root, manifest, settings)
        if manifest["complete"]:
            return manifest
        check_not_parallel(root, manifest, world_size)
        if "parallel" in manifest:
            return manifest
    counts = kept_tokens(source, settings["excluded_token_ids"])
    if len(counts) == 0:
        raise HooksError(f"source: {describe_source(settings['source'])} has no sequences (an empty split?); "
                         "expected at least one")
    slices = plan_slices(counts, settings["max_tokens"], world_size)
    manifest = {**(manifest or {}), **settings, **extra, "shards": [], "n_tokens": 0, "n_sequences": 0,
                "complete": False, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "parallel": {"ranks": world_size, "slices": slices, "joining": False}}
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / MANIFEST, manifest)
    return manifest


def _move_part(root: Path, part: Path, manifest: dict[str, Any], seq_offset: int) -> None:
    """Append the shards of the finished part ``part`` to ``manifest`` (files renamed into ``root``, sequence
    indices shifted by ``seq_offset``); a file already moved by a join cut short is left as it is."""
    found = read_manifest(part)
    if found is None or not found["complete"]:
        raise HooksError(f"out_dir: the part {str(part)!r} of this harvest is missing or unfinished; run the same "
                         f"harvest again, or {MISMATCH_HINT}")
    for shard in found["shards"]:
        index, new = int(shard["index"]), len(manifest["shards"])
        sizes = {}
        for hook in manifest["hook_names"]:
            src, dst = acts_path(part, hook, index), acts_path(root, hook, new)
            if src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
            sizes[dst.relative_to(root).as_posix()] = dst.stat().st_size
        src, dst = labels_path(part, index), labels_path(root, new)
        if src.exists():
            labels = load_file(src)
            labels["seq_index"] = labels["seq_index"] + seq_offset
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
            save_file(labels, tmp)
            readable(tmp)
            os.replace(tmp, dst)
            src.unlink()
        sizes[dst.relative_to(root).as_posix()] = dst.stat().st_size
        manifest["shards"].append({"index": new, "n_rows": shard["n_rows"],
                                   "seq_start": shard["seq_start"] + seq_offset,
                                   "seq_stop": shard["seq_stop"] + seq_offset, "bytes": sizes})
        manifest["n_tokens"] += int(shard["n_rows"])
        manifest["dims"] = found["dims"]
        if manifest["label_columns"] is None:
            manifest["label_columns"] = found["label_columns"]
    manifest["n_sequences"] = found["n_sequences"] + seq_offset


def _join(root: Path, manifest: dict[str, Any], tokenizer: str | None, inputs: Mapping[str, Any] | None) -> None:
    """On rank 0: join the finished parts into ``root`` (resumable: the manifest says a join is under way)."""
    manifest["parallel"]["joining"] = True
    write_json_atomic(root / MANIFEST, manifest)
    joined = {**manifest, "shards": [], "n_tokens": 0, "n_sequences": 0}
    for rank, (start, stop, _) in enumerate(manifest["parallel"]["slices"]):
        if stop > start:
            _move_part(root, part_folder(root, rank), joined, start)
    ranks_used = joined.pop("parallel")["ranks"]
    joined["complete"] = True
    write_json_atomic(root / MANIFEST, joined)
    shutil.rmtree(root / PARTS, ignore_errors=True)
    write_cache_provenance(root, joined, tokenizer, inputs, ranks=ranks_used)


def harvest_parallel(model: Any, source: Any, hook_names: Sequence[str], out_dir: str | os.PathLike[str], *,
                     max_tokens: int | None, shard_tokens: int, batch_size: int,
                     exclude_token_ids: Sequence[int] | None, pad_token_id: int | None,
                     label_columns: Sequence[str] | None, dtype: torch.dtype | None, progress: bool,
                     source_tokenizer: Any, overwrite: bool, inputs: Mapping[str, Any] | None) -> ActivationCache:
    """:func:`hooks.harvest` on every rank of the process group (see the module doc); returns the joined cache."""
    rank, world_size = ranks()
    check_model(model)
    names = check_hook_names(model, hook_names)
    check_source(source)
    if not (_is_dataset(source) or isinstance(source, (torch.Tensor, Mapping))):
        raise HooksError(f"source: a harvest on {world_size} ranks cuts the source into slices, which needs a "
                         f"datasets split, a tensor or a mapping of columns; got a {type(source).__name__}")
    root = Path(out_dir)
    tokenizer = _check_tokenizer(model, source_tokenizer)
    settings = harvest_settings(model, source, names, dtype, exclude_token_ids, pad_token_id, max_tokens)
    columns = default_label_columns(source) if label_columns is None else list(label_columns)
    extra = {"format": FORMAT, "version": VERSION, "tokenizer": tokenizer, "dims": {},
             "label_columns": columns, "label_names": label_names(source, columns or [])}
    with writing(root, what=f"out_dir {str(root)!r}") if rank == 0 else contextlib.nullcontext():
        manifest = from_main(lambda: _plan(root, source, settings, extra, world_size, overwrite), HooksError)
        if not manifest["complete"]:
            start, stop, rows = manifest["parallel"]["slices"][rank]
            failure = None
            if stop > start and not manifest["parallel"]["joining"]:
                try:
                    harvest_here(model, _slice(source, start, stop), names, part_folder(root, rank), max_tokens=rows,
                                 shard_tokens=shard_tokens, batch_size=batch_size,
                                 exclude_token_ids=settings["excluded_token_ids"], pad_token_id=pad_token_id,
                                 label_columns=columns, dtype=dtype, progress=progress and rank == 0,
                                 overwrite=True)
                except Exception as err:  # every rank must hear of it, or the others would wait forever
                    failure = err
            check_all(failure, HooksError)
            from_main(lambda: _join(root, manifest, tokenizer, inputs), HooksError)
    barrier()
    return ActivationCache(root)
