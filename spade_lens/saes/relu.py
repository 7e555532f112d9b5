"""ReLU SAE: ``z = ReLU((x_n - b_dec) @ W_enc + b_enc)``, penalty ``gamma * sum_i z_i ||W_dec_i||``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

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


register_sae("relu", ReLUSAE)
