"""TopK SAE: keep the k largest pre-activations (then ReLU), with the AuxK loss for dead latents.

Fast path: the dense pre-activations are computed once without gradient and used for the selection; the
gradient flows only through the ``k`` selected entries (:func:`~spade_lens.saes.sparse_ops.gathered_dot`),
and decoding is sparse (``embedding_bag``).

AuxK (Gao et al. 2024, as in SAELens): with ``dead_mask`` given, the ``k_aux`` largest pre-activations among
dead latents reconstruct the residual ``e = x_n - x_hat_n`` (detached) without decoder bias;
``aux_loss = aux_coefficient * min(n_dead / k_aux, 1) * mean_b ||e - e_hat||^2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from spade_lens.errors import SpadeLensError
from spade_lens.saes.base import Code, sparse_decode
from spade_lens.saes.config import SAEConfig, check_non_negative, check_positive_int
from spade_lens.saes.linear import LinearEncoderSAE
from spade_lens.saes.registry import register_sae
from spade_lens.saes.sparse_ops import gathered_dot


@dataclass
class TopKSAEConfig(SAEConfig):
    """Config of the ``topk`` architecture."""

    architecture: ClassVar[str] = "topk"

    k: int = 32
    """Active latents per input, 1 <= k <= d_sae."""
    k_aux: int | None = None
    """Dead latents used by AuxK per input (default d_in // 2, at least 1), 1 <= k_aux <= d_sae."""
    aux_coefficient: float = 1 / 32
    """Weight of the AuxK loss, >= 0 (Gao et al. use 1/32)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("k", self.k)
        if self.k > self.d_sae:
            raise SpadeLensError(f"k must be <= d_sae ({self.d_sae}), got k={self.k}")
        if self.k_aux is not None:
            check_positive_int("k_aux", self.k_aux)
            if self.k_aux > self.d_sae:
                raise SpadeLensError(f"k_aux must be <= d_sae ({self.d_sae}), got k_aux={self.k_aux}")
        check_non_negative("aux_coefficient", self.aux_coefficient)

    @property
    def effective_k_aux(self) -> int:
        """``k_aux`` or its default ``min(max(d_in // 2, 1), d_sae)``."""
        return self.k_aux if self.k_aux is not None else min(max(self.d_in // 2, 1), self.d_sae)


class TopKSAE(LinearEncoderSAE):
    """TopK SAE with AuxK; encode keeps ``ReLU`` of the ``k`` largest pre-activations."""

    config_class = TopKSAEConfig
    cfg: TopKSAEConfig

    def encode_code(self, x_n: Tensor) -> Code:
        x_c = x_n - self.b_dec  # (batch, d_in)
        with torch.no_grad():
            scores = x_c @ self.W_enc  # (batch, d_sae), no gradient: selection only
            pre = scores + self.b_enc
            idx = torch.topk(pre, self.cfg.k, dim=-1, sorted=False).indices  # (batch, k)
        if torch.is_grad_enabled() and (x_c.requires_grad or self.W_enc.requires_grad):
            vals = gathered_dot(x_c, self.W_enc.T, idx, scores) + self.b_enc.index_select(0, idx.reshape(-1)).view(idx.shape)
        else:
            vals = pre.gather(1, idx)
        vals = vals.relu()
        z = torch.zeros_like(pre, dtype=vals.dtype).scatter(1, idx, vals)
        return Code(z, idx, vals, {"scores": scores, "pre": pre, "x_c": x_c})

    def aux_loss(self, x_n: Tensor, x_hat_n: Tensor, code: Code, dead_mask: Tensor | None) -> Tensor:
        if dead_mask is None or self.cfg.aux_coefficient == 0:
            return x_n.new_zeros(())
        n_dead = int(dead_mask.sum())
        if n_dead == 0:
            return x_n.new_zeros(())
        assert code.cache is not None
        k_aux = self.cfg.effective_k_aux
        scale = min(n_dead / k_aux, 1.0)
        k_aux = min(k_aux, n_dead)
        residual = (x_n - x_hat_n).detach()
        with torch.no_grad():
            masked = code.cache["pre"].masked_fill(~dead_mask.to(x_n.device), float("-inf"))
            idx = torch.topk(masked, k_aux, dim=-1, sorted=False).indices  # (batch, k_aux) dead latents
        vals = gathered_dot(code.cache["x_c"], self.W_enc.T, idx, code.cache["scores"]) + self.b_enc.index_select(0, idx.reshape(-1)).view(idx.shape)
        recon = sparse_decode(idx, vals, self.W_dec)
        return self.cfg.aux_coefficient * scale * (recon - residual).pow(2).sum(-1).mean()

    def saelens_state(self) -> tuple[dict[str, object], dict[str, Tensor]]:
        extra, state = super().saelens_state()
        return {**extra, "k": self.cfg.k, "rescale_acts_by_decoder_norm": False}, state

    @classmethod
    def arch_fields_from_saelens(cls, raw: dict[str, Any]) -> dict[str, Any]:
        if raw.get("rescale_acts_by_decoder_norm", False):
            raise SpadeLensError("rescale_acts_by_decoder_norm=True TopK SAEs are not supported; expected False")
        return {"k": raw.get("k", 100)}


register_sae("topk", TopKSAE)
