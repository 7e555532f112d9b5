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
from typing import Any

import torch

PRECISIONS = ("float32", "bfloat16")
"""The values of :attr:`SAETrainConfig.precision`."""


def autocast(device: torch.device | str, precision: str) -> Any:
    """A context in which SAE forward passes run at ``precision`` on ``device`` (float32: nothing changes)."""
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
