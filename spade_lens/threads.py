"""torch's intra-op CPU threads: a default that suits small work and busy machines, and the ``--threads`` flag.

torch starts one OpenMP thread per core. On a machine whose cores are busy with other processes, the threads
of one operation wait for each other at every barrier while one of them is off the CPU: measured on a loaded
2-core machine, tiny SAE steps (d_in 2) ran 8x slower on 2 threads than on 1 (``benchmarks/bench_threads.py``).
Small operations gain nothing from threads anyway.

The default rule (:func:`default_threads`):

- ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set in the environment: torch's own choice (it honours them);
- work of a step (multiply-adds of its largest product) under :data:`SMALL_WORK`: 1 thread;
- otherwise the cores this process may use minus the load of the last minute (the idle ones), rounded, between
  1 and torch's default. A quiet machine keeps every core; a busy one gets 1 thread.

Commands that train (``spade-lens train-sae``, ``sweep``, ``run``) take ``--threads N`` and otherwise apply this
rule through :func:`apply_threads`.
"""

from __future__ import annotations

import os

import torch

from spade_lens.errors import SpadeLensError

SMALL_WORK = 1 << 24
"""Multiply-adds per step under which one thread is used (about 16 M: a batch of 4,096 through a 2 x 2,048
product; a few milliseconds on one core, where thread barriers cost as much as they save)."""

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables that, when set, leave the choice to torch."""

_TORCH_DEFAULT = torch.get_num_threads()  # torch's own count, read at import before anyone changes it


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def idle_cores() -> float:
    """Cores left idle by the load of the last minute (``os.getloadavg``); all of them where there is no load
    average."""
    cores = available_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return float(cores)
    return max(0.0, cores - load)


def default_threads(work: int | None = None) -> int:
    """The thread count of the default rule (see the module text) for steps of ``work`` multiply-adds (None:
    unknown, so not small)."""
    if any(os.environ.get(name) for name in ENV_VARS):
        return torch.get_num_threads()
    if work is not None and work < SMALL_WORK:
        return 1
    return max(1, min(_TORCH_DEFAULT, available_cores(), round(idle_cores())))


def check_threads(threads: object, name: str = "--threads") -> int | None:
    """``threads`` as a positive int or None; SpadeLensError naming ``name`` otherwise."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SpadeLensError(f"{name}: received {threads!r}; expected a positive integer (torch CPU threads)")
    return threads


def apply_threads(threads: int | None = None, work: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` or, when None, to :func:`default_threads` (``work``: see
    there); returns the count now in use."""
    n = check_threads(threads, "threads")
    torch.set_num_threads(n if n is not None else default_threads(work))
    return torch.get_num_threads()
