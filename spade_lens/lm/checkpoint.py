"""Training checkpoints: one folder ``checkpoint/`` holding ``state.pt`` (written atomically).

``state.pt`` holds the model parameters, the AdamW state, the scheduler state, the number of steps done, both
configs and the loss history. No random state is saved because training consumes none: the batch order is a
function of ``(seed, step)`` (see :mod:`spade_lens.lm.data`) and the model has no dropout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from spade_lens._atomic import atomic_dir
from spade_lens.errors import SpadeLensError

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.pt"
_FORMAT = "spade-lens-lm-checkpoint"


def save_checkpoint(folder: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) as ``folder/state.pt``, atomically."""
    with atomic_dir(folder) as tmp:
        torch.save({"format": _FORMAT, "version": 1, **state}, tmp / STATE_FILE)


def load_checkpoint(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The state saved in ``folder``, or None if there is no checkpoint there."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise SpadeLensError(f"checkpoint {str(path)!r}: cannot be read ({err}); expected a file written by "
                             "spade_lens.lm.train_lm (remove it to start afresh)") from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise SpadeLensError(f"checkpoint {str(path)!r}: not a spade-lens LM checkpoint")
    return state
