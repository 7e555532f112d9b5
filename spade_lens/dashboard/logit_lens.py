"""Logit lens of decoder directions: which tokens a latent's decoder row promotes and suppresses.

As in SAELens users' feature dashboards (sae_vis, Neuronpedia): the decoder row ``W_dec[i]`` (d_in,) times the
model's unembedding ``W_U`` (d_model, d_vocab), with no final LayerNorm, read as direct logit effects. It applies
when the SAE's input lives in the residual stream (``d_in == d_model``); the SAE's input normalisation only
scales the row by a positive number, which changes no ranking.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spade_lens.errors import SpadeLensError

LATENT_CHUNK = 1024
"""Latents whose (chunk, d_vocab) logit rows are computed at once."""


def unembedding(model: Any) -> Tensor | None:
    """The model's ``W_U`` (d_model, d_vocab) as a float32 CPU tensor, or None if it has none.

    ``model``: a TransformerLens model, or a spade-lens model folder, whose ``unembed.W_U`` is read from
    ``model.safetensors`` without building the model (TransformerLens takes seconds to import); a folder that is
    not one is handed to :func:`spade_lens.lm.load_lm`, which says what is wrong with it.
    """
    if isinstance(model, (str, os.PathLike)):
        w_u = _folder_unembedding(Path(model))
        if w_u is not None:
            return w_u
        from spade_lens.lm import load_lm

        model = load_lm(model, device="cpu")
    w_u = getattr(model, "W_U", None)
    if not isinstance(w_u, Tensor) or w_u.ndim != 2:
        return None
    return w_u.detach().float().cpu()


def _folder_unembedding(folder: Path) -> Tensor | None:
    """``unembed.W_U`` of a spade-lens model folder (None when the folder is not a readable one)."""
    from safetensors import safe_open

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        shape = (config["lm_config"]["d_model"], config["lm_config"]["d_vocab"])
        if config.get("format") != "spade-lens-lm":
            return None
        with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
            w_u = weights.get_tensor("unembed.W_U")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return w_u.float() if tuple(w_u.shape) == tuple(shape) else None


@torch.no_grad()
def decoder_logits(w_dec: Tensor, w_u: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Top-``k`` promoted and suppressed tokens of every decoder row.

    ``w_dec`` (n, d), ``w_u`` (d, V). Returns (top ids (n, k), top logits (n, k), bottom ids (n, k), bottom logits
    (n, k)); bottom logits are the most negative first.
    """
    if w_dec.ndim != 2 or w_u.ndim != 2 or w_dec.shape[1] != w_u.shape[0]:
        raise SpadeLensError(f"W_dec has shape {tuple(w_dec.shape)} and W_U {tuple(w_u.shape)}; expected "
                             "(n, d) and (d, d_vocab) with the same d (an SAE on the residual stream)")
    k = min(k, w_u.shape[1])
    w_dec = w_dec.detach().float().cpu()
    parts: list[tuple[Tensor, ...]] = []
    for start in range(0, w_dec.shape[0], LATENT_CHUNK):
        logits = w_dec[start:start + LATENT_CHUNK] @ w_u  # (chunk, V)
        top = logits.topk(k, dim=1)
        bottom = logits.topk(k, dim=1, largest=False)
        parts.append((top.indices, top.values, bottom.indices, bottom.values))
    top_i, top_v, bot_i, bot_v = (torch.cat([p[j] for p in parts]) for j in range(4))
    return top_i, top_v, bot_i, bot_v
