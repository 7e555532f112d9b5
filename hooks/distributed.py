"""Working across the processes of a ``torchrun`` launch: which rank this is, its share of the work, and
decisions rank 0 takes for every rank.

Nothing here starts a process group: ``torchrun`` sets the environment and the caller (a ``spade-lens`` command,
or your own script) calls ``torch.distributed.init_process_group``. Without a group, or with a group of one
process, every function answers as for a single process (rank 0 of 1), at no cost.

    >>> rank, world_size = ranks()
    >>> lo, hi = share(n_rows, rank, world_size)   # this rank's rows [lo, hi)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def ranks() -> tuple[int, int]:
    """(rank, world size) of this process in the default process group; (0, 1) without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    """Whether this process is one of several in an initialised default process group."""
    return ranks()[1] > 1


def share(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s part ``[lo, hi)`` of ``n`` items cut into ``world_size`` contiguous parts as even as can be
    (sizes differ by at most one; the parts cover ``[0, n)`` in rank order)."""
    return n * rank // world_size, n * (rank + 1) // world_size


def collective_device() -> torch.device:
    """Where tensors sent through the default group must live: the current GPU under NCCL, else the CPU."""
    dist = torch.distributed
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here (nothing with a single process)."""
    if is_distributed():
        torch.distributed.barrier()


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (pickled; tensors inside arrive on the CPU or where they were)."""
    if not is_distributed():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0, device=collective_device())
    return box[0]


def from_main(fn: Callable[[], T], error: type[Exception]) -> T:
    """Run ``fn`` on rank 0 only and give its result to every rank; if it raises, rank 0 re-raises its error and
    every other rank raises ``error`` with the same message (so no rank waits forever for the others)."""
    if not is_distributed():
        return fn()
    outcome: tuple[bool, Any]
    failure: BaseException | None = None
    if ranks()[0] == 0:
        try:
            outcome = (True, fn())
        except Exception as err:  # every rank must hear about it before rank 0 raises
            failure = err
            outcome = (False, f"{type(err).__name__}: {err}")
    else:
        outcome = (True, None)
    ok, value = broadcast_object(outcome)
    if failure is not None:
        raise failure
    if not ok:
        raise error(f"rank 0 stopped with {value}")
    return value


def check_all(failure: BaseException | None, error: type[Exception]) -> None:
    """Every rank says whether its part of the work failed; if any did, each rank raises: the failing ones their
    own ``failure``, the others ``error`` naming the rank that failed and why (so no rank waits forever)."""
    if not is_distributed():
        if failure is not None:
            raise failure
        return
    every: list[Any] = [None] * ranks()[1]
    torch.distributed.all_gather_object(every, None if failure is None else f"{type(failure).__name__}: {failure}")
    if failure is not None:
        raise failure
    for rank, message in enumerate(every):
        if message is not None:
            raise error(f"rank {rank} stopped with {message}")
