"""Teach SAELens to load SpaDE folders: :func:`register_spade_with_saelens`.

After the call, ``sae_lens.SAE.load_from_disk(folder)`` on a folder written by ``SpaDESAE.save`` returns a
``SpaDESAELens`` (a SAELens ``SAE`` subclass) whose ``encode`` / ``decode`` equal ours on raw activations
(weights in the file are already in raw space: prototypes ``s w + mu``, ``lambda / s^2``, decoder offset
``b_dec``). Needs the optional ``sae-lens`` package.
"""

from __future__ import annotations

from typing import Any

from spade_lens.errors import SpadeLensError

_CLASSES: tuple[type, type] | None = None


def _build_classes() -> tuple[type, type]:
    from dataclasses import dataclass

    import torch
    from sae_lens.saes.sae import SAE as SAELensSAE
    from sae_lens.saes.sae import SAEConfig as SAELensConfig
    from torch import nn

    from spade_lens.saes.spade import squared_distances
    from spade_lens.sparsemax import sparsemax

    @dataclass
    class SpaDESAELensConfig(SAELensConfig):
        """SAELens config of a SpaDE SAE (no extra fields; ``apply_b_dec_to_input`` is False)."""

        @classmethod
        def architecture(cls) -> str:
            return "spade"

    class SpaDESAELens(SAELensSAE[SpaDESAELensConfig]):
        """Inference-only SpaDE for SAELens: ``z = sparsemax(-lambda ||x - w_i||^2)``, ``x_hat = z W_dec + b_dec``."""

        prototypes: nn.Parameter
        # ``lambda`` is a parameter too (a Python keyword, so registered by name).

        def initialize_weights(self) -> None:
            d_in, d_sae = self.cfg.d_in, self.cfg.d_sae
            self.b_dec = nn.Parameter(torch.zeros(d_in, dtype=self.dtype, device=self.device))
            self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in, dtype=self.dtype, device=self.device))
            self.prototypes = nn.Parameter(torch.zeros(d_sae, d_in, dtype=self.dtype, device=self.device))
            self.register_parameter(
                "lambda", nn.Parameter(torch.full((), 1.0 / (2 * d_in), dtype=self.dtype, device=self.device))
            )

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            sae_in = self.process_sae_in(x)
            dist = squared_distances(sae_in, self.prototypes)
            hidden_pre = self.hook_sae_acts_pre(-getattr(self, "lambda") * dist)
            return self.hook_sae_acts_post(sparsemax(hidden_pre, dim=-1))

        def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
            sae_out = self.hook_sae_recons(feature_acts @ self.W_dec + self.b_dec)
            sae_out = self.run_time_activation_norm_fn_out(sae_out)
            return self.reshape_fn_out(sae_out, self.d_head)

        def get_activation_fn(self) -> Any:
            return lambda x: sparsemax(x, dim=-1)

    return SpaDESAELensConfig, SpaDESAELens


def register_spade_with_saelens() -> tuple[type, type]:
    """Register ``spade`` in SAELens' registry (idempotent). Returns (SAELens SAE class, its config class)."""
    global _CLASSES
    try:
        from sae_lens.registry import SAE_CLASS_REGISTRY, register_sae_class
    except ImportError as err:
        raise SpadeLensError(f"register_spade_with_saelens needs the sae-lens package ({err})") from None
    if _CLASSES is None:
        _CLASSES = _build_classes()
    cfg_class, sae_class = _CLASSES
    registered = SAE_CLASS_REGISTRY.get("spade")
    if registered is None:
        register_sae_class("spade", sae_class, cfg_class)
    elif registered[0] is not sae_class:
        raise SpadeLensError(
            f"SAELens already has another class registered as 'spade' ({registered[0].__name__}); expected ours"
        )
    return sae_class, cfg_class
