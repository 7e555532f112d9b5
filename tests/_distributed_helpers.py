"""Run a function on several CPU processes joined by a gloo process group (the tests of torchrun-style work).

``run_ranks(fn, 2, tmp_path, *args)`` spawns 2 processes that each call ``fn(rank, world_size, tmp_path, *args)``
inside an initialised gloo group (rendezvous through a file in ``tmp_path``), one torch thread each; an error in
any rank fails the call with that rank's traceback. ``fn`` must be importable (a module-level function).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp


def _worker(rank: int, world_size: int, folder: str, fn: Any, args: tuple) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                                         world_size=world_size)
    try:
        fn(rank, world_size, Path(folder), *args)
    finally:
        torch.distributed.destroy_process_group()


def run_ranks(fn: Any, world_size: int, folder: Path, *args: Any) -> None:
    """Call ``fn(rank, world_size, folder, *args)`` on ``world_size`` processes of one gloo group."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rendezvous").unlink(missing_ok=True)
    mp.spawn(_worker, args=(world_size, str(folder), fn, args), nprocs=world_size, join=True)


def rank_rows(x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s rows of the combined batch ``x`` (contiguous shares in rank order, as even as can be)."""
    n = x.shape[0]
    return x[n * rank // world_size:n * (rank + 1) // world_size]
