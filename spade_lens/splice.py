"""Run a TransformerLens model with SAEs spliced in at their hooks, optionally ablating or scaling latents.

Each SAE replaces the activation at ``sae.cfg.hook_name`` (shape (batch, pos, d_in)) by its reconstruction
``decode(encode(x))``, with chosen latents set to zero (``ablate``) or multiplied (``scale``) between the two.
With ``keep_error=True`` the SAE's error ``x - decode(encode(x))`` is added back, so only the intervention on
the latents changes the activation (an unmodified splice is then the identity).

Hooks are added through the model's own ``hooks()`` context manager (HookedTransformer and TransformerBridge
share it), so none outlives the ``with`` block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from spade_lens.errors import SpadeLensError


def as_named_saes(saes: Any) -> dict[str, nn.Module]:
    """``saes`` (one SAE, a sequence of SAEs, or a dict name -> SAE) as a dict name -> SAE; names of a single
    SAE or a sequence are their hook names. SpadeLensError if an entry is not an SAE, has no hook name, or two
    SAEs read the same hook."""
    if isinstance(saes, nn.Module):
        items = [(saes.cfg.hook_name if hasattr(saes, "cfg") else "", saes)]
    elif isinstance(saes, Mapping):
        items = list(saes.items())
    elif isinstance(saes, Sequence) and not isinstance(saes, str):
        items = [(getattr(getattr(s, "cfg", None), "hook_name", ""), s) for s in saes]
    else:
        raise SpadeLensError(f"saes must be an SAE, a sequence of SAEs or a dict of them, got {type(saes).__name__}")
    if not items:
        raise SpadeLensError("saes is empty; expected at least one SAE")
    named: dict[str, nn.Module] = {}
    seen_hooks: dict[str, str] = {}
    for name, sae in items:
        hook = getattr(getattr(sae, "cfg", None), "hook_name", None)
        if not isinstance(sae, nn.Module) or not isinstance(hook, str):
            raise SpadeLensError(f"saes[{name!r}] is a {type(sae).__name__}; expected an SAE (see create_sae)")
        if not hook:
            raise SpadeLensError(
                f"SAE {name!r} has no hook_name (cfg.hook_name is empty); expected the TransformerLens hook it reads"
            )
        if hook in seen_hooks:
            raise SpadeLensError(
                f"SAEs {seen_hooks[hook]!r} and {name!r} both read hook {hook!r}; expected one SAE per hook"
            )
        seen_hooks[hook] = str(name)
        named[str(name)] = sae
    return named


def _latent_ids(name: str, ids: Any, d_sae: int, what: str) -> list[int]:
    ids = list(ids)
    bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < d_sae]
    if bad:
        raise SpadeLensError(f"{what}[{name!r}] has latent ids {bad}; expected integers in [0, {d_sae}) (d_sae)")
    return ids


def _splice_hook(
    sae: nn.Module,
    ablate: list[int],
    scale: dict[int, float],
    keep_error: bool,
    mask: Tensor | None,
) -> Callable[[Tensor, Any], Tensor]:
    d_in, d_sae = sae.cfg.d_in, sae.cfg.d_sae
    weight = next(sae.parameters())
    factors = torch.ones(d_sae, dtype=weight.dtype, device=weight.device)  # (d_sae,)
    factors[ablate] = 0.0
    for latent, factor in scale.items():
        factors[latent] = factor
    intervene = bool(ablate or scale)

    def hook(act: Tensor, hook: Any) -> Tensor:
        if act.shape[-1] != d_in:
            raise SpadeLensError(
                f"activation at hook {getattr(hook, 'name', '?')!r} has shape {tuple(act.shape)}; the SAE "
                f"expects (..., {d_in}) (its d_in)"
            )
        flat = act.reshape(-1, d_in)  # (batch * pos, d_in)
        z = sae.encode(flat.to(weight.device))  # (batch * pos, d_sae)
        x_hat = sae.decode(z * factors if intervene else z)
        if keep_error:
            x_hat = x_hat + (flat.to(x_hat) - (sae.decode(z) if intervene else x_hat))
        out = x_hat.reshape(act.shape).to(act)
        if mask is not None:
            if mask.shape != act.shape[:-1]:
                raise SpadeLensError(
                    f"mask has shape {tuple(mask.shape)}; expected {tuple(act.shape[:-1])} (batch, pos) of the "
                    f"activation at {getattr(hook, 'name', '?')!r}"
                )
            out = torch.where(mask.unsqueeze(-1), out, act)
        return out

    return hook


@contextmanager
def spliced_saes(
    model: Any,
    saes: Any,
    *,
    ablate: Mapping[str, Sequence[int]] | None = None,
    scale: Mapping[str, Mapping[int, float]] | None = None,
    keep_error: bool = False,
    mask: Tensor | None = None,
) -> Iterator[Any]:
    """Within the block, ``model`` runs with every SAE of ``saes`` spliced in at its hook.

    ``saes``: one SAE, a sequence (named by hook name) or a dict name -> SAE. ``ablate``: name -> latent ids set
    to 0; ``scale``: name -> {latent id: factor}. ``keep_error``: add each SAE's reconstruction error back.
    ``mask``: optional bool (batch, pos) of the positions to splice (others keep their activation); None: all.
    Yields the model.
    """
    named = as_named_saes(saes)
    ablate, scale = dict(ablate or {}), dict(scale or {})
    for what, given in (("ablate", ablate), ("scale", scale)):
        unknown = sorted(set(given) - set(named))
        if unknown:
            raise SpadeLensError(f"{what} names SAEs {unknown}; expected names among {sorted(named)}")
    fwd_hooks = []
    for name, sae in named.items():
        ids = _latent_ids(name, ablate.get(name, []), sae.cfg.d_sae, "ablate")
        factors = dict(scale.get(name, {}))
        _latent_ids(name, factors, sae.cfg.d_sae, "scale")
        fwd_hooks.append((sae.cfg.hook_name, _splice_hook(sae, ids, factors, keep_error, mask)))
    with ExitStack() as stack:
        try:
            stack.enter_context(model.hooks(fwd_hooks=fwd_hooks))
        except (KeyError, ValueError) as err:
            hooks = [hook for hook, _ in fwd_hooks]
            raise SpadeLensError(f"cannot add hooks {hooks} to the model ({err}); expected hook names of the model") from err
        yield model
