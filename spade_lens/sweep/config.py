"""How a sweep trains and evaluates: a flat dataclass that only validates."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from spade_lens.errors import SpadeLensError
from spade_lens.saes.config import check_positive, check_positive_int


def _default_defaults() -> dict[str, dict[str, Any]]:
    from spade_lens.pipeline import SAE_DEFAULTS

    return {arch: dict(kwargs) for arch, kwargs in SAE_DEFAULTS.items()}


def _default_lr_scale() -> dict[str, float]:
    from spade_lens.pipeline import SAE_LR_SCALE

    return dict(SAE_LR_SCALE)


def _paper_groups() -> dict[str, list[str]]:
    from spade_lens.pipeline import PAPER_GROUPS

    return {k: list(v) for k, v in PAPER_GROUPS.items()}


@dataclass
class SweepConfig:
    """Training and evaluation of every setting of a sweep (the same for all of them).

    The defaults are the recipe of ``spade-lens run``'s SAE stage, so a sweep on a run's activations varies only
    what its grid names.
    """

    width: int = 256
    """Latents per SAE."""
    steps: int = 2_000
    """Training steps per SAE (one batch each)."""
    batch_size: int = 1024
    """Activations per training batch."""
    lr: float = 1e-3
    """Peak Adam learning rate (cosine decay to a hundredth), times the architecture's ``lr_scale``."""
    lr_scale: dict[str, float] = field(default_factory=_default_lr_scale)
    """Architecture -> factor on ``lr`` (a grid's ``lr_scale`` key overrides it per setting)."""
    defaults: dict[str, dict[str, Any]] = field(default_factory=_default_defaults)
    """Architecture -> config fields every setting of it starts from (the grid's keys override them)."""
    probe_tokens: int = 50_000
    """Tokens of the evaluation activations (harvest order) in the full-stream view."""
    balanced_per_concept: int = 1000
    """Tokens per concept of the balanced view (drawn from the evaluation activations); 0 turns it off."""
    balanced_seed: int = 0
    """Seed of the balanced draw (the same draw for every setting)."""
    label: str = "pos"
    """Label column naming the concepts."""
    views: dict[str, dict[str, list[str]] | None] | None = None
    """View name -> concept groups (None: the labels as they are). Views whose group members are not all label
    names of the activations are skipped. None (default): the labels as they are, named after ``label`` (``pos``:
    six parts of speech), and ``paper`` (nouns and pronouns as one concept, as the SpaDE paper counts them)."""
    headline_view: str = "paper"
    """The view the report's Pareto pictures and band table use (falls back to the first view present)."""
    checkpoint_every: int = 200
    """Steps between checkpoints of a training pass (0: only on Ctrl-C)."""

    def __post_init__(self) -> None:
        for name in ("width", "steps", "batch_size", "probe_tokens"):
            check_positive_int(name, getattr(self, name))
        check_positive("lr", self.lr)
        for name in ("balanced_per_concept", "balanced_seed", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SpadeLensError(f"{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.lr_scale, dict):
            raise SpadeLensError(f"lr_scale must be a dict of architecture -> factor, got {self.lr_scale!r}")
        for arch, factor in self.lr_scale.items():
            check_positive(f"lr_scale[{arch!r}]", factor)
        if not isinstance(self.defaults, dict) or not all(isinstance(v, dict) for v in self.defaults.values()):
            raise SpadeLensError(f"defaults must be a dict of architecture -> dict of config fields, got "
                                 f"{self.defaults!r}")
        if self.views is not None and (not isinstance(self.views, dict) or not self.views):
            raise SpadeLensError(f"views must be None or a non-empty dict of view name -> groups or None, got "
                                 f"{self.views!r}")
        if not isinstance(self.label, str) or not self.label:
            raise SpadeLensError(f"label must be a non-empty str, got {self.label!r}")

    @property
    def resolved_views(self) -> dict[str, dict[str, list[str]] | None]:
        """``views``, or the default views for ``label``."""
        if self.views is not None:
            return dict(self.views)
        return {self.label: None, "paper": _paper_groups()}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields."""
        return asdict(self)
