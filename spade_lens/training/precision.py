"""Mixed precision for SAE training: the forward pass under ``torch.autocast`` in bfloat16.

With ``SAETrainConfig(precision="bfloat16")`` the encoder and decoder matmuls run in bfloat16 while the weights,
their gradients, Adam's state and the losses stay float32 (autocast's usual split: the matmul inputs are rounded
to bfloat16, the products accumulate in float32). It pays where bfloat16 matmuls are fast: GPUs from Ampere on,
and CPUs with AVX512-BF16 or AMX (``benchmarks/bench_precision.py`` measures it on this machine).

How close to float32: bfloat16 keeps 8 significant bits, a relative rounding of at most 2^-9 (about 0.2%) on each
matmul input, so each pre-activation is off by about that fraction of the size of its terms; a loss summed over
many such values moves by far less, and training on bfloat16 matmuls ends within a few percent of float32's loss
(``tests/test_training_precision.py`` states the tolerances it checks).
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch

PRECISIONS = ("float32", "bfloat16")
"""The values of :attr:`SAETrainConfig.precision`."""


def autocast(device: torch.device | str, precision: str) -> Any:
    """A context in which SAE forward passes run at ``precision`` on ``device`` (float32: nothing changes)."""
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether bfloat16 matmuls are fast on ``device``: a CUDA GPU that supports bfloat16, or a CPU with
    AVX512-BF16 or AMX (elsewhere oneDNN emulates bfloat16, which is slower than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, device: torch.device | str) -> Literal["float32", "bfloat16"]:
    """``precision`` with ``"auto"`` (the language model's default, :class:`spade_lens.lm.LMTrainConfig`) resolved:
    bfloat16 where :func:`bf16_is_fast`, else float32."""
    if precision == "auto":
        return "bfloat16" if bf16_is_fast(device) else "float32"
    return precision
