"""Atomic folder writes: fill a temporary folder beside the target, then rename it into place."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hooks.folders import readable, writing
from spade_lens.errors import SpadeLensError


@contextmanager
def atomic_dir(target: str | os.PathLike, keep: Sequence[str] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success it replaces ``target``.

    Entries of the old ``target`` named in ``keep`` (e.g. a training checkpoint inside a model folder) are
    moved into the new folder before the swap. If the body raises, the temporary folder is removed and
    ``target`` is left as it was. The write holds ``target``'s lock (:func:`hooks.folders.writing`: another
    process writing it at the same time is refused), removes the temporary folders of crashed writers, and
    gives the files the umask's permissions. A crash between the two renames leaves the previous version as
    ``<name>.old-<pid>``, put back by the next write; never a half-written ``target``. Callers check what
    ``target`` holds before replacing it (:func:`spade_lens.provenance.check_target`).
    """
    target = Path(target)
    with writing(target, error=SpadeLensError):
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        old = target.with_name(f"{target.name}.old-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
        except OSError as err:
            raise SpadeLensError(f"cannot write {str(target)!r}: {err.strerror} ({err.filename})") from None
        try:
            yield tmp
            for name in keep:
                if (target / name).exists() and not (tmp / name).exists():
                    os.replace(target / name, tmp / name)
            readable(*(p for p in tmp.rglob("*") if p.is_file() and not p.is_symlink()))
            moved = target.exists()
            if moved:
                os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                if moved:
                    os.replace(old, target)
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
