"""Train several SAEs side by side on one stream of activation batches.

Every batch goes to every SAE; each SAE has its own Adam optimiser and steps on
``mse_loss + s * sparsity_loss + aux_loss`` (``s`` the sparsity-coefficient warmup), with the learning rate of
:func:`~spade_lens.training.schedule.learning_rate`, global grad-norm clipping, then ``sae.post_step()``. The
trainer knows no architecture: logging, evaluation and checkpoints hang off the loop. Across several processes
(``torchrun``) the ranks agree through :mod:`spade_lens.training.distributed`.
"""

from __future__ import annotations

import re
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spade_lens.errors import SpadeLensError
from spade_lens.metrics import evaluate_sae, l0, nmse
from spade_lens.training.checkpoint import load_checkpoint, save_checkpoint
from spade_lens.training.config import SAETrainConfig
from spade_lens.training.dead import DeadLatentTracker
from spade_lens.training.distributed import TrainGroup, current_group
from spade_lens.training.log import RunLog
from spade_lens.training.memory import LARGE_BLOCK, reuse_freed_memory
from spade_lens.training.precision import autocast
from spade_lens.training.schedule import learning_rate, sparsity_coefficient
from spade_lens.training.stream import BatchSource, as_activations, batch_stream, estimate_normalization, peek

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass
class _Slot:
    """One SAE's training state."""

    name: str
    sae: nn.Module
    optimizer: torch.optim.Adam
    dead: DeadLatentTracker
    seconds: float = 0.0
    last: dict[str, float] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.sae.parameters()).device


def _check_saes(saes: Any) -> dict[str, nn.Module]:
    if not isinstance(saes, Mapping) or not saes:
        raise SpadeLensError(f"saes must be a non-empty dict name -> SAE, got {type(saes).__name__} {saes!r:.80}")
    for name, sae in saes.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SpadeLensError(f"SAE name {name!r} must be a folder-safe name ([A-Za-z0-9][A-Za-z0-9_.-]*)")
        if not isinstance(sae, nn.Module) or not hasattr(sae, "cfg") or not hasattr(sae, "post_step"):
            raise SpadeLensError(f"saes[{name!r}] is a {type(sae).__name__}; expected an SAE (see create_sae)")
    return dict(saes)


def _check_width(x: Tensor, step: int, slots: list[_Slot]) -> None:
    for slot in slots:
        if x.shape[-1] != slot.sae.cfg.d_in:
            raise SpadeLensError(
                f"batch at step {step} has shape {tuple(x.shape)}, but SAE {slot.name!r} expects "
                f"(batch, {slot.sae.cfg.d_in}) (its d_in)"
            )


def _check_finite(x: Tensor, step: int, names: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise SpadeLensError(
            f"batch at step {step} has non-finite activations (fed to SAE {names}); training stopped, the last "
            "good checkpoint (if any) is kept"
        )


@contextmanager
def _deferred_sigint(distributed: bool = False) -> Iterator[list[bool]]:
    """While inside, a first Ctrl-C only sets a flag (checked between steps, so checkpoints are consistent);
    a second one interrupts at once. ``distributed``: SIGTERM too sets the flag, and further signals only set it
    (``torchrun`` passes the signal on to every rank; the ranks agree on the step to stop at)."""
    flag: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag and not distributed:
            raise KeyboardInterrupt
        flag.append(True)

    kinds = (signal.SIGINT, signal.SIGTERM) if distributed else (signal.SIGINT,)
    previous = {kind: signal.signal(kind, handler) for kind in kinds}
    try:
        yield flag
    finally:
        for kind, old in previous.items():
            signal.signal(kind, old)


def _batch_nmse(x: Tensor, x_hat: Tensor) -> float:
    """NMSE of one batch; nan for a batch without variance (e.g. a last batch of one row)."""
    try:
        return nmse(x.detach(), x_hat.detach())
    except SpadeLensError:
        return float("nan")


def _train_step(slot: _Slot, x: Tensor, step: int, cfg: SAETrainConfig, want_stats: bool,
                group: TrainGroup, rows: int) -> None:
    """One optimiser step of one SAE on raw activations ``x`` (batch, d_in), this rank's part of a combined batch
    of ``rows`` rows (see :mod:`~spade_lens.training.distributed`; one process: ``rows == len(x)``)."""
    start = time.perf_counter()
    lr, s = learning_rate(step, cfg) * cfg.lr_scale.get(slot.name, 1.0), sparsity_coefficient(step, cfg)
    for param_group in slot.optimizer.param_groups:
        param_group["lr"] = lr
    with autocast(slot.device, cfg.precision):
        out = slot.sae(x, dead_mask=slot.dead.dead_mask)
    loss = out.mse_loss + s * out.sparsity_loss + out.aux_loss
    finite = bool(torch.isfinite(loss))  # the one sync per step; non-finite activations always end up here
    slot.optimizer.zero_grad(set_to_none=True)
    if finite:
        loss.backward()
    z = out.z.detach()
    fired, all_finite = group.reduce_step(slot.sae, z, finite, x.shape[0] / rows)
    if not all_finite:
        if finite:
            raise SpadeLensError(f"non-finite loss at step {step} for SAE {slot.name!r} on another rank; training "
                                 "stopped, the last good checkpoint (if any) is kept")
        _check_finite(x, step, repr(slot.name))
        raise SpadeLensError(
            f"non-finite loss at step {step} for SAE {slot.name!r}: loss={loss.item()}, mse_loss="
            f"{out.mse_loss.item()}, sparsity_loss={out.sparsity_loss.item()}, aux_loss={out.aux_loss.item()}; "
            "training stopped, the last good checkpoint (if any) is kept"
        )
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(slot.sae.parameters(), cfg.grad_clip)
    slot.optimizer.step()
    slot.sae.post_step()
    slot.dead.update_fired(fired, rows)
    x_hat = out.x_hat.detach()
    if group.world_size == 1:
        resampled = slot.sae.resample(x, x_hat, slot.dead.dead_mask, step, cfg.total_steps)
    elif slot.sae.resample_due(step, cfg.total_steps):  # the same decision on every rank, from every rank's rows
        resampled = slot.sae.resample(group.gather_rows(x), group.gather_rows(x_hat), slot.dead.dead_mask, step,
                                      cfg.total_steps)
    else:
        resampled = None
    if resampled is not None and resampled.numel():
        _clear_optimizer_rows(slot, resampled)
        slot.dead.revive(resampled)
    if want_stats:
        slot.last = {
            **group.mean_stats({
                "loss": loss.item(),
                "mse_loss": out.mse_loss.item(),
                "sparsity_loss": out.sparsity_loss.item(),
                "aux_loss": out.aux_loss.item(),
                "l0": l0(z),
                "nmse": _batch_nmse(x, out.x_hat),
            }, x.shape[0] / rows),
            "dead_fraction": slot.dead.dead_fraction(),
            "lr": lr,
            "sparsity_coefficient": s,
        }
    if slot.device.type == "cuda":
        torch.cuda.synchronize(slot.device)
    slot.seconds += time.perf_counter() - start


@torch.no_grad()
def _clear_optimizer_rows(slot: _Slot, latents: Tensor) -> None:
    """Zero Adam's moments of resampled ``latents`` in every latent-indexed parameter, so the new weights start
    without the old ones' momentum."""
    for param, dim in slot.sae.latent_parameters():
        state = slot.optimizer.state.get(param)
        if not state:
            continue
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].index_fill_(dim, latents.to(state[key].device), 0.0)


def _state(slots: list[_Slot], step: int, tokens: int, cfg: SAETrainConfig) -> dict[str, Any]:
    return {
        "step": step,
        "tokens": tokens,
        "config": cfg.to_dict(),
        "torch_rng": torch.get_rng_state(),
        "saes": {
            slot.name: {
                "model": {k: v.detach().cpu().clone() for k, v in slot.sae.state_dict().items()},
                "optimizer": slot.optimizer.state_dict(),
                "dead": slot.dead.state_dict(),
                "seconds": slot.seconds,
            }
            for slot in slots
        },
    }


def _restore(slots: list[_Slot], state: dict[str, Any]) -> tuple[int, int]:
    if sorted(state["saes"]) != sorted(slot.name for slot in slots):
        raise SpadeLensError(
            f"checkpoint holds SAEs {sorted(state['saes'])}, but saes has {sorted(s.name for s in slots)}; "
            "expected the same names to resume"
        )
    for slot in slots:
        saved = state["saes"][slot.name]
        try:
            slot.sae.load_state_dict(saved["model"])
        except RuntimeError as err:
            raise SpadeLensError(f"checkpoint weights do not fit SAE {slot.name!r}: {err}") from err
        slot.optimizer.load_state_dict(saved["optimizer"])
        slot.dead.load_state_dict(saved["dead"])
        slot.seconds = float(saved["seconds"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), int(state["tokens"])


def _evaluate(slots: list[_Slot], eval_batches: BatchSource, step: int, tokens: int) -> list[dict[str, Any]]:
    records = []
    for slot in slots:
        was_training = slot.sae.training
        slot.sae.eval()
        source = eval_batches() if callable(eval_batches) else eval_batches
        result = evaluate_sae(slot.sae, source)
        slot.sae.train(was_training)
        records.append({"kind": "eval", "step": step, "tokens": tokens, "sae": slot.name, **result._asdict()})
    return records


def _next_batch(stream: Iterator[Any], step: int, slots: list[_Slot]) -> Tensor | None:
    """The next (batch, d_in) activations of ``stream``, None when it has ended."""
    try:
        batch = next(stream)
    except StopIteration:
        return None
    x = as_activations(batch, step)
    _check_width(x, step, slots)
    return x


def _make_slot(name: str, sae: nn.Module, cfg: SAETrainConfig) -> _Slot:
    param = next(sae.parameters())
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=tuple(cfg.adam_betas))
    sae.train()
    return _Slot(name, sae, optimizer, DeadLatentTracker(sae.cfg.d_sae, cfg.dead_window_tokens, param.device))


def _head(slots: list[_Slot], stream: Iterator[Any], cfg: SAETrainConfig,
          group: TrainGroup) -> tuple[list[Tensor], Iterator[Any]]:
    """(The first ``cfg.norm_batches`` batches of every rank, gathered in rank order; the stream, head still in)."""
    head, stream = peek(stream, cfg.norm_batches)
    head_acts = [as_activations(b, i) for i, b in enumerate(head)]
    for i, x in enumerate(head_acts):
        _check_width(x, i, slots)
    return group.gather_batches(head_acts, slots[0].sae.cfg.d_in), stream


def _normalize(slots: list[_Slot], stream: Iterator[Any], cfg: SAETrainConfig, norm_stats: Any,
               group: TrainGroup) -> Iterator[Any]:
    """Give every SAE the normalisation (``norm_stats`` or estimated from the stream's head); returns the stream
    (the head batches are still in it)."""
    if norm_stats is None:
        head_acts, stream = _head(slots, stream, cfg, group)
        for i, x in enumerate(head_acts):
            _check_finite(x, i, ", ".join(repr(s.name) for s in slots))
        mean, scale = estimate_normalization(head_acts)
    elif isinstance(norm_stats, tuple) and len(norm_stats) == 2:
        mean, scale = norm_stats
    elif hasattr(norm_stats, "mean") and hasattr(norm_stats, "scale"):
        mean, scale = norm_stats.mean, norm_stats.scale
    else:
        raise SpadeLensError(
            f"norm_stats is a {type(norm_stats).__name__}; expected hooks.NormStats, a (mean, scale) pair or None"
        )
    for slot in slots:
        slot.sae.set_normalization(torch.as_tensor(mean).to(slot.device), float(scale))
    return stream


def _init_from_data(slots: list[_Slot], stream: Iterator[Any], cfg: SAETrainConfig,
                    group: TrainGroup) -> Iterator[Any]:
    """Give every SAE the head of the stream (``cfg.norm_batches`` batches, of every rank) for its data-dependent
    initialisation (:meth:`~spade_lens.saes.base.SAE.init_from_batch`); returns the stream with the head still in
    it. With several ranks, every rank then takes rank 0's weights (the same by construction; now exactly)."""
    head, stream = _head(slots, stream, cfg, group)
    if head:
        x = torch.cat(head)
        for slot in slots:
            slot.sae.init_from_batch(x.to(slot.device))
    for slot in slots:
        group.broadcast_module(slot.sae)
    return stream


def train_saes(
    saes: Mapping[str, nn.Module],
    batches: BatchSource,
    cfg: SAETrainConfig,
    *,
    out_dir: str | Path | None = None,
    eval_batches: BatchSource | None = None,
    norm_stats: Any = None,
    progress: bool = True,
    resume: bool = False,
    inputs: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Train every SAE of ``saes`` (name -> SAE) on the same stream of ``batches`` for ``cfg.total_steps`` steps.

    ``batches``: see :mod:`spade_lens.training.stream` (a callable giving a fresh iterable per epoch, a
    re-iterable, or an iterator) of (batch, d_in) tensors or LabelledBatch. ``norm_stats``: an object with
    ``mean`` (d_in,) and ``scale`` (``hooks.NormStats``) or a ``(mean, scale)`` pair; by default the statistics
    are estimated from the first ``cfg.norm_batches`` batches (if ``cfg.normalize``). ``out_dir``: run folder
    for ``log.jsonl``, ``checkpoint.pt`` (every ``cfg.checkpoint_every`` steps and on Ctrl-C) and, at the end,
    one SAE folder per name. ``resume``: continue from ``out_dir/checkpoint.pt``, skipping the batches already
    consumed (bit-identical to an uninterrupted run on CPU when ``batches`` repeats the same order).
    ``inputs``, ``settings``: recorded with the training config and the SAEs' configs in
    ``out_dir/provenance.json`` (kind ``saes``) when the SAEs are saved.

    In a process group of several ranks (``torchrun``, see :mod:`spade_lens.training.distributed`) every rank
    calls this with its own ``batches``; each step is the step on the rows of all ranks together, and only rank 0
    writes files and evaluates.

    Returns name -> final metrics: the last step's loss terms, l0, nmse, dead_fraction, lr, plus steps, tokens,
    tokens_per_s (this SAE's own step time) and, with ``eval_batches``, ``eval_l0``, ``eval_nmse``,
    ``eval_explained_variance``, ``eval_dead_fraction``.
    """
    saes = _check_saes(saes)
    if not isinstance(cfg, SAETrainConfig):
        raise SpadeLensError(f"cfg must be an SAETrainConfig, got {type(cfg).__name__}")
    if resume and out_dir is None:
        raise SpadeLensError("resume=True needs out_dir (the folder holding checkpoint.pt), got out_dir=None")
    out = Path(out_dir) if out_dir is not None else None
    unknown = sorted(set(cfg.lr_scale) - set(saes))
    if unknown:
        raise SpadeLensError(f"SAETrainConfig.lr_scale: {unknown} are not SAEs of this run; expected some of {sorted(saes)}")
    slots = [_make_slot(name, sae, cfg) for name, sae in saes.items()]
    group = current_group()  # the ranks of a torchrun launch, or this process alone
    step, tokens = 0, 0
    if resume:
        state = group.from_main(lambda: load_checkpoint(out))
        changed = sorted(k for k, v in cfg.to_dict().items() if state.get("config", {}).get(k) != v)
        if changed:
            warnings.warn(f"resuming with a config that differs from the checkpoint's in {changed}", stacklevel=2)
        step, tokens = _restore(slots, state)
    stream = batch_stream(batches, skip=step)
    if not resume:
        if cfg.normalize:
            stream = _normalize(slots, stream, cfg, norm_stats, group)
        stream = _init_from_data(slots, stream, cfg, group)

    total = cfg.total_steps
    writes = out if group.is_main else None  # only rank 0 writes files
    log = RunLog(writes, total_steps=total, start_step=step, progress=progress and group.is_main,
                 use_wandb=cfg.wandb and group.is_main, wandb_project=cfg.wandb_project, config=cfg.to_dict())
    evaluating = eval_batches is not None and group.is_main
    consistent = True
    try:
        big = max(slot.sae.cfg.d_sae for slot in slots) * cfg.batch_size * 4 >= LARGE_BLOCK  # float32 (batch, d_sae)
        with _deferred_sigint(group.world_size > 1) as interrupted, reuse_freed_memory(big):
            while step < total:
                x = None if interrupted else _next_batch(stream, step, slots)
                status = group.step_status(0 if x is None else x.shape[0], bool(interrupted))
                if status.interrupted:
                    raise KeyboardInterrupt
                if status.ended or x is None:
                    where = " on some rank" if group.world_size > 1 else ""
                    warnings.warn(f"batches ran out{where} after {step} of {total} steps; stopping early",
                                  stacklevel=2)
                    break
                want_stats = (step + 1) % cfg.log_every == 0 or step + 1 == total
                consistent = False
                for slot in slots:
                    _train_step(slot, x.to(slot.device, non_blocking=True), step, cfg, want_stats, group,
                                status.rows)
                step, tokens = step + 1, tokens + status.rows
                consistent = True
                log.advance()
                if want_stats:
                    log.write([
                        {"kind": "train", "step": step, "tokens": tokens, "sae": s.name, **s.last,
                         "tokens_per_s": tokens / max(s.seconds, 1e-9)}
                        for s in slots
                    ])
                if evaluating and cfg.eval_every and step % cfg.eval_every == 0 and step < total:
                    log.write(_evaluate(slots, eval_batches, step, tokens))
                if writes is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    save_checkpoint(writes, _state(slots, step, tokens, cfg))
            final_eval = _evaluate(slots, eval_batches, step, tokens) if evaluating else []
            log.write(final_eval)
    except KeyboardInterrupt:
        if writes is not None and consistent:
            save_checkpoint(writes, _state(slots, step, tokens, cfg))
        raise
    finally:
        log.close()

    results = {
        slot.name: {**slot.last, "steps": step, "tokens": tokens, "tokens_per_s": tokens / max(slot.seconds, 1e-9)}
        for slot in slots
    }
    for record in final_eval:
        results[record["sae"]].update(
            {f"eval_{k}": v for k, v in record.items() if k not in ("kind", "step", "tokens", "sae", "n_tokens")}
        )
    if writes is not None and cfg.save_saes:
        for slot in slots:
            slot.sae.save(writes / slot.name)
        _write_provenance(writes, slots, cfg, inputs, settings)
    return results


def _write_provenance(out: Path, slots: list[_Slot], cfg: SAETrainConfig, inputs: Mapping[str, Any] | None,
                      settings: Mapping[str, Any] | None) -> None:
    from spade_lens.provenance import json_identity, provenance_record, weights_identity, write_provenance

    ids = {slot.name: weights_identity(slot.sae) for slot in slots}
    write_provenance(out, provenance_record(
        "saes", id=json_identity(ids), inputs=inputs,
        settings={"train_config": cfg.to_dict(), "saes": {s.name: s.sae.cfg.to_dict() for s in slots},
                  **dict(settings or {})}))
