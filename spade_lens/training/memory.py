"""Keep freed memory for reuse while training (glibc's allocator, i.e. Linux).

glibc hands every allocation above its mmap threshold (at most 32 MiB) fresh pages from the kernel and returns
them when freed, so each (batch, d_sae) float32 temporary of an SAE step (64 MiB at batch 4,096 and width
4,096) costs page faults on first touch: measured here, a ReLU over such a tensor took 33 ms with fresh pages
and 7 ms with reused ones, and a whole SAE step spent more time faulting than multiplying. Inside
:func:`reuse_freed_memory` large blocks come from the heap and freed ones stay there for the next step
(``mallopt(M_MMAP_MAX, 0)`` and a high ``M_TRIM_THRESHOLD``); on leaving, the defaults come back and the
unused heap is returned to the kernel (``malloc_trim``). The peak memory is the same (blocks are reused, not
accumulated); what changes is that it is held until the block ends. Nothing happens on other C libraries, with
``SPADE_LENS_MALLOC=default`` in the environment, or when the variables ``MALLOC_MMAP_MAX_`` /
``MALLOC_TRIM_THRESHOLD_`` already set glibc's own policy.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
_DEFAULT_TRIM, _DEFAULT_MMAP_MAX = 128 * 1024, 65536  # glibc's defaults
_HOLD_TRIM = 2**31 - 1  # mallopt takes a C int: trim the heap's top only beyond 2 GiB free
LARGE_BLOCK = 32 << 20
"""glibc's largest mmap threshold: blocks below it are reused by glibc's own policy once such a block has been
freed, so :func:`train_saes <spade_lens.training.trainer.train_saes>` changes the policy only when a step's
(batch, d_sae) temporaries reach this size (under it, the change bought nothing and made the streamed reading of
a large cache slower in ``benchmarks/bench_large_cache.py``)."""
_lock = threading.Lock()
_depth = 0


def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if os.environ.get("SPADE_LENS_MALLOC", "") == "default":
        return None
    if "MALLOC_MMAP_MAX_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return None  # the user chose glibc's policy already
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


@contextmanager
def reuse_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Within the block, large freed blocks stay in the process for reuse (see the module text); yields whether
    the allocator's policy was changed (never when ``enabled`` is False). Nested blocks share the outermost one's
    setting."""
    global _depth
    libc = _libc() if enabled else None
    if libc is None:
        yield False
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _HOLD_TRIM)
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM)
                libc.malloc_trim(0)
