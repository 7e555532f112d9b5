"""A model's identity as an activation cache records it: name, class, architecture hash, weights fingerprint."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

_ARCH_FIELDS = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx", "act_fn",
                "normalization_type", "positional_embedding_type", "attn_only")


def model_identity(model: Any) -> dict[str, str]:
    """Name, class, architecture hash and a weights fingerprint (per-parameter sums) of a model."""
    arch = {f: str(getattr(model.cfg, f, None)) for f in _ARCH_FIELDS}
    weights = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            x = p.detach().double()
            weights.update(f"{name}{tuple(p.shape)}{float(x.sum()):.6e}{float(x.abs().sum()):.6e}".encode())
    return {"name": str(getattr(model.cfg, "model_name", "")), "class": type(model).__name__,
            "config_hash": hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:16],
            "weights_hash": weights.hexdigest()[:16]}
