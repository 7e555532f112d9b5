"""ReLU SAE: ``z = ReLU((x_n - b_dec) @ W_enc + b_enc)``, penalty ``gamma * sum_i z_i ||W_dec_i||``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from spade_lens.saes.base import Code
from spade_lens.saes.config import SAEConfig, check_non_negative
from spade_lens.saes.linear import LinearEncoderSAE
from spade_lens.saes.registry import register_sae


@dataclass
class ReLUSAEConfig(SAEConfig):
    """Config of the ``relu`` architecture (SAELens ``standard``)."""

    architecture: ClassVar[str] = "relu"

    l1_coefficient: float = 1.0
    """gamma of the penalty ``gamma * sum_i z_i ||W_dec_i||`` (normalised space), >= 0."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_non_negative("l1_coefficient", self.l1_coefficient)


class ReLUSAE(LinearEncoderSAE):
    """The standard SAE with a decoder-norm-weighted L1 penalty."""

    config_class = ReLUSAEConfig
    cfg: ReLUSAEConfig

    def encode_code(self, x_n: Tensor) -> Code:
        return Code(self.pre_activations(x_n).relu())

    def sparsity_loss(self, x_n: Tensor, code: Code) -> Tensor:
        return self.cfg.l1_coefficient * (code.z * self.W_dec.norm(dim=1)).sum(-1).mean()

    def training_terms(self, x_n: Tensor, dead_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Fused: the decoder-norm weights ride along the decoder as one more column, so ``z @ [W_dec | norms]``
        gives the reconstruction and each row's ``sum_i z_i ||W_dec_i||`` in one matmul (and its backward the
        gradient of both in one more), without (batch, d_sae) products."""
        d_in = self.cfg.d_in
        z = self.training_pre_activations(x_n).relu_()  # (batch, d_sae); addmm's backward does not need its output
        # (d_sae, d_in + 1 + pad): zero columns up to a multiple of 8, which BLAS multiplies much faster (129 columns
        # took 1.5x the time of 128 or 136 here)
        pad = -(d_in + 1) % 8
        decoder = torch.cat([self.W_dec, self.W_dec.norm(dim=1, keepdim=True),
                             self.W_dec.new_zeros(self.cfg.d_sae, pad)], dim=1)
        out = z @ decoder  # (batch, d_in + 1 + pad)
        x_hat_n = out[:, :d_in] + self.b_dec
        sparsity = self.cfg.l1_coefficient * out[:, d_in].mean()
        return x_hat_n, z, sparsity, x_n.new_zeros(())


register_sae("relu", ReLUSAE)
