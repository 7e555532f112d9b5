"""Small fakes shared by the probe / report tests (no dependency on the real SAEs)."""

from __future__ import annotations

import torch
from torch import Tensor


class LinearReluSAE(torch.nn.Module):
    """A tiny random ReLU SAE with ``encode``/``decode`` and a ``cfg.architecture``."""

    def __init__(self, d_in: int, d_sae: int, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.W_enc = torch.nn.Parameter(torch.randn(d_in, d_sae, generator=gen))
        self.b_enc = torch.nn.Parameter(torch.randn(d_sae, generator=gen) - 0.5)
        self.W_dec = torch.nn.Parameter(torch.randn(d_sae, d_in, generator=gen) / d_sae)
        self.cfg = type("Cfg", (), {"architecture": "relu", "d_sae": d_sae})()

    def encode(self, x: Tensor) -> Tensor:
        return torch.relu(x @ self.W_enc + self.b_enc)

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.W_dec


def random_stream(n: int, d: int, n_concepts: int, batch: int, seed: int = 0, no_label_share: float = 0.2):
    """(x (n, d), labels (n,) with some -1, list of (acts, {"pos": labels}) batches)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen) + 3.0
    labels = torch.randint(0, n_concepts, (n,), generator=gen)
    labels[torch.rand(n, generator=gen) < no_label_share] = -1
    batches = [(x[i : i + batch], {"pos": labels[i : i + batch]}) for i in range(0, n, batch)]
    return x, labels, batches
