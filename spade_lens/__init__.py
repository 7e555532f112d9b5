"""spade-lens: sparse autoencoders (ReLU, TopK, JumpReLU, SpaDE) on TransformerLens models.

The public API is re-exported here; see the README for the pipeline in a few lines.
"""

from spade_lens.errors import SpadeLensError

__all__ = ["SpadeLensError"]
__version__ = "0.1.0"
