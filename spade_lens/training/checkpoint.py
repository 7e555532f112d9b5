"""Training checkpoints: one ``checkpoint.pt`` file in the run folder, written atomically.

It holds, for every SAE by name, its state dict (parameters and normalisation buffers), its Adam state and its
dead-latent counters, plus the step, the tokens seen, the normalisation statistics, the trainer's RNG state and
the training config. The learning-rate and sparsity schedules are pure functions of the step, so the step is
their whole state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from spade_lens.errors import SpadeLensError

CHECKPOINT_NAME = "checkpoint.pt"


def checkpoint_path(out_dir: str | Path) -> Path:
    """Where the checkpoint of run folder ``out_dir`` lives."""
    return Path(out_dir) / CHECKPOINT_NAME


def save_checkpoint(out_dir: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``out_dir/checkpoint.pt`` atomically (beside, then ``os.replace``)."""
    from hooks.folders import clean_leftovers

    path = checkpoint_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)  # a checkpoint.pt.tmp-<pid> of a writer killed mid-save
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(out_dir: str | Path) -> dict[str, Any]:
    """Read the checkpoint of run folder ``out_dir`` (on the CPU); SpadeLensError if absent or unreadable."""
    path = checkpoint_path(out_dir)
    if not path.is_file():
        raise SpadeLensError(f"resume=True but there is no checkpoint at {path} (out_dir={str(out_dir)!r})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as err:
        raise SpadeLensError(f"checkpoint {path} is unreadable ({err}); expected a file written by train_saes") from err
    if not isinstance(state, dict) or "step" not in state or "saes" not in state:
        raise SpadeLensError(f"checkpoint {path} is not a train_saes checkpoint (missing 'step' / 'saes')")
    return state
