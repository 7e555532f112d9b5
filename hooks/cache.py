"""On-disk activation cache: layout, manifest, and the :class:`ActivationCache` reader.

Layout of a cache folder (written by :func:`hooks.harvest.harvest`)::

    manifest.json                          model identity, hooks, widths, label names, shard list, complete flag
    acts/<hook name>/shard-00000.safetensors   "acts": (rows, d) for that hook
    labels/shard-00000.safetensors         "token_id", "position", "seq_index", one (rows,) int64 per label column

Shards are safetensors rather than ``datasets`` Arrow: a shard is one dense (rows, d) tensor, which
safetensors reads back by memory-mapping straight into a torch tensor (no row-by-row conversion, no
list-of-floats columns), it is the format the SAE weights already use, and each hook can be read without
touching the others. Labels live in their own shard files shared by all hooks (rows are aligned).

Caches larger than memory: :meth:`ActivationCache.batches` reads shards in pieces of at most
``CHUNK_BYTES`` through a shuffle buffer of at most ``BUFFER_BYTES`` (by default), so its memory does not grow
with the cache or its shards. Several processes (``torchrun`` ranks) each read their own contiguous part of the
rows (``rank``, ``world_size``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from hooks.batches import LabelledBatch
from hooks.buffer import ShuffleBuffer
from hooks.distributed import share
from hooks.errors import HooksError, check_int
from hooks.identity import model_identity
from hooks.normalize import NormStats, estimate_norm_stats

FORMAT = "spade-lens-activation-cache"
VERSION = 1
MANIFEST = "manifest.json"
CHUNK_BYTES = 2**25
"""Largest piece of a shard :meth:`ActivationCache.batches` reads at once (32 MiB of activations)."""
BUFFER_BYTES = 2**28
"""Largest default shuffle buffer of :meth:`ActivationCache.batches` (256 MiB of activations; serving a batch half
of it costs as much again for a moment); below it the buffer holds two of the largest shards."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def acts_path(root: Path, hook_name: str, index: int) -> Path:
    return root / "acts" / hook_name / shard_name(index)


def labels_path(root: Path, index: int) -> Path:
    return root / "labels" / shard_name(index)


def replace_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path`` (a crash never leaves a half
    file under the real name; ``harvest`` removes ``*.tmp-*`` leftovers)."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    replace_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1)))


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest of ``root``, None if the folder has none; HooksError if it is not ours or unreadable."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise HooksError(f"cache: {path} is not a readable manifest ({err})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise HooksError(f"cache: {path} is not an activation-cache manifest (format "
                         f"{data.get('format') if isinstance(data, dict) else None!r}, expected {FORMAT!r})")
    if data.get("version") != VERSION:
        raise HooksError(f"cache: {path} has format version {data.get('version')!r}, this code reads {VERSION}")
    return data


class ActivationCache:
    """Read a harvested activation cache.

    ``allow_incomplete=True`` reads the shards an interrupted harvest has finished so far.
    """

    def __init__(self, path: str | os.PathLike[str], *, allow_incomplete: bool = False) -> None:
        self.path = Path(path)
        manifest = read_manifest(self.path) if self.path.is_dir() else None
        if manifest is None:
            raise HooksError(f"path: {str(self.path)!r} is not an activation cache folder (no {MANIFEST}); "
                             "write one with hooks.harvest or `spade-lens harvest`")
        if not manifest["complete"] and not allow_incomplete:
            raise HooksError(f"path: the harvest in {str(self.path)!r} is incomplete ({manifest['n_tokens']} "
                             "tokens so far); run the same harvest again to resume it, or pass "
                             "allow_incomplete=True")
        self._manifest = manifest
        self._check_files()

    def _check_files(self) -> None:
        """HooksError naming the first shard file that is missing or has another size than when written."""
        for shard in self._manifest["shards"]:
            index = int(shard["index"])
            expected = shard.get("bytes") or {}  # caches of earlier versions recorded no sizes
            paths = [acts_path(self.path, h, index) for h in self._manifest["hook_names"]]
            for path in [*paths, labels_path(self.path, index)]:
                rel = path.relative_to(self.path).as_posix()
                try:
                    size = path.stat().st_size
                except OSError:
                    raise HooksError(f"path: activation cache {str(self.path)!r} is damaged: {rel} is missing; "
                                     "harvest again (into a new folder, or with --overwrite)") from None
                if rel in expected and size != expected[rel]:
                    raise HooksError(f"path: activation cache {str(self.path)!r} is damaged: {rel} has {size} "
                                     f"bytes, {expected[rel]} were written (truncated?); harvest again (into a new "
                                     "folder, or with --overwrite)")

    def __repr__(self) -> str:
        return (f"ActivationCache({str(self.path)!r}, hooks={self.hook_names}, n_tokens={self.n_tokens}, "
                f"d={self.dims})")

    @property
    def metadata(self) -> dict[str, Any]:
        """The manifest without its shard list: model identity, hooks, dims, labels, dtype, counts."""
        return {k: v for k, v in self._manifest.items() if k != "shards"}

    @property
    def hook_names(self) -> list[str]:
        return list(self._manifest["hook_names"])

    @property
    def dims(self) -> dict[str, int]:
        """hook name -> width d of its rows."""
        return dict(self._manifest["dims"])

    @property
    def d_in(self) -> int:
        """The common width of the cached hooks (use :attr:`dims` when they differ)."""
        widths = set(self.dims.values())
        if len(widths) != 1:
            raise HooksError(f"d_in: the cached hooks have different widths {self.dims}; use cache.dims[hook]")
        return widths.pop()

    @property
    def n_tokens(self) -> int:
        return int(self._manifest["n_tokens"])

    @property
    def complete(self) -> bool:
        return bool(self._manifest["complete"])

    @property
    def label_names(self) -> dict[str, list[str]]:
        """label column -> class names, for the columns that had ClassLabel names in the source."""
        return {k: list(v) for k, v in self._manifest["label_names"].items()}

    @property
    def label_columns(self) -> list[str]:
        """The source's label columns (every row also carries ``token_id``, ``position``, ``seq_index``)."""
        return list(self._manifest["label_columns"])

    @property
    def shard_rows(self) -> list[int]:
        return [int(s["n_rows"]) for s in self._manifest["shards"]]

    def check_model(self, model: Any) -> None:
        """HooksError unless ``model`` is the model these activations came from (same identity hashes)."""
        got, want = model_identity(model), self._manifest["model"]
        if got != want:
            raise HooksError(f"model: this cache in {str(self.path)!r} was harvested from {want}, not from the "
                             f"given model {got}")

    def _check_hook(self, hook_name: str) -> None:
        if hook_name not in self._manifest["dims"]:
            raise HooksError(f"hook_name: {hook_name!r} is not in this cache; it holds {self.hook_names}")

    def read_shard(self, hook_name: str, index: int) -> LabelledBatch:
        """Shard ``index`` of ``hook_name``, rows in harvest order (memory-mapped read)."""
        self._check_hook(hook_name)
        acts = self._read(acts_path(self.path, hook_name, index))["acts"]
        return LabelledBatch(acts, self._read(labels_path(self.path, index)))

    def read_rows(self, hook_name: str, index: int, start: int, stop: int) -> LabelledBatch:
        """Rows ``[start, stop)`` of shard ``index`` of ``hook_name`` (only those rows are read from disk)."""
        self._check_hook(hook_name)
        acts = self._read(acts_path(self.path, hook_name, index), (start, stop))["acts"]
        return LabelledBatch(acts, self._read(labels_path(self.path, index), (start, stop)))

    def _read(self, path: Path, rows: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        try:
            if rows is None:
                return load_file(path)
            with safe_open(path, framework="pt") as f:
                return {key: f.get_slice(key)[rows[0]:rows[1]] for key in f.keys()}  # noqa: SIM118 (not a dict)
        except (SafetensorError, OSError, RuntimeError, KeyError) as err:
            raise HooksError(f"activation cache {str(self.path)!r}: {str(path)!r} cannot be read "
                             f"({str(err).splitlines()[0][:120]}); the cache is damaged: harvest again (into a new "
                             "folder, or with --overwrite)") from None

    def pieces(self, rank: int = 0, world_size: int = 1) -> list[tuple[int, int, int]]:
        """``(shard, start, stop)`` of the rows of rank ``rank`` of ``world_size``: its contiguous share of all rows
        in harvest order (shares differ by at most one row); one piece per shard with a single process."""
        check_int("world_size", world_size)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise HooksError(f"rank: expected an integer in [0, {world_size}) (world_size {world_size}), got {rank!r}")
        lo, hi = share(self.n_tokens, rank, world_size)
        out, offset = [], 0
        for index, n in enumerate(self.shard_rows):
            a, b = max(lo, offset), min(hi, offset + n)
            if a < b:
                out.append((index, a - offset, b - offset))
            offset += n
        if not out and self.n_tokens:
            raise HooksError(f"world_size: {world_size} ranks share the {self.n_tokens} rows of {str(self.path)!r}, "
                             f"so rank {rank} gets none; expected at most {self.n_tokens} ranks")
        return out

    def _chunks(self, hook_name: str, pieces: list[tuple[int, int, int]]) -> Iterator[LabelledBatch]:
        """The rows of ``pieces`` in order, read in chunks of at most ``CHUNK_BYTES``."""
        row_bytes = self.dims[hook_name] * _itemsize(self._manifest.get("dtype"))
        step = max(CHUNK_BYTES // max(row_bytes, 1), 1)
        for index, start, stop in pieces:
            for a in range(start, stop, step):
                yield self.read_rows(hook_name, index, a, min(a + step, stop))

    def load(self, hook_name: str) -> LabelledBatch:
        """Every row of ``hook_name`` in harvest order, in memory at once (for small caches)."""
        shards = [self.read_shard(hook_name, i) for i in range(len(self.shard_rows))]
        if not shards:
            return LabelledBatch(torch.zeros(0, self.dims[hook_name]), {})
        return _cat(shards)

    def batches(self, hook_name: str, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                buffer_rows: int | None = None, rank: int = 0, world_size: int = 1) -> Iterator[LabelledBatch]:
        """One epoch of ``hook_name`` in batches of ``batch_size`` rows (the last may be short).

        ``shuffle=True``: shards in a seeded random order, mixed across shards by a :class:`ShuffleBuffer`
        of ``buffer_rows`` rows (default: two of the largest shards, at most ``BUFFER_BYTES``).
        ``shuffle=False``: harvest order. ``rank``, ``world_size``: only this rank's share of the rows (see
        :meth:`pieces`), e.g. for ``torchrun`` ranks that each train on their own part of the cache. Shards are
        read in pieces of at most ``CHUNK_BYTES``: memory stays bounded however large the cache.
        """
        self._check_hook(hook_name)
        check_int("batch_size", batch_size)
        if buffer_rows is not None:
            check_int("buffer_rows", buffer_rows)
        pieces = self.pieces(rank, world_size)
        if not shuffle:
            return _rebatch(self._chunks(hook_name, pieces), batch_size)
        order = torch.randperm(len(pieces), generator=torch.Generator().manual_seed(seed)).tolist()
        shuffled = [pieces[i] for i in order]
        row_bytes = max(self.dims[hook_name] * _itemsize(self._manifest.get("dtype")), 1)
        two_shards = min(2 * max(self.shard_rows, default=0), BUFFER_BYTES // row_bytes)
        capacity = buffer_rows or max(two_shards, 2 * batch_size)
        buffer = ShuffleBuffer(lambda: self._chunks(hook_name, shuffled), capacity=capacity,
                               batch_size=batch_size, seed=seed)
        return iter(buffer)

    def norm_stats(self, hook_name: str, n: int = 2**16, seed: int = 0) -> NormStats:
        """:class:`NormStats` of ``hook_name`` estimated from ``n`` shuffled rows."""
        return estimate_norm_stats(self.batches(hook_name, min(n, 8192), seed=seed), n_max=n)


def _itemsize(dtype: Any) -> int:
    """Bytes per value of a manifest's dtype string (``"torch.float32"``); 4 when unknown."""
    found = getattr(torch, str(dtype).removeprefix("torch."), None)
    return found.itemsize if isinstance(found, torch.dtype) else 4


def _rebatch(chunks: Iterator[LabelledBatch], batch_size: int) -> Iterator[LabelledBatch]:
    """Re-cut a stream of LabelledBatch into batches of exactly ``batch_size`` rows (the last may be short)."""
    held: list[LabelledBatch] = []
    rows = 0
    for chunk in chunks:
        held.append(chunk)
        rows += len(chunk)
        if rows < batch_size:
            continue
        joined = _cat(held)
        cut = rows - rows % batch_size
        for i in range(0, cut, batch_size):
            yield LabelledBatch(joined.acts[i:i + batch_size], {k: v[i:i + batch_size]
                                                                 for k, v in joined.labels.items()})
        held = [LabelledBatch(joined.acts[cut:], {k: v[cut:] for k, v in joined.labels.items()})]
        rows -= cut
    if rows:
        yield _cat(held)


def _cat(parts: list[LabelledBatch]) -> LabelledBatch:
    if len(parts) == 1:
        return parts[0]
    return LabelledBatch(torch.cat([p.acts for p in parts]),
                         {k: torch.cat([p.labels[k] for p in parts]) for k in parts[0].labels})
