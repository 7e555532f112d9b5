"""AdamW with weight decay on weight matrices only, and the warmup-then-cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from spade_lens.lm.config import LMTrainConfig

NO_DECAY_SUFFIXES: tuple[str, ...] = ("W_E", "W_pos")
"""Matrices left undecayed: token and position embeddings are lookup tables (a row only gets gradient when
its token/position occurs, so decay would shrink rare rows towards zero between visits)."""


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight matrices (ndim >= 2, not embeddings) with decay; the rest without."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim >= 2 and not name.endswith(NO_DECAY_SUFFIXES):
            decay.append(param)
        else:
            no_decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, cfg: LMTrainConfig) -> torch.optim.AdamW:
    """AdamW(lr, betas=(beta1, beta2)) over :func:`param_groups`; the fused implementation (one kernel per
    parameter: about 4 times faster than the default on the small model's CPU step) where torch has one."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                             fused=fused or None)


def lr_factor(step: int, cfg: LMTrainConfig) -> float:
    """Multiplier of ``cfg.lr`` for optimiser step ``step`` (0-based): linear warmup over ``warmup_steps``
    (reaching 1 at the last warmup step), then a cosine from 1 down to ``min_lr_ratio`` at the last step."""
    warmup = min(cfg.warmup_steps, cfg.steps)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, cfg.steps - 1 - warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: LMTrainConfig) -> LambdaLR:
    """The :func:`lr_factor` schedule, stepped once per optimiser step."""

    def factor(step: int) -> float:
        return lr_factor(step, cfg)

    return LambdaLR(optimizer, factor)
