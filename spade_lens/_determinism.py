"""Bit-identical CPU training: torch's deterministic algorithms inside a block, the caller's setting restored after.

With more than one CPU thread, some backward passes accumulate in an order that depends on thread timing: the
gradient of an embedding lookup (``W_E[tokens]``, an ``index_put_`` with accumulation) differed in its last bits
from one call to the next on 2 threads, so two LM trainings with one seed drifted apart. Torch's deterministic
mode routes those ops to ordered implementations. It is switched on for CPU runs only (the promise is
bit-identical CPU training; on CUDA it would also need ``CUBLAS_WORKSPACE_CONFIG`` and costs speed). The mode
would also fill every new tensor with NaN (``torch.utils.deterministic.fill_uninitialized_memory``), a guard
against reading memory never written, which costs time on every allocation and changes no result of code that
writes before it reads; that filling is off inside the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def deterministic_on_cpu(device: torch.device | str) -> Iterator[None]:
    """Within the block, ``torch.use_deterministic_algorithms(True, warn_only=True)`` if ``device`` is a CPU."""
    if torch.device(device).type != "cpu":
        yield
        return
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill
