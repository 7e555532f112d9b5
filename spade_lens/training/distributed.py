"""SAE training across processes (torch.distributed, DDP semantics): what :func:`train_saes` asks of the ranks.

Launch any training script, ``spade-lens train-sae`` or ``spade-lens sweep`` with ``torchrun --nproc-per-node N``
(the commands call :func:`init_distributed`; in your own script call it, or ``init_process_group``, before
training). :func:`~spade_lens.training.train_saes` then finds the process group and

- trains each rank on its own batches: give each rank its own part of the data, e.g.
  ``cache.batches(hook, per_rank_batch(4096), seed=0, rank=rank, world_size=world_size)``;
- averages the gradients over the ranks, each rank's weighted by its rows (every SAE loss is a mean over the
  rows of its batch), so a step is the step on the combined batch (the rows of all ranks, in rank order);
- counts a latent as fired when it fired on any rank, and the tokens of all ranks, so the dead-latent counters,
  TopK's AuxK and the dead fractions see the combined batch;
- gives the data-dependent steps every rank's rows: the normalisation and ``init_from_batch`` read the head
  batches of all ranks (gathered in rank order), ``resample`` the step's combined batch, whenever the SAE's
  ``resample_due`` says it may act;
- stops every rank at the same step: when any rank's stream has ended (with a warning), or when any rank got
  Ctrl-C or SIGTERM (then rank 0 writes the checkpoint of the last finished step);
- writes files on rank 0 only (log, checkpoints, SAE folders, provenance); a resume reads the checkpoint on
  rank 0 and sends it to every rank, and each rank skips the batches of its own stream already used.

So the trained SAEs equal one process trained on the combined batches, to float tolerance (sums are taken in
another order). One process without a group goes through :class:`TrainGroup`, whose methods do nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from hooks.distributed import collective_device, from_main, ranks, share
from spade_lens.errors import SpadeLensError
from spade_lens.metrics import ACTIVE_THRESHOLD


class StepStatus(NamedTuple):
    """What every rank agrees on before a step."""

    rows: int
    """Rows of the combined batch (all ranks)."""
    interrupted: bool
    """Some rank got Ctrl-C / SIGTERM: stop now (rank 0 saves the checkpoint)."""
    ended: bool
    """Some rank's stream has ended: stop."""


class TrainGroup:
    """The processes training together, as the trainer sees them: here a single process (every call is free)."""

    rank = 0
    world_size = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes the files (rank 0)."""
        return self.rank == 0

    def step_status(self, rows: int, interrupted: bool) -> StepStatus:
        """Agree on the next step from this rank's ``rows`` (0: its stream ended) and its interrupt flag."""
        return StepStatus(rows, interrupted, rows == 0 and not interrupted)

    def reduce_step(self, sae: nn.Module, z: Tensor | None, finite: bool, weight: float) -> tuple[Tensor, bool]:
        """After ``loss.backward()`` on this rank's rows: set the combined batch's gradients and return (the bool
        (d_sae,) mask of latents that fired on the combined batch, whether every rank's loss was finite).
        ``z`` (rows, d_sae) this rank's latents; ``weight`` = this rank's rows / the combined rows."""
        assert z is not None
        return z.amax(0) > ACTIVE_THRESHOLD, finite

    def gather_rows(self, x: Tensor) -> Tensor:
        """(rows of all ranks, ...): every rank's ``x`` (rows, ...) concatenated in rank order."""
        return x

    def gather_batches(self, batches: list[Tensor], width: int) -> list[Tensor]:
        """Batch i of the result: every rank's ``batches[i]`` (rows, width) concatenated in rank order."""
        return batches

    def mean_stats(self, stats: Mapping[str, float], weight: float) -> dict[str, float]:
        """Row-weighted means over the ranks of this rank's figures ``stats`` (``weight`` as in reduce_step)."""
        return dict(stats)

    def from_main(self, fn: Any) -> Any:
        """``fn()`` run on rank 0, its result (or its SpadeLensError) on every rank."""
        return fn()

    def broadcast_module(self, module: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers."""


class DistributedTrainGroup(TrainGroup):
    """The ranks of the initialised default process group (gloo on CPUs, NCCL on GPUs)."""

    def __init__(self) -> None:
        self.rank, self.world_size = ranks()
        self.device = collective_device()

    def _all_gather(self, t: Tensor) -> list[Tensor]:
        t = t.to(self.device)
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        torch.distributed.all_gather(out, t)
        return out

    def step_status(self, rows: int, interrupted: bool) -> StepStatus:
        mine = torch.tensor([rows, int(interrupted)], dtype=torch.int64)
        every = torch.stack(self._all_gather(mine)).cpu()  # (world_size, 2)
        stop = bool(every[:, 1].any())
        return StepStatus(int(every[:, 0].sum()), stop, not stop and bool((every[:, 0] == 0).any()))

    def reduce_step(self, sae: nn.Module, z: Tensor | None, finite: bool, weight: float) -> tuple[Tensor, bool]:
        params = [p for p in sae.parameters() if p.requires_grad]
        first = params[0]
        d_sae = int(sae.cfg.d_sae)
        fired = (z.amax(0) > ACTIVE_THRESHOLD) if z is not None else torch.zeros(d_sae, dtype=torch.bool)
        parts = [(p.grad * weight if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
        flags = torch.tensor([p.grad is not None for p in params] + [not finite], dtype=first.dtype)
        flat = torch.cat([*parts, flags.to(first.device), fired.to(first.device, first.dtype)]).to(self.device)
        torch.distributed.all_reduce(flat)  # one message per SAE and step: gradients, their flags, firing
        flat = flat.to(first.device)
        offset = 0
        for p in params:
            p.grad = flat[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
        has_grad = flat[offset:offset + len(params)]
        for p, has in zip(params, has_grad.tolist(), strict=True):
            if not has:  # no rank had a gradient: as in one process, the optimiser leaves it alone
                p.grad = None
        offset += len(params)
        all_finite = float(flat[offset]) == 0
        return flat[offset + 1:offset + 1 + d_sae] > 0, all_finite

    def gather_rows(self, x: Tensor) -> Tensor:
        counts = [int(c) for c in self._all_gather(torch.tensor([x.shape[0]], dtype=torch.int64))]
        padded = x.new_zeros((max(counts), *x.shape[1:]))
        padded[:x.shape[0]] = x
        parts = self._all_gather(padded)
        return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)]).to(x.device)

    def gather_batches(self, batches: list[Tensor], width: int) -> list[Tensor]:
        counts = self._all_gather(torch.tensor([len(batches)], dtype=torch.int64))
        n = max(int(c) for c in counts)
        like = batches[0] if batches else torch.zeros(0, width)
        empty = like.new_zeros((0, width))
        return [self.gather_rows(batches[i] if i < len(batches) else empty) for i in range(n)]

    def mean_stats(self, stats: Mapping[str, float], weight: float) -> dict[str, float]:
        keys = sorted(stats)
        values = torch.tensor([float(stats[k]) * weight for k in keys], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(values)
        return dict(zip(keys, values.tolist(), strict=True))

    def from_main(self, fn: Any) -> Any:
        return from_main(fn, SpadeLensError)

    @torch.no_grad()
    def broadcast_module(self, module: nn.Module) -> None:
        for t in [*module.parameters(), *module.buffers()]:
            sent = t.data.to(self.device)
            torch.distributed.broadcast(sent, src=0)
            t.data.copy_(sent)


def current_group() -> TrainGroup:
    """The processes of the initialised default process group, or this single process."""
    return DistributedTrainGroup() if ranks()[1] > 1 else TrainGroup()


def per_rank_batch(batch_size: int, rank: int | None = None, world_size: int | None = None) -> int:
    """This rank's share of a combined batch of ``batch_size`` rows (shares differ by at most one row)."""
    if rank is None or world_size is None:
        rank, world_size = ranks()
    lo, hi = share(batch_size, rank, world_size)
    if hi == lo:
        raise SpadeLensError(f"batch_size: received {batch_size}; expected at least one row per rank "
                             f"({world_size} ranks)")
    return hi - lo


def launched_by_torchrun() -> bool:
    """Whether the environment says this process is one of several started by ``torchrun``."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def init_distributed(device: str | torch.device | None = None) -> str:
    """Join the process group ``torchrun`` described in the environment (once; nothing when started alone) and
    return the device this rank trains on: ``cuda:LOCAL_RANK`` when ``device`` is a CUDA device, or None with a
    GPU present (backend NCCL); otherwise ``device`` or ``cpu`` (backend gloo)."""
    dist = torch.distributed
    wanted = torch.device(device) if device is not None else None
    cuda = (wanted.type == "cuda") if wanted is not None else torch.cuda.is_available()
    if not launched_by_torchrun():
        return str(device) if device is not None else ("cuda" if cuda else "cpu")
    if not dist.is_available():
        raise SpadeLensError("torchrun: this torch build has no torch.distributed; expected a build with it")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise SpadeLensError(f"torchrun: LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} "
                                 "GPUs; expected at most one process per GPU (--nproc-per-node)")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return f"cuda:{local_rank}" if cuda else str(device or "cpu")
