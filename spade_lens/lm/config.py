"""Configurations of the small language model and of its training (typed, validating only).

:class:`LMConfig` is the architecture (the paper's model by default: 2 layers, d_model 128, 2 heads of 64,
MLP 512, GELU, learned positions). ``n_ctx`` and ``d_vocab`` may be left ``None``: :func:`resolve_config`
fills them from a corpus (its longest sequence and its tokenizer). :class:`LMTrainConfig` is the optimiser,
schedule, batching and bookkeeping of :func:`spade_lens.lm.train_lm`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from spade_lens.errors import SpadeLensError

ActFn = Literal["gelu", "gelu_new", "relu", "silu"]
Positional = Literal["standard"]
Precision = Literal["auto", "float32", "bfloat16"]


def _check_positive_int(owner: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpadeLensError(f"{owner}.{name}: expected a positive integer, got {value!r}")


def _check_positive_float(owner: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SpadeLensError(f"{owner}.{name}: expected a positive number, got {value!r}")


@dataclass(frozen=True)
class LMConfig:
    """Architecture of the small HookedTransformer (TransformerLens names)."""

    n_layers: int = 2
    """Transformer blocks."""
    d_model: int = 128
    """Width of the residual stream."""
    n_heads: int = 2
    """Attention heads per block."""
    d_head: int = 64
    """Width of one head (n_heads * d_head need not equal d_model)."""
    d_mlp: int = 512
    """Hidden width of each MLP."""
    act_fn: ActFn = "gelu"
    """MLP non-linearity."""
    positional: Positional = "standard"
    """Positional embedding: ``"standard"`` is a learned table of n_ctx vectors (TransformerLens' name)."""
    n_ctx: int | None = None
    """Longest sequence the model accepts (BOS and EOS included); None: the corpus' longest sequence."""
    d_vocab: int | None = None
    """Vocabulary size; None: the size of the corpus tokenizer (a set value must equal it)."""
    init_seed: int = 0
    """Seed of the weight initialisation."""

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp"):
            _check_positive_int("LMConfig", name, getattr(self, name))
        for name in ("n_ctx", "d_vocab"):
            if getattr(self, name) is not None:
                _check_positive_int("LMConfig", name, getattr(self, name))
        if self.act_fn not in ActFn.__args__:
            raise SpadeLensError(f"LMConfig.act_fn: expected one of {ActFn.__args__}, got {self.act_fn!r}")
        if self.positional not in Positional.__args__:
            raise SpadeLensError(
                f"LMConfig.positional: expected one of {Positional.__args__}, got {self.positional!r}"
            )
        if isinstance(self.init_seed, bool) or not isinstance(self.init_seed, int) or self.init_seed < 0:
            raise SpadeLensError(f"LMConfig.init_seed: expected a non-negative integer, got {self.init_seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a file from another program)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpadeLensError(f"LMConfig: unknown keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**data)


def resolve_config(cfg: LMConfig, *, longest_sequence: int, vocab_size: int) -> LMConfig:
    """``cfg`` with ``n_ctx`` and ``d_vocab`` filled from the data.

    Args:
        longest_sequence: tokens of the data's longest sequence, BOS and EOS included.
        vocab_size: size of the tokenizer the model will be used with.

    Raises SpadeLensError if a configured ``n_ctx`` is shorter than the data or a configured ``d_vocab``
    differs from the tokenizer.
    """
    n_ctx = longest_sequence if cfg.n_ctx is None else cfg.n_ctx
    if n_ctx < longest_sequence:
        raise SpadeLensError(
            f"LMConfig.n_ctx: got {n_ctx}, but the corpus' longest sequence has {longest_sequence} tokens "
            f"(BOS and EOS included); expected n_ctx >= {longest_sequence} or None (derive it from the corpus)"
        )
    d_vocab = vocab_size if cfg.d_vocab is None else cfg.d_vocab
    if d_vocab != vocab_size:
        raise SpadeLensError(
            f"LMConfig.d_vocab: got {d_vocab}, but the tokenizer has {vocab_size} tokens; expected "
            f"{vocab_size} or None"
        )
    return replace(cfg, n_ctx=n_ctx, d_vocab=d_vocab)


@dataclass(frozen=True)
class LMTrainConfig:
    """Optimiser, schedule, batching and bookkeeping of :func:`spade_lens.lm.train_lm`."""

    steps: int = 6_000
    """Optimiser steps (one batch each). With the other defaults on the default run's 100k-sentence `english`
    corpus, 6,000 steps gave 99.2% grammatical samples of 5,000 (`spade-lens sample --n 5000 --seed 1`); 4,000
    steps gave 98.98% (98.6% at lr 1.5e-3), 3,000 steps at lr 2e-3 98.6%, 2,000 steps of 256 at lr 2e-3 98.8%."""
    batch_size: int = 128
    """Whole sequences per batch (right-padded to the batch's longest)."""
    lr: float = 1e-3
    """Peak learning rate of AdamW."""
    min_lr_ratio: float = 0.0
    """The cosine decays from ``lr`` to ``lr * min_lr_ratio`` at the last step."""
    warmup_steps: int = 100
    """Steps of linear warmup from ~0 to ``lr`` (capped at ``steps``)."""
    weight_decay: float = 0.0
    """AdamW weight decay, applied to weight matrices only (attention, MLP and unembedding; not to the
    token/position embeddings, biases or LayerNorm scales). Default 0: with 0.1 the model plateaued at 97-98.9%
    grammatical samples (decay caps the logit margins that keep invalid continuations unlikely)."""
    beta1: float = 0.9
    """AdamW's first-moment decay."""
    beta2: float = 0.95
    """AdamW's second-moment decay."""
    grad_clip: float = 1.0
    """Maximum global gradient norm; 0 disables clipping."""
    sort_window: int = 16
    """Batches per window sorted by sequence length before batching (less padding); 1: plain shuffle."""
    seed: int = 0
    """Seed of the batch order (each epoch's batches are drawn from seed and epoch)."""
    eval_every: int = 250
    """Steps between validation losses (and at the last step); 0 disables them."""
    eval_sequences: int = 1_024
    """Validation sequences per validation loss (the first ones of the split)."""
    checkpoint_every: int = 500
    """Steps between checkpoints in ``out_dir/checkpoint`` (one is also written on Ctrl-C); 0: only on Ctrl-C."""
    precision: Precision = "auto"
    """Precision of the model's matmuls while training: ``"bfloat16"`` runs them under bfloat16 autocast (weights,
    optimiser state, residual stream, LayerNorms, softmax and loss stay float32), ``"float32"`` does not, and
    ``"auto"`` picks bfloat16 where its matmuls are fast (a CPU with AVX512-BF16 or AMX, a CUDA GPU with bfloat16;
    :func:`spade_lens.training.precision.bf16_is_fast`) and float32 elsewhere. The precision used is recorded in the
    checkpoint and the model's provenance."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "sort_window", "eval_sequences"):
            _check_positive_int("LMTrainConfig", name, getattr(self, name))
        _check_positive_float("LMTrainConfig", "lr", self.lr)
        for name in ("warmup_steps", "eval_every", "checkpoint_every", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SpadeLensError(f"LMTrainConfig.{name}: expected a non-negative integer, got {value!r}")
        for name in ("weight_decay", "grad_clip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise SpadeLensError(f"LMTrainConfig.{name}: expected a non-negative number, got {value!r}")
        if self.precision not in Precision.__args__:
            raise SpadeLensError(
                f"LMTrainConfig.precision: expected one of {Precision.__args__}, got {self.precision!r}"
            )
        for name, closed in (("min_lr_ratio", True), ("beta1", False), ("beta2", False)):
            value = getattr(self, name)
            number = not isinstance(value, bool) and isinstance(value, (int, float))
            if not (number and (0 <= value <= 1 if closed else 0 <= value < 1)):
                expected = "[0, 1]" if closed else "[0, 1)"
                raise SpadeLensError(f"LMTrainConfig.{name}: expected a number in {expected}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Fields of LMTrainConfig that change the trained parameters; a resumed run must agree on them.
RESULT_FIELDS: tuple[str, ...] = (
    "steps", "batch_size", "lr", "min_lr_ratio", "warmup_steps", "weight_decay", "beta1", "beta2",
    "grad_clip", "sort_window", "seed", "precision",
)

# RESULT_FIELDS added after models were first saved, with the value those earlier versions trained with (a
# checkpoint or model folder that records no value for them used this one).
LEGACY_RESULT_VALUES: dict[str, Any] = {"precision": "float32"}
