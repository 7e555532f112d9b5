"""Atomic folder writes: fill a temporary folder beside the target, then rename it into place."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(target: str | os.PathLike, keep: Sequence[str] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success it replaces ``target``.

    Entries of the old ``target`` named in ``keep`` (e.g. a training checkpoint inside a model folder) are
    moved into the new folder before the swap. If the body raises, the temporary folder is removed and
    ``target`` is left as it was. A crash can leave ``target`` missing (between the two renames) but never
    half-written.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for name in keep:
            if (target / name).exists() and not (tmp / name).exists():
                os.replace(target / name, tmp / name)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
