"""Train the small HookedTransformer on a pcfg corpus: :func:`train_lm` (corpus in, saved model out) over
:func:`fit` (the loop on padded token tensors, which knows nothing of grammars).

The loop: AdamW (decay on weight matrices only), linear warmup then cosine, grad-norm clipping, next-token
loss without padding (see :mod:`spade_lens.lm.data` for why right padding is exact), a tqdm bar with the
running loss, the validation loss every ``eval_every`` steps, a checkpoint every ``checkpoint_every`` steps,
at the end and on Ctrl-C. ``resume=True`` continues from the checkpoint and, on CPU, ends with parameters
bit-identical to an uninterrupted run's; on CPU every run with one seed gives the same bits, whatever the thread
count's timing (torch's deterministic algorithms are on inside the loop: :mod:`spade_lens._determinism`).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from spade_lens._determinism import deterministic_on_cpu
from spade_lens.devices import check_device, check_fits
from spade_lens.errors import SpadeLensError
from spade_lens.lm.checkpoint import CHECKPOINT_DIR, STATE_FILE, load_checkpoint, save_checkpoint
from spade_lens.lm.config import LEGACY_RESULT_VALUES, RESULT_FIELDS, LMConfig, LMTrainConfig, resolve_config
from spade_lens.lm.data import BatchOrder, TokenData, evaluate_loss, lm_loss, lm_targets, pad_sequences, take
from spade_lens.lm.model import build_model, load_parameters, parameter_count
from spade_lens.lm.optim import make_optimizer, make_scheduler
from spade_lens.lm.packed import packed_loss, packed_supported
from spade_lens.training.precision import autocast, resolve_precision

logger = logging.getLogger(__name__)

Callback = Callable[[int, HookedTransformer], None]
"""Called as ``callback(steps_done, model)`` after every optimiser step (the model is in train mode)."""


class _DeferredInterrupt:
    """Within the block, a first Ctrl-C only sets :attr:`requested` (the loop stops at the end of the step,
    so the checkpoint is taken between steps); a second one interrupts at once. Main thread only."""

    def __enter__(self) -> _DeferredInterrupt:
        self.requested = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def batch_loss(model: HookedTransformer, batch: TokenData, precision: str = "float32") -> torch.Tensor:
    """Mean next-token loss of ``model`` on ``batch`` (tokens (b, L)), with gradients: :func:`packed_loss` where
    :func:`packed_supported`, else TransformerLens' forward; the matmuls in bfloat16 when ``precision`` is
    ``"bfloat16"`` (autocast)."""
    device = model.W_E.device
    tokens = batch.tokens.to(device)
    with autocast(device, precision):
        if packed_supported(model):
            return packed_loss(model, tokens, batch.lengths)
        logits = model(tokens)
    return lm_loss(logits.float(), lm_targets(tokens, batch.lengths))


def train_step(
    model: HookedTransformer,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch: TokenData,
    grad_clip: float,
    precision: str = "float32",
) -> torch.Tensor:
    """One optimiser step on ``batch`` (tokens (b, L)); returns the detached mean loss per predicted token."""
    loss = batch_loss(model, batch, precision)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return loss.detach()


def _check_resumable(state: dict[str, Any], lm_cfg: LMConfig, cfg: LMTrainConfig, folder: Path) -> None:
    saved_lm, saved_train = state.get("lm_config", {}), state.get("train_config", {})
    if saved_lm != lm_cfg.to_dict():
        raise SpadeLensError(f"resume: the checkpoint in {str(folder)!r} was trained with LMConfig {saved_lm}, "
                             f"got {lm_cfg.to_dict()}; expected the same model config (or remove the checkpoint)")
    for name in RESULT_FIELDS:
        saved = saved_train.get(name, LEGACY_RESULT_VALUES.get(name))
        if saved != getattr(cfg, name):
            raise SpadeLensError(
                f"resume: LMTrainConfig.{name} is {getattr(cfg, name)!r} but the checkpoint in {str(folder)!r} "
                f"used {saved!r}; expected the same value (or remove the checkpoint)"
            )


def fit(
    model: HookedTransformer,
    train: TokenData,
    val: TokenData | None,
    cfg: LMTrainConfig,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callback | None = None,
    lm_config: LMConfig | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place on ``train`` for ``cfg.steps`` steps; returns the loss history.

    Args:
        train, val: padded token sequences (val may be None: no validation loss).
        checkpoint_dir: where checkpoints go (None: none are written).
        resume: continue from the checkpoint in ``checkpoint_dir`` if there is one (configs must agree).
        lm_config: stored in checkpoints and checked on resume.

    Returns ``[{"step", "train_loss", "val_loss"}, ...]`` at each validation (train_loss: running mean).
    On KeyboardInterrupt a checkpoint of the last completed step is written before re-raising.
    ``cfg.precision`` "auto" is resolved for the model's device (:func:`resolve_precision`); checkpoints record
    the precision used.
    """
    lm_config = lm_config or LMConfig()
    cfg = replace(cfg, precision=resolve_precision(cfg.precision, model.W_E.device))
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    step, history, running, n_running = 0, [], 0.0, 0
    state = load_checkpoint(folder) if (resume and folder is not None) else None
    if state is not None:
        _check_resumable(state, lm_config, cfg, folder)
        load_parameters(model, state["model"], source=str(folder / STATE_FILE))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, history = int(state["step"]), list(state["history"])
        running, n_running = state["running"]

    def checkpoint() -> None:
        if folder is not None:
            save_checkpoint(folder, {
                "step": step,
                "model": {name: p.detach() for name, p in model.named_parameters()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "lm_config": lm_config.to_dict(),
                "train_config": cfg.to_dict(),
                "history": history,
                "running": [running, n_running],  # the running train loss since the last validation
            })

    order = BatchOrder(train.lengths, cfg.batch_size, cfg.seed, cfg.sort_window)
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="train-lm", unit="step", leave=False)
    in_step, saved_at = False, step
    model.train()
    try:
        with _DeferredInterrupt() as interrupt, deterministic_on_cpu(model.W_E.device):
            while step < cfg.steps:
                in_step = True
                loss = train_step(model, optimizer, scheduler, take(train, order.indices(step)), cfg.grad_clip,
                                  cfg.precision)
                step, in_step = step + 1, False
                running, n_running = running + float(loss), n_running + 1
                last = step == cfg.steps
                if val is not None and cfg.eval_every and (step % cfg.eval_every == 0 or last):
                    history.append({"step": step, "train_loss": running / n_running,
                                    "val_loss": evaluate_loss(model, val)})
                    running, n_running = 0.0, 0
                    bar.set_postfix(loss=f"{history[-1]['train_loss']:.3f}", val=f"{history[-1]['val_loss']:.3f}")
                elif step % 10 == 0:
                    bar.set_postfix(loss=f"{running / n_running:.3f}")
                if last or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                    checkpoint()
                    saved_at = step
                if callback is not None:
                    callback(step, model)
                    model.train()
                bar.update(1)
                if interrupt.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if in_step:
            logger.warning("interrupted inside step %d: keeping the checkpoint of step %d", step + 1, saved_at)
        elif saved_at != step:
            checkpoint()
        raise
    finally:
        bar.close()
        model.eval()
    return history


def _corpus_tokens(split: Any) -> list[list[int]]:
    return [list(map(int, ids)) for ids in split["input_ids"]]


def train_lm(
    corpus: Any,
    lm_cfg: LMConfig | None = None,
    train_cfg: LMTrainConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    resume: bool = False,
    device: str | torch.device = "cpu",
    callback: Callback | None = None,
    overwrite: bool = False,
) -> HookedTransformer:
    """Train a model on ``corpus`` and save it to ``out_dir``; returns it (eval mode, tokenizer attached).

    Args:
        corpus: a :class:`pcfg.Corpus` or the path of a saved one.
        lm_cfg: architecture; ``n_ctx``/``d_vocab`` left None are taken from the corpus.
        train_cfg: optimiser and schedule (defaults: :class:`LMTrainConfig`).
        out_dir: model folder (see :func:`spade_lens.lm.save_lm`), with checkpoints in ``out_dir/checkpoint``
            while training; None: nothing is written and ``resume`` is ignored.
        resume: continue from ``out_dir/checkpoint`` if it exists (same configs required), else start afresh.
        device: where to train; the result is bit-reproducible on CPU.
        callback: ``callback(steps_done, model)`` after every step (e.g. to judge samples as training goes).
        overwrite: replace the model or checkpoint already in ``out_dir`` with a new one trained from scratch.
            Without it (and without ``resume``) an existing model or checkpoint there raises, so an interrupted
            or finished training is never discarded by mistake.
    """
    from pcfg import Corpus, PCFGError, Tokenizer, load_corpus
    from spade_lens.lm.io import CONFIG_FILE, check_model_dir, save_lm

    check_device(device)
    corpus_path = None if isinstance(corpus, Corpus) else corpus
    if out_dir is not None:
        check_model_dir(out_dir)
        _check_fresh(Path(out_dir), resume, overwrite, CONFIG_FILE)
    if not isinstance(corpus, Corpus):
        if not isinstance(corpus, (str, os.PathLike)):
            raise SpadeLensError(f"corpus: expected a pcfg.Corpus or the path of a saved corpus, got "
                                 f"{type(corpus).__name__}")
        try:
            corpus = load_corpus(corpus)
        except PCFGError as err:
            raise SpadeLensError(f"corpus: {err}") from None
    if not isinstance(corpus.tokenizer, Tokenizer):
        raise SpadeLensError(f"corpus: built for a pretrained model's tokenizer ({type(corpus.tokenizer).__name__}); "
                             "train_lm trains on word-level corpora (pcfg.build_corpus / `spade-lens corpus` without "
                             "--tokenizer)")
    lm_cfg = lm_cfg or LMConfig()
    train_cfg = train_cfg or LMTrainConfig()
    train_cfg = replace(train_cfg, precision=resolve_precision(train_cfg.precision, device))
    train_seqs = _corpus_tokens(corpus.dataset["train"])
    val_seqs = _corpus_tokens(corpus.dataset["validation"])
    if not train_seqs:
        raise SpadeLensError("corpus: its train split is empty; expected at least one sentence")
    if overwrite and out_dir is not None:
        shutil.rmtree(Path(out_dir) / CHECKPOINT_DIR, ignore_errors=True)
    longest = max(len(s) for s in train_seqs + val_seqs)
    lm_cfg = resolve_config(lm_cfg, longest_sequence=longest, vocab_size=len(corpus.tokenizer))
    n_params = parameter_count(lm_cfg)  # weights, gradients and AdamW's two moments, float32
    check_fits(f"LMConfig: training a model of {n_params:,} parameters", 16 * n_params, device)
    model = build_model(lm_cfg, corpus.tokenizer, device=device)
    pad = corpus.tokenizer.pad_id
    fit(model, pad_sequences(train_seqs, pad), pad_sequences(val_seqs[: train_cfg.eval_sequences], pad)
        if val_seqs else None, train_cfg,
        checkpoint_dir=None if out_dir is None else Path(out_dir) / CHECKPOINT_DIR, resume=resume,
        progress=progress, callback=callback, lm_config=lm_cfg)
    if out_dir is not None:
        corpus_input = {"kind": "corpus", "id": corpus.identity,
                        "path": None if corpus_path is None else str(corpus_path)}
        save_lm(model, out_dir, grammar=corpus.grammar, tokenizer=corpus.tokenizer, inputs={"corpus": corpus_input},
                settings={"train_config": train_cfg.to_dict()})
    return model


def _check_fresh(out: Path, resume: bool, overwrite: bool, config_file: str) -> None:
    """SpadeLensError when ``out`` holds a checkpoint or a model and neither resume nor overwrite was asked."""
    if resume or overwrite:
        return
    if (out / config_file).is_file():
        raise SpadeLensError(f"out_dir: {str(out)!r} holds a trained model; pass overwrite=True (--overwrite) to "
                             "replace it, or choose another folder")
    if (out / CHECKPOINT_DIR / STATE_FILE).is_file():
        step = load_checkpoint(out / CHECKPOINT_DIR).get("step", "?")
        raise SpadeLensError(f"out_dir: {str(out)!r} holds the checkpoint of an interrupted training (step {step}); "
                             "pass resume=True (--resume) to continue it, overwrite=True (--overwrite) to train "
                             "afresh, or choose another folder")
