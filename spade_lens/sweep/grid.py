"""The grid of a sweep: architectures x settings x seeds, each cell a :class:`SweepSetting` with a folder-safe name.

A grid is written per architecture as ``ARCH[:KEY=V1,V2,...[:KEY=...]]``, e.g. ``spade:kds_coefficient=0.01,0.1``
or ``topk:k=1,4,16`` (several keys give their cartesian product; ``relu`` alone is one setting with the
defaults). Keys are the architecture's own config fields (see :func:`spade_lens.saes.create_sae`) plus
``lr_scale``, the factor on the sweep's learning rate for that setting.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spade_lens.errors import SpadeLensError

TRAIN_KEYS = ("lr_scale",)
"""Grid keys that set how a setting trains rather than the SAE's config."""

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def format_value(value: Any) -> str:
    """A grid value as it appears in names and tables: ``0.01``, ``16``, ``1e-05``, ``True``."""
    return str(value)


@dataclass(frozen=True)
class SweepSetting:
    """One cell of the grid: an architecture, its settings (config fields and ``lr_scale``) and a seed."""

    arch: str
    """Registered architecture name."""
    params: tuple[tuple[str, Any], ...] = ()
    """(key, value) pairs, sorted by key."""
    seed: int = 0
    """Seed of the SAE's initialisation and of the order of its training batches."""

    @property
    def point(self) -> tuple[str, tuple[tuple[str, Any], ...]]:
        """The setting without its seed: what seeds are averaged over."""
        return (self.arch, self.params)

    @property
    def label(self) -> str:
        """``arch key=value ...``: the setting for tables and legends (no seed)."""
        return " ".join([self.arch] + [f"{k}={format_value(v)}" for k, v in self.params])

    @property
    def name(self) -> str:
        """Folder-safe unique name, e.g. ``spade_kds_coefficient-0.01_seed0``."""
        parts = [self.arch] + [f"{k}-{format_value(v)}" for k, v in self.params] + [f"seed{self.seed}"]
        return _SAFE.sub("_", "_".join(parts))

    def sae_kwargs(self) -> dict[str, Any]:
        """The architecture's config fields of this setting."""
        return {k: v for k, v in self.params if k not in TRAIN_KEYS}

    def train_value(self, key: str, default: Any) -> Any:
        """A training key of this setting (e.g. ``lr_scale``), or ``default``."""
        return dict(self.params).get(key, default)


@dataclass(frozen=True)
class ArchGrid:
    """The settings of one architecture: a list of parameter dicts (their cartesian product, already expanded)."""

    arch: str
    settings: tuple[tuple[tuple[str, Any], ...], ...] = field(default_factory=lambda: ((),))


def parse_value(text: str) -> Any:
    """``"16"`` -> 16, ``"0.01"`` -> 0.01, ``"true"`` -> True; anything else stays a string."""
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return int(t)
    except ValueError:
        pass
    try:
        value = float(t)
    except ValueError:
        return t
    if not math.isfinite(value):
        raise SpadeLensError(f"--arch: value {text!r} is not finite; expected a finite number")
    return value


def parse_arch_spec(text: str) -> ArchGrid:
    """``"spade:kds_coefficient=0.01,0.1:lambda_init=0.001"`` -> :class:`ArchGrid` (the cartesian product)."""
    from spade_lens.saes import get_sae_class

    arch, *groups = [part.strip() for part in str(text).split(":")]
    get_sae_class(arch)  # raises, naming the registered architectures
    keys: list[str] = []
    values: list[list[Any]] = []
    for group in groups:
        key, sep, raw = group.partition("=")
        key = key.strip()
        items = [v for v in raw.split(",") if v.strip()]
        if not sep or not key or not items:
            raise SpadeLensError(f"--arch: received {text!r}; expected ARCH[:KEY=V1,V2,...], e.g. "
                                 "spade:kds_coefficient=0.01,0.1 or topk:k=1,4,16")
        if key in keys:
            raise SpadeLensError(f"--arch: key {key!r} appears twice in {text!r}; expected each key once")
        parsed = [parse_value(v) for v in items]
        if len(set(map(format_value, parsed))) != len(parsed):
            raise SpadeLensError(f"--arch: {key}= repeats a value in {text!r}; expected distinct values")
        keys.append(key)
        values.append(parsed)
    _check_keys(arch, keys, text)
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    product = itertools.product(*(values[i] for i in order))
    return ArchGrid(arch, tuple(tuple(zip([keys[i] for i in order], combo, strict=True)) for combo in product))


def _check_keys(arch: str, keys: Iterable[str], text: str) -> None:
    from spade_lens.saes import get_sae_class

    fields = {f.name for f in dataclasses.fields(get_sae_class(arch).config_class)} - {"d_in", "d_sae", "hook_name",
                                                                                       "model_name"}
    unknown = sorted(set(keys) - fields - set(TRAIN_KEYS))
    if unknown:
        raise SpadeLensError(f"--arch: {unknown} in {text!r} are not settings of {arch!r}; expected some of "
                             f"{sorted(fields | set(TRAIN_KEYS))}")


def expand_grid(grids: Sequence[ArchGrid], seeds: Sequence[int]) -> list[SweepSetting]:
    """Every (architecture setting, seed) of ``grids``, in grid order then seed order; raises on duplicates."""
    if not grids:
        raise SpadeLensError("grid: received no architecture; expected at least one --arch")
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise SpadeLensError(f"seeds: received {seeds!r}; expected one or more integers >= 0")
    if len(set(seeds)) != len(seeds):
        raise SpadeLensError(f"seeds: received {seeds!r}; expected distinct seeds")
    out = [SweepSetting(g.arch, params, seed) for g in grids for params in g.settings for seed in seeds]
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpadeLensError(f"grid: settings {dup} appear more than once; expected each setting once")
    return out


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` -> a list of seeds."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
    except ValueError:
        raise SpadeLensError(f"--seeds: received {text!r}; expected integers like 0,1,2 or a range 0-2") from None
    return seeds


def grids_from_mapping(spec: Mapping[str, Mapping[str, Sequence[Any]]]) -> list[ArchGrid]:
    """``{"spade": {"kds_coefficient": [0.01, 0.1]}, "relu": {}}`` -> grids (the Python form of ``--arch``)."""
    texts = []
    for arch, params in spec.items():
        parts = [arch] + [f"{k}=" + ",".join(format_value(v) for v in values) for k, values in params.items()]
        texts.append(":".join(parts))
    return [parse_arch_spec(t) for t in texts]
