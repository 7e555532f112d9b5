"""Schedules as pure functions of the step: learning rate (linear warmup, then cosine decay) and the sparsity
coefficient warmup. Being pure, they need no state in checkpoints beyond the step itself."""

from __future__ import annotations

import math

from spade_lens.training.config import SAETrainConfig


def learning_rate(step: int, cfg: SAETrainConfig) -> float:
    """Learning rate of step ``step`` (0-based): ``lr * (step+1)/warmup`` during the warmup, then a cosine
    from ``lr`` down to ``cfg.end_lr`` at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = cfg.total_steps - cfg.warmup_steps
    if decay_steps <= 1:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / (decay_steps - 1))
    return cfg.end_lr + (cfg.lr - cfg.end_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def sparsity_coefficient(step: int, cfg: SAETrainConfig) -> float:
    """The factor ``s`` in [0, 1] on ``sparsity_loss`` at step ``step``: ``(step+1)/sparsity_warmup_steps``,
    capped at 1."""
    if cfg.sparsity_warmup_steps == 0:
        return 1.0
    return min(1.0, (step + 1) / cfg.sparsity_warmup_steps)
