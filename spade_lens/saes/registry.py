"""The explicit registry of SAE architectures: name -> SAE class (whose ``config_class`` is its config)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch

from spade_lens.errors import SpadeLensError

if TYPE_CHECKING:
    from spade_lens.saes.base import SAE

_REGISTRY: dict[str, type[SAE]] = {}

ARCHITECTURES: Mapping[str, type[SAE]] = MappingProxyType(_REGISTRY)
"""Read-only view of the registry: architecture name -> SAE class."""


def register_sae(name: str, sae_class: type[SAE]) -> type[SAE]:
    """Register ``sae_class`` under ``name``; registering a name twice raises. Returns the class."""
    if not isinstance(name, str) or not name:
        raise SpadeLensError(f"name must be a non-empty str, got {name!r}")
    if name in _REGISTRY:
        raise SpadeLensError(
            f"architecture {name!r} is already registered (to {_REGISTRY[name].__name__}); names must be unique"
        )
    if sae_class.config_class.architecture != name:
        raise SpadeLensError(
            f"{sae_class.__name__}.config_class.architecture is {sae_class.config_class.architecture!r}, "
            f"expected the registered name {name!r}"
        )
    _REGISTRY[name] = sae_class
    return sae_class


def list_architectures() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_REGISTRY)


def get_sae_class(name: str) -> type[SAE]:
    """The SAE class registered under ``name``; :class:`SpadeLensError` listing the registered names if none."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise SpadeLensError(
            f"unknown SAE architecture {name!r}; registered architectures: {', '.join(list_architectures())}"
        ) from None


def create_sae(
    architecture: str,
    *,
    d_in: int,
    d_sae: int,
    seed: int = 0,
    hook_name: str = "",
    model_name: str = "",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    **arch_kwargs: Any,
) -> SAE:
    """Build a freshly initialised SAE of a registered architecture.

    ``arch_kwargs`` are the architecture's own config fields (relu: ``l1_coefficient``; topk: ``k``,
    ``k_aux``, ``aux_coefficient``; jumprelu: ``l0_coefficient``, ``bandwidth``, ``init_threshold``;
    spade: ``kds_coefficient``, ...). Unknown keyword arguments raise :class:`SpadeLensError`.
    """
    sae_class = get_sae_class(architecture)
    cfg_class = sae_class.config_class
    known = {f.name for f in dataclasses.fields(cfg_class)}
    unknown = sorted(set(arch_kwargs) - known)
    if unknown:
        own = sorted(known - {"d_in", "d_sae", "hook_name", "model_name"})
        raise SpadeLensError(
            f"unknown argument(s) {', '.join(unknown)} for architecture {architecture!r}; "
            f"it accepts: {', '.join(own) or '(none)'}"
        )
    from spade_lens.devices import check_device, check_fits

    check_device(device)
    cfg = cfg_class(d_in=d_in, d_sae=d_sae, hook_name=hook_name, model_name=model_name, **arch_kwargs)
    # W_enc and W_dec (or the prototypes), trained with Adam: weights, gradients and two moments
    check_fits(f"d_sae: an SAE of d_in {d_in} and d_sae {d_sae}", 8 * d_in * d_sae * dtype.itemsize, device)
    return sae_class(cfg, seed=seed, device=device, dtype=dtype)
