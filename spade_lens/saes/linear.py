"""Shared piece of the three linear-encoder architectures (relu, topk, jumprelu).

They all compute pre-activations ``pre = (x_n - b_dec) @ W_enc + b_enc`` with ``W_enc`` (d_in, d_sae) and
``b_enc`` (d_sae,), and fold the input normalisation into SAELens weights the same way:
with ``x_n = (x - mu) / s``: ``W_enc' = W_enc / s``, ``b_dec' = s * b_dec + mu``, ``W_dec' = s * W_dec``
(``b_enc`` and any threshold unchanged, since the pre-activations are unchanged).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from spade_lens.saes.base import SAE


class LinearEncoderSAE(SAE):
    """Base of relu / topk / jumprelu: a linear encoder tied at init to the decoder's transpose."""

    W_enc: nn.Parameter  # (d_in, d_sae)
    b_enc: nn.Parameter  # (d_sae,)

    def init_parameters(self, generator: torch.Generator, dtype: torch.dtype) -> None:
        d_in, d_sae = self.cfg.d_in, self.cfg.d_sae
        # Decoder rows: random directions of unit norm; encoder = decoder transpose (SAELens / OpenAI init).
        w = torch.randn(d_sae, d_in, generator=generator, dtype=torch.float64)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec.data.copy_(w.to(dtype))
        self.W_enc = nn.Parameter(w.T.contiguous().to(dtype))
        self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=dtype))

    def latent_parameters(self) -> list[tuple[nn.Parameter, int]]:
        return [(self.W_dec, 0), (self.W_enc, 1), (self.b_enc, 0)]

    def pre_activations(self, x_n: Tensor) -> Tensor:
        """(batch, d_in) normalised -> (batch, d_sae) pre-activations."""
        return (x_n - self.b_dec) @ self.W_enc + self.b_enc

    def training_pre_activations(self, x_n: Tensor) -> Tensor:
        """:meth:`pre_activations` for training: ``x_n @ W_enc + (b_enc - b_dec @ W_enc)`` in one ``addmm`` (equal
        up to rounding). As ``x_n`` needs no gradient, the backward skips the (batch, d_sae) x (d_sae, d_in)
        product that the gradient of ``x_n - b_dec`` would cost: ``b_dec`` gets its share through a vector."""
        bias = self.b_enc - self.b_dec @ self.W_enc  # (d_sae,)
        return torch.addmm(bias, x_n, self.W_enc)

    @torch.no_grad()
    def saelens_state(self) -> tuple[dict[str, object], dict[str, Tensor]]:
        s = self.norm_scale
        mu = self.norm_mean
        state = {
            "W_enc": (self.W_enc / s).contiguous(),
            "b_enc": self.b_enc.detach().clone(),
            "W_dec": (self.W_dec * s).contiguous(),
            "b_dec": (self.b_dec * s + mu).contiguous(),
        }
        return {}, state

    def adapt_saelens_state(self, raw: dict[str, Any], state: dict[str, Tensor]) -> dict[str, Tensor]:
        if raw.get("apply_b_dec_to_input", True) is False:
            # SAELens computes x @ W_enc + b_enc; we subtract b_dec first: fold b_dec @ W_enc into b_enc.
            state = dict(state)
            state["b_enc"] = state["b_enc"] + state["b_dec"] @ state["W_enc"]
        return state

    def copy_saelens_weights(self, state: dict[str, Tensor]) -> None:
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(self, name).data.copy_(state[name])


def inverse_softplus(y: float) -> float:
    """x with softplus(x) = y (y > 0)."""
    return y + math.log(-math.expm1(-y))
