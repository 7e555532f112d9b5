"""The training configuration: a flat dataclass that only validates.

It says how long to train, how to step (Adam with warmup then cosine decay, gradient clipping, sparsity
coefficient warmup), when a latent counts as dead, and when to log, evaluate and checkpoint. It knows nothing of
the architectures (their own configs hold their coefficients) nor of devices (read from each SAE's weights).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from spade_lens.errors import SpadeLensError
from spade_lens.saes.config import check_non_negative, check_positive
from spade_lens.training.precision import PRECISIONS

_MISSING = object()
_ADDED_LATER: dict[str, Any] = {"precision": "float32"}
"""Fields added after the first release -> their defaults (left out of :meth:`SAETrainConfig.to_dict` then)."""


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpadeLensError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass
class SAETrainConfig:
    """How :func:`spade_lens.training.train_saes` trains. Give exactly one of ``total_tokens`` and ``steps``."""

    total_tokens: int | None = None
    """Tokens to train on; the run takes ``ceil(total_tokens / batch_size)`` steps. Exclusive with ``steps``."""
    steps: int | None = None
    """Number of optimiser steps (one batch each). Exclusive with ``total_tokens``."""
    batch_size: int = 4096
    """Tokens per batch the stream is expected to give (sets the step count from ``total_tokens``; the stream's
    own batches are used as they come)."""
    lr: float = 1e-3
    """Peak Adam learning rate, reached at the end of the warmup."""
    final_lr: float | None = None
    """Learning rate at the last step, reached by cosine decay; None means ``lr / 100`` (the reference recipe:
    1e-2 decaying to 1e-4)."""
    warmup_steps: int = 0
    """Steps of linear learning-rate warmup from 0 to ``lr``."""
    lr_scale: dict[str, float] = field(default_factory=dict)
    """Per-SAE factor on the whole learning-rate schedule (SAE name -> factor > 0; unnamed SAEs use 1), so SAEs
    trained side by side on the same batches can each have their own learning rate."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's (beta1, beta2)."""
    grad_clip: float = 1.0
    """Maximum global gradient norm per SAE; 0 disables clipping."""
    sparsity_warmup_steps: int = 0
    """Steps over which the coefficient ``s`` on each SAE's ``sparsity_loss`` rises linearly to 1 (0: s = 1)."""
    dead_window_tokens: int = 262_144
    """A latent is dead when it has not fired (z > 1e-6) on any of the last this-many training tokens; the dead
    mask goes to ``sae(x, dead_mask=...)`` (TopK's AuxK) and the dead fraction to the logs."""
    normalize: bool = True
    """Estimate the normalisation (mean, and scale with ``E||x_n||^2 = d_in``) from the first ``norm_batches``
    batches and give it to every SAE with ``set_normalization``; False leaves the SAEs' statistics as they are."""
    norm_batches: int = 8
    """Batches used to estimate the normalisation (they are still trained on)."""
    log_every: int = 50
    """Steps between log lines (JSON lines, progress bar, Weights & Biases); the last step is always logged."""
    eval_every: int = 0
    """Steps between evaluations on the ``eval_batches`` given to ``train_saes`` (0: only at the end)."""
    checkpoint_every: int = 0
    """Steps between checkpoints in ``out_dir`` (0: only on Ctrl-C)."""
    save_saes: bool = True
    """Save each trained SAE to ``out_dir/<name>/`` (``sae.save``) at the end, when ``out_dir`` is given."""
    wandb: bool = False
    """Also log to Weights & Biases, if the ``wandb`` package is importable (otherwise a warning)."""
    wandb_project: str = "spade-lens"
    """Weights & Biases project name."""
    precision: Literal["float32", "bfloat16"] = "float32"
    """``bfloat16``: forward passes under ``torch.autocast`` in bfloat16 (matmuls in bfloat16; weights, gradients,
    optimiser state and losses in float32; see :mod:`spade_lens.training.precision`)."""

    def __post_init__(self) -> None:
        if (self.total_tokens is None) == (self.steps is None):
            raise SpadeLensError(
                f"give exactly one of total_tokens and steps, got total_tokens={self.total_tokens!r}, "
                f"steps={self.steps!r}"
            )
        if self.total_tokens is not None:
            _check_int("total_tokens", self.total_tokens, 1)
        if self.steps is not None:
            _check_int("steps", self.steps, 1)
        _check_int("batch_size", self.batch_size, 1)
        check_positive("lr", self.lr)
        if self.final_lr is not None:
            check_non_negative("final_lr", self.final_lr)
        _check_int("warmup_steps", self.warmup_steps, 0)
        if not isinstance(self.lr_scale, dict):
            raise SpadeLensError(f"lr_scale must be a dict of SAE name -> factor, got {self.lr_scale!r}")
        for name, factor in self.lr_scale.items():
            check_positive(f"lr_scale[{name!r}]", factor)
        betas = self.adam_betas
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(
            not isinstance(b, bool) and isinstance(b, (int, float)) and 0 <= b < 1 for b in betas
        )):
            raise SpadeLensError(f"adam_betas must be two numbers in [0, 1), got {betas!r}")
        check_non_negative("grad_clip", self.grad_clip)
        _check_int("sparsity_warmup_steps", self.sparsity_warmup_steps, 0)
        _check_int("dead_window_tokens", self.dead_window_tokens, 1)
        _check_int("norm_batches", self.norm_batches, 1)
        _check_int("log_every", self.log_every, 1)
        _check_int("eval_every", self.eval_every, 0)
        _check_int("checkpoint_every", self.checkpoint_every, 0)
        if not isinstance(self.wandb_project, str) or not self.wandb_project:
            raise SpadeLensError(f"wandb_project must be a non-empty str, got {self.wandb_project!r}")
        if self.precision not in PRECISIONS:
            raise SpadeLensError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")

    @property
    def total_steps(self) -> int:
        """Number of optimiser steps of the run."""
        if self.steps is not None:
            return self.steps
        assert self.total_tokens is not None
        return -(-self.total_tokens // self.batch_size)

    @property
    def end_lr(self) -> float:
        """The learning rate at the last step."""
        return self.lr / 100 if self.final_lr is None else float(self.final_lr)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields; a field added after the first release is left out while it has its
        default, so the settings recorded by earlier versions (checkpoints, provenance) still match."""
        return {k: v for k, v in asdict(self).items() if _ADDED_LATER.get(k, _MISSING) != v}
