"""Small shared pieces of the SAE tests (tiny shapes, seeded data)."""

from __future__ import annotations

import torch
from _threads import torch_threads

from spade_lens.saes import SAE, create_sae

D_IN, D_SAE = 8, 24

# Small architecture arguments so every registered architecture is cheap to build and train.
ARCH_KWARGS: dict[str, dict[str, object]] = {
    "relu": {"l1_coefficient": 0.05},
    "topk": {"k": 3, "k_aux": 4},
    "jumprelu": {"l0_coefficient": 0.01, "bandwidth": 0.1, "init_threshold": 0.05},
    "spade": {"kds_coefficient": 0.01, "candidates": 4},
}


def activations(n: int = 128, d: int = D_IN, seed: int = 0, offset: float = 3.0, scale: float = 2.0) -> torch.Tensor:
    """(n, d) raw activations with a common offset and a non-unit scale (so normalisation matters)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(5, d, generator=g) * 2
    which = torch.randint(0, 5, (n,), generator=g)
    return offset + scale * (centres[which] + 0.3 * torch.randn(n, d, generator=g))


def make_sae(arch: str, seed: int = 0, x: torch.Tensor | None = None, **overrides: object) -> SAE:
    """A tiny SAE of ``arch`` with normalisation statistics of ``x`` set."""
    kwargs = {**ARCH_KWARGS.get(arch, {}), **overrides}
    sae = create_sae(arch, d_in=D_IN, d_sae=D_SAE, seed=seed, hook_name="blocks.0.hook_resid_post",
                     model_name="tiny", **kwargs)
    if x is not None:
        scale = float((x - x.mean(0)).pow(2).sum(-1).mean().div(D_IN).sqrt())
        sae.set_normalization(x.mean(0), scale)
    return sae


def grads_on_two_threads(arch: str, repeats: int = 4, **kwargs) -> list[dict[str, torch.Tensor]]:
    """The parameter gradients of one forward/backward of a mid-sized SAE, ``repeats`` times on 2 torch threads
    (1,024 rows x 64 candidates: large enough for torch's CPU kernels to split the work between threads)."""
    from spade_lens.saes import create_sae

    sae = create_sae(arch, d_in=128, d_sae=256, seed=0, **kwargs)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 128, generator=gen)
    out = []
    with torch_threads(2):
        for _ in range(repeats):
            sae.zero_grad()
            res = sae(x)
            (res.mse_loss + res.sparsity_loss + res.aux_loss).backward()
            out.append({k: p.grad.clone() for k, p in sae.named_parameters() if p.grad is not None})
    return out
