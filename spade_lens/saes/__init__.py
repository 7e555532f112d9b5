"""SAE architectures (relu, topk, jumprelu, spade) on one base, an explicit registry, and SAELens-layout files.

Importing this package registers the four built-in architectures.
"""

from spade_lens.saes.base import SAE, Code, SAEOutput
from spade_lens.saes.config import SAEConfig
from spade_lens.saes.io import load_sae, save_sae
from spade_lens.saes.jumprelu import JumpReLUSAE, JumpReLUSAEConfig
from spade_lens.saes.registry import (
    ARCHITECTURES,
    create_sae,
    get_sae_class,
    list_architectures,
    register_sae,
)
from spade_lens.saes.relu import ReLUSAE, ReLUSAEConfig
from spade_lens.saes.saelens_interop import register_spade_with_saelens
from spade_lens.saes.spade import SpaDESAE, SpaDESAEConfig
from spade_lens.saes.topk import TopKSAE, TopKSAEConfig

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "Code",
    "JumpReLUSAE",
    "JumpReLUSAEConfig",
    "ReLUSAE",
    "ReLUSAEConfig",
    "SAEConfig",
    "SAEOutput",
    "SpaDESAE",
    "SpaDESAEConfig",
    "TopKSAE",
    "TopKSAEConfig",
    "create_sae",
    "get_sae_class",
    "list_architectures",
    "load_sae",
    "register_sae",
    "register_spade_with_saelens",
    "save_sae",
]
