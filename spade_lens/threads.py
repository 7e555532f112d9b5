"""torch's intra-op CPU threads: a default that suits small work, and the ``--threads`` flag.

torch starts one OpenMP thread per core. On a machine whose cores are busy with other processes, the threads
of one operation wait for each other at every barrier while one of them is off the CPU: measured on a loaded
2-core machine, SAE steps of the sizes of the examples and of ``spade-lens run`` (d_in 2 to 128, width 16 to 256)
ran 2-45x slower on 2 threads than on 1, while near idle 2 threads took 0.7-1.2x the time of 1
(``benchmarks/bench_threads.py``): small operations gain little from threads and can lose much.

The default rule (:func:`default_threads`):

- ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set in the environment: torch's own choice (it honours them);
- work of a step (multiply-adds of its largest product) under :data:`SMALL_WORK`: 1 thread;
- otherwise torch's own count (one per core).

The rule depends on the work and the machine only, never on the load of the moment, so the same command on the
same machine always runs on the same number of threads (CPU results are bit-reproducible for a given count, not
across counts). On a busy machine pass ``--threads 1``: ``benchmarks/bench_threads.py`` shows what it saves.
Commands that train (``spade-lens train-sae``, ``sweep``, ``run``) take ``--threads N`` and otherwise apply this
rule through :func:`apply_threads`.
"""

from __future__ import annotations

import argparse
import os

import torch

from spade_lens.errors import SpadeLensError

SMALL_WORK = 1 << 28
"""Multiply-adds per step under which one thread is used (about 268 M: a batch of 4,096 through a 128 x 512
product). It covers the SAEs of ``spade-lens run`` (batch 1,024, d_in 128, width 256: 34 M), whose steps took
8 ms on one thread and 0.2 s on two on a loaded 2-core machine."""

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
    """Cores left idle by the load of the last minute (``os.getloadavg``; all of them where there is no load
    average): printed by the benchmark, not used by the rule (it would make the thread count, and so the last
    bits of results, depend on the moment)."""
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
    return _TORCH_DEFAULT


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


def add_threads_option(parser: argparse.ArgumentParser, default: str) -> None:
    """``--threads N`` on a command that trains; ``default``: what the command does without it."""
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch CPU threads (default: {default}; OMP_NUM_THREADS, when set, decides instead; "
                        "1 is much faster on a busy machine; see spade_lens.threads)")
