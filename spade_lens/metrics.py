"""SAE metrics (DESIGN.md section 4) and the spliced-model loss.

- active: ``z_i > 1e-6``; L0 = mean number of active latents per token.
- NMSE = ``mean_t ||x_t - x_hat_t||^2 / sum_dim Var(x_dim)`` (population variance over the tokens given, so
  it does not depend on the scale of x); explained variance = ``1 - NMSE``.
- dead fraction = fraction of latents never active over a set of tokens.
- spliced loss: the model's next-token loss with each SAE's reconstruction patched in at its hook, beside the
  clean loss and the losses with those activations zero-ablated and mean-ablated; loss recovered =
  ``(L_ablated - L_sae) / (L_ablated - L_clean)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from spade_lens.errors import SpadeLensError

ACTIVE_THRESHOLD = 1e-6
"""A latent is active on a token when its value exceeds this."""


def _check_pair(x: Tensor, x_hat: Tensor) -> None:
    if not isinstance(x, Tensor) or not isinstance(x_hat, Tensor) or x.shape != x_hat.shape or x.ndim != 2:
        got = [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in (x, x_hat)]
        raise SpadeLensError(f"x and x_hat must be tensors of one shape (tokens, d_in), got shapes {got}")


def l0(z: Tensor) -> float:
    """Mean number of active latents (``z > 1e-6``) per token; ``z`` (tokens, d_sae)."""
    if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[0] == 0:
        raise SpadeLensError(f"z must be a (tokens, d_sae) tensor with tokens >= 1, got {getattr(z, 'shape', z)!r}")
    return float((z > ACTIVE_THRESHOLD).sum(-1, dtype=torch.float64).mean())


def nmse(x: Tensor, x_hat: Tensor) -> float:
    """``mean_t ||x_t - x_hat_t||^2 / sum_dim Var(x_dim)`` of (tokens, d_in) tensors."""
    _check_pair(x, x_hat)
    x64, x_hat64 = x.detach().double(), x_hat.detach().double()
    total_variance = float((x64 - x64.mean(0)).pow(2).sum(-1).mean())
    if not total_variance > 0:
        raise SpadeLensError(
            f"x has total variance {total_variance} over its {x.shape[0]} tokens; NMSE needs > 0 (several "
            "distinct tokens)"
        )
    return float((x64 - x_hat64).pow(2).sum(-1).mean()) / total_variance


def explained_variance(x: Tensor, x_hat: Tensor) -> float:
    """``1 - nmse(x, x_hat)``."""
    return 1.0 - nmse(x, x_hat)


def dead_fraction(counts: Tensor) -> float:
    """Fraction of latents never active: ``counts`` (d_sae,) is how many tokens each latent fired on (or a bool
    "fired at least once" mask)."""
    if not isinstance(counts, Tensor) or counts.ndim != 1 or counts.numel() == 0:
        raise SpadeLensError(f"counts must be a non-empty (d_sae,) tensor, got {getattr(counts, 'shape', counts)!r}")
    return float((counts == 0).double().mean())


class SAEEvaluation(NamedTuple):
    """Streaming metrics of one SAE over an evaluation set."""

    l0: float
    nmse: float
    explained_variance: float
    dead_fraction: float
    n_tokens: int


@torch.no_grad()
def evaluate_sae(sae: torch.nn.Module, batches: Iterable[Any], *, max_tokens: int | None = None) -> SAEEvaluation:
    """L0, NMSE, explained variance and dead fraction of ``sae`` over ``batches`` (tensors (b, d_in) or
    LabelledBatch-like objects with ``acts``), streamed with float64 sums, up to ``max_tokens`` tokens."""
    param = next(sae.parameters())
    d_in, d_sae = sae.cfg.d_in, sae.cfg.d_sae
    counts = torch.zeros(d_sae, dtype=torch.int64, device=param.device)
    s_x = torch.zeros(d_in, dtype=torch.float64, device=param.device)
    s_xx = torch.zeros((), dtype=torch.float64, device=param.device)
    s_err = torch.zeros((), dtype=torch.float64, device=param.device)
    n = 0
    for i, batch in enumerate(batches):
        x = batch if isinstance(batch, Tensor) else getattr(batch, "acts", None)
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[-1] != d_in:
            raise SpadeLensError(
                f"evaluation batch {i} has shape {getattr(x, 'shape', type(batch).__name__)}; expected "
                f"(batch, {d_in}) (the SAE's d_in)"
            )
        if max_tokens is not None:
            x = x[: max(0, max_tokens - n)]
            if x.shape[0] == 0:
                break
        x = x.to(param.device)
        z = sae.encode(x)
        x_hat = sae.decode(z)
        x64 = x.double()
        counts += (z > ACTIVE_THRESHOLD).sum(0)
        s_x += x64.sum(0)
        s_xx += x64.pow(2).sum()
        s_err += (x64 - x_hat.double()).pow(2).sum()
        n += x.shape[0]
    if n < 2:
        raise SpadeLensError(f"batches gave {n} tokens; expected at least 2 to evaluate an SAE")
    mean = s_x / n
    total_variance = float(s_xx / n - mean.pow(2).sum())
    if not total_variance > 0:
        raise SpadeLensError(f"evaluation activations have total variance {total_variance}; expected > 0")
    value = float(s_err / n) / total_variance
    return SAEEvaluation(
        l0=float(counts.sum()) / n,
        nmse=value,
        explained_variance=1.0 - value,
        dead_fraction=dead_fraction(counts),
        n_tokens=n,
    )


# ---- spliced-model loss ------------------------------------------------------------------------------------


class SplicedLoss(NamedTuple):
    """Next-token losses (nats per predicted token) of a model with SAEs spliced in, and the loss recovered."""

    clean: float
    """The model as it is."""
    spliced: float
    """Each SAE's reconstruction patched in at its hook."""
    zero_ablated: float
    """Those activations replaced by zeros."""
    mean_ablated: float
    """Those activations replaced by their mean over the patched positions of ``tokens``."""
    recovered_zero: float
    """``(zero_ablated - spliced) / (zero_ablated - clean)`` (nan if the denominator is 0)."""
    recovered_mean: float
    """``(mean_ablated - spliced) / (mean_ablated - clean)`` (nan if the denominator is 0)."""
    n_tokens: int
    """Predicted tokens counted (targets that are not padding)."""


def _recovered(ablated: float, spliced: float, clean: float) -> float:
    denominator = ablated - clean
    return (ablated - spliced) / denominator if denominator != 0 else math.nan


def _replace_hook(values: Tensor | None, mask: Tensor) -> Callable[[Tensor, Any], Tensor]:
    def hook(act: Tensor, hook: Any) -> Tensor:
        out = act.clone()
        out[mask] = 0.0 if values is None else values.to(act.dtype)
        return out

    return hook


@torch.no_grad()
def spliced_loss(
    model: Any,
    saes: Any,
    tokens: Tensor,
    *,
    pad_id: int | None = None,
    exclude_token_ids: Sequence[int] | None = None,
    batch_size: int = 32,
) -> SplicedLoss:
    """Losses of ``model`` on ``tokens`` (batch, seq) int64 with ``saes`` spliced in.

    ``saes``: one SAE, a sequence of SAEs or a dict name -> SAE, each read at ``sae.cfg.hook_name`` (all spliced
    at once). Targets equal to ``pad_id`` are left out of every loss. Patched positions (SAE, zero or mean
    ablation alike) are all positions, except those whose input token is in ``exclude_token_ids`` (e.g. BOS,
    EOS and padding for SAEs trained on sentence tokens only), which keep their clean activation. The mean for
    mean ablation is taken over the patched positions of ``tokens``.
    """
    from spade_lens.splice import as_named_saes, spliced_saes

    named = as_named_saes(saes)
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.dtype.is_floating_point or tokens.shape[1] < 2:
        raise SpadeLensError(
            f"tokens must be an integer tensor of shape (batch, seq) with seq >= 2, got "
            f"{getattr(tokens, 'shape', type(tokens).__name__)} {getattr(tokens, 'dtype', '')}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SpadeLensError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = next(model.parameters()).device
    tokens = tokens.to(device)
    exclude = torch.tensor(list(exclude_token_ids or []), dtype=tokens.dtype, device=device)
    chunks = list(tokens.split(batch_size))
    masks = [~torch.isin(chunk, exclude) for chunk in chunks]  # (b, seq) bool: positions patched
    if not any(bool(m.any()) for m in masks):
        raise SpadeLensError("exclude_token_ids leaves no position of tokens to patch; expected at least one")
    hook_names = sorted({sae.cfg.hook_name for sae in named.values()})

    def loss_sum(chunk: Tensor, fwd_hooks: list[tuple[str, Callable[..., Tensor]]]) -> tuple[float, int]:
        with model.hooks(fwd_hooks=fwd_hooks):
            logits = model(chunk, return_type="logits")
        return loss_of(chunk, logits)

    def loss_of(chunk: Tensor, logits: Tensor) -> tuple[float, int]:
        targets = chunk[:, 1:]
        if pad_id is not None:
            targets = targets.masked_fill(targets == pad_id, -100)
        loss = F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum"
        )
        return float(loss), int((targets != -100).sum())

    # Clean pass, also summing the activations at the hooks for the mean ablation.
    sums: dict[str, Tensor] = {}
    clean, n_tok, n_pos = 0.0, 0, 0
    for chunk, mask in zip(chunks, masks, strict=True):
        logits, cache = model.run_with_cache(chunk, return_type="logits",
                                             names_filter=lambda name: name in hook_names)
        for name in hook_names:
            act = cache[name][mask].double().sum(0)
            sums[name] = act if name not in sums else sums[name] + act
        n_pos += int(mask.sum())
        value, count = loss_of(chunk, logits)  # the clean loss from the same forward pass
        clean += value
        n_tok += count
    if n_tok == 0:
        raise SpadeLensError(f"every target of tokens equals pad_id={pad_id}; expected some tokens to predict")
    means = {name: s / n_pos for name, s in sums.items()}

    spliced = 0.0
    zero = 0.0
    mean = 0.0
    for chunk, mask in zip(chunks, masks, strict=True):
        with spliced_saes(model, named, mask=mask):
            spliced += loss_sum(chunk, [])[0]
        zero += loss_sum(chunk, [(name, _replace_hook(None, mask)) for name in hook_names])[0]
        mean += loss_sum(chunk, [(name, _replace_hook(means[name], mask)) for name in hook_names])[0]
    clean, spliced, zero, mean = (v / n_tok for v in (clean, spliced, zero, mean))
    return SplicedLoss(
        clean=clean,
        spliced=spliced,
        zero_ablated=zero,
        mean_ablated=mean,
        recovered_zero=_recovered(zero, spliced, clean),
        recovered_mean=_recovered(mean, spliced, clean),
        n_tokens=n_tok,
    )
