"""Small data and models shared by the training, metrics and splice tests (no fixtures: plain functions)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn


def make_acts(n: int = 1024, d: int = 16, seed: int = 0, rank: int = 6) -> Tensor:
    """(n, d) float32 activations: a low-rank signal plus noise, with a non-zero mean."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, d, generator=g)
    codes = torch.relu(torch.randn(n, rank, generator=g)) * 2
    return codes @ basis + 0.05 * torch.randn(n, d, generator=g) + 3.0


def batches_of(x: Tensor, batch_size: int) -> list[Tensor]:
    return list(x.split(batch_size))


@dataclass
class IdentityCfg:
    d_in: int
    d_sae: int
    hook_name: str
    architecture: str = "identity"


class IdentitySAE(nn.Module):
    """A reference 'SAE' with an exact reconstruction: z = [relu(x), relu(-x)], x_hat = z[:d] - z[d:]."""

    def __init__(self, d_in: int, hook_name: str) -> None:
        super().__init__()
        self.cfg = IdentityCfg(d_in, 2 * d_in, hook_name)
        self.dummy = nn.Parameter(torch.zeros(()))

    def encode(self, x: Tensor) -> Tensor:
        return torch.cat([x.relu(), (-x).relu()], dim=-1)

    def decode(self, z: Tensor) -> Tensor:
        d = self.cfg.d_in
        return z[..., :d] - z[..., d:]


def tiny_model(seed: int = 0, d_vocab: int = 12):
    """A 2-layer HookedTransformer small enough for fast tests."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2, d_model=16, n_ctx=10, d_head=8, n_heads=2, d_mlp=32, d_vocab=d_vocab, act_fn="gelu",
        normalization_type="LN", seed=seed, device="cpu",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "HookedTransformer is deprecated" (TL 3.9)
        model = HookedTransformer(cfg)
    model.eval()
    return model


def tiny_tokens(n: int = 6, seq: int = 8, d_vocab: int = 12, seed: int = 0, pad_id: int = 0) -> Tensor:
    """(n, seq) token ids in [1, d_vocab) with some right padding (``pad_id``)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, d_vocab, (n, seq), generator=g)
    tokens[0, -3:] = pad_id
    tokens[1, -1:] = pad_id
    return tokens


def tiny_bridge(seed: int = 0, d_vocab: int = 12):
    """The same shape as :func:`tiny_model`, built as a TransformerBridge with ``boot_native``."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge.bridge import TransformerBridge

    cfg = TransformerBridgeConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=10,
                                  d_vocab=d_vocab, act_fn="gelu", seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return TransformerBridge.boot_native(cfg).eval()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors: one torch thread is faster, and immune to OpenMP spinning on a busy shared box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
