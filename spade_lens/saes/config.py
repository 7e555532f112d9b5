"""The configuration shared by every SAE architecture.

Each architecture subclasses :class:`SAEConfig` with its own flat fields (one config per architecture). Configs
only validate: ``__post_init__`` raises :class:`~spade_lens.errors.SpadeLensError` naming the argument, and does
nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from spade_lens.errors import SpadeLensError


def check_positive_int(name: str, value: object) -> None:
    """Raise unless ``value`` is an ``int`` (not a bool) >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpadeLensError(f"{name} must be a positive integer, got {value!r}")


def check_non_negative(name: str, value: object) -> None:
    """Raise unless ``value`` is a finite real number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= float(value) < float("inf")):
        raise SpadeLensError(f"{name} must be a finite number >= 0, got {value!r}")


def check_positive(name: str, value: object) -> None:
    """Raise unless ``value`` is a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < float(value) < float("inf")):
        raise SpadeLensError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass
class SAEConfig:
    """Fields every SAE has. ``architecture`` is a class attribute naming the registry entry."""

    architecture: ClassVar[str] = ""

    d_in: int
    """Width of the activations the SAE reads (the hook's d_model)."""
    d_sae: int
    """Number of latents (dictionary width)."""
    hook_name: str = ""
    """TransformerLens hook the SAE reads, e.g. ``blocks.0.hook_resid_post`` (metadata only)."""
    model_name: str = ""
    """Name of the model the activations come from (metadata only)."""

    def __post_init__(self) -> None:
        check_positive_int("d_in", self.d_in)
        check_positive_int("d_sae", self.d_sae)
        if not isinstance(self.hook_name, str):
            raise SpadeLensError(f"hook_name must be a str, got {self.hook_name!r}")
        if not isinstance(self.model_name, str):
            raise SpadeLensError(f"model_name must be a str, got {self.model_name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields plus ``architecture``."""
        return {"architecture": self.architecture, **asdict(self)}
