"""Folder-writing safety for pcfg: one writer per target, crash leftovers cleaned.

A copy of :mod:`hooks.folders` (``pcfg`` imports nothing from ``hooks``; keep the two in step: the lock file,
the pid inside it and the temporary names must stay the same, so a lock taken through one is recognised by the
other within a process). See that module for the full description.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pcfg.errors import PCFGError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``.<name>.lock`` in its parent folder."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def leftover_pattern(name: str) -> re.Pattern[str]:
    """Names of the temporary siblings of a target called ``name`` (``[.]name.tmp-PID``, ``[.]name.old-PID``)."""
    return re.compile(rf"^\.?{re.escape(name)}\.(tmp|old)-(\d+)$")


def is_transient(name: str) -> bool:
    """Whether ``name`` is a lock file or a temporary sibling of this module's kind (not user content)."""
    return bool(re.fullmatch(r"\..+\.lock|\.?.+\.(tmp|old)-\d+", name))


def user_entries(folder: str | os.PathLike) -> list[str]:
    """The entries of ``folder`` other than locks and temporary leftovers (sorted)."""
    return sorted(p.name for p in Path(folder).iterdir() if not is_transient(p.name))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(target: str | os.PathLike) -> None:
    """Remove the temporary siblings of ``target`` left by dead processes; restore an orphaned ``.old-`` copy."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    pattern = leftover_pattern(target.name)
    found = [(p, m.group(1), int(m.group(2))) for p in target.parent.iterdir()
             if (m := pattern.match(p.name))]
    for path, kind, pid in sorted(found, key=lambda f: f[1] != "old"):  # restore before removing
        if _alive(pid):
            continue
        if kind == "old" and not target.exists():
            os.replace(path, target)  # the last complete version: a crash fell between the two renames
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _acquire(lock: Path, what: str, error: type[Exception]) -> int | None:
    """The fd of the lock this call took, None if this process already holds it (or locks are unsupported)."""
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise error(f"{what}: cannot create its lock file {str(lock)!r} ({err.strerror}); expected a "
                        "writable folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            if holder == os.getpid():
                return None
            raise error(f"{what}: another process (pid {holder if holder else 'unknown'}) is writing it now; "
                        "wait for it to finish, or choose another folder") from None
        except OSError:  # a file system without flock: no lock
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
            return fd
        os.close(fd)  # its previous holder removed it meanwhile: take the new one


@contextmanager
def writing(target: str | os.PathLike, *, what: str | None = None,
            error: type[Exception] = PCFGError) -> Iterator[Path]:
    """Hold the write lock of folder ``target`` for the block (see the module docstring); yields it as a Path.

    ``what`` names the target in messages (default: its path); ``error`` is the exception type raised when
    another process holds the lock or the parent folder is not writable.
    """
    target = Path(target)
    what = what or repr(str(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise error(f"{what}: cannot create its parent folder ({err.strerror}: {err.filename})") from None
    fd = None if fcntl is None else _acquire(lock_path(target), what, error)
    try:
        if fd is not None or fcntl is None:
            clean_leftovers(target)
        yield target
    finally:
        if fd is not None:
            lock_path(target).unlink(missing_ok=True)
            os.close(fd)


def check_writable(target: str | os.PathLike, *, what: str, error: type[Exception] = PCFGError) -> Path:
    """``target`` as a Path if a folder can be written there (created beside, renamed into place, or filled in
    place); otherwise ``error`` naming ``what`` and the reason, before any work is done."""
    target = Path(target)
    existing = next(p for p in (target, *target.parents) if p.exists() or p == p.parent)
    if existing == target and not target.is_dir():
        raise error(f"{what}: {str(target)!r} is a file; expected a folder (new, or one this command wrote)")
    if not existing.is_dir():
        raise error(f"{what}: cannot create {str(target)!r}: {str(existing)!r} is a file, not a folder")
    probes = [existing] if existing != target else [target.parent, target]
    for folder in probes:
        try:
            fd, name = tempfile.mkstemp(dir=folder, prefix=".spade-lens-probe-")
        except OSError as err:
            raise error(f"{what}: cannot write in {str(folder)!r} ({err.strerror}); expected a writable "
                        "folder") from None
        os.close(fd)
        os.unlink(name)
    return target

