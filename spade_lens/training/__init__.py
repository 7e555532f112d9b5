"""Training several SAEs side by side on one stream of activation batches.

```
from spade_lens.training import SAETrainConfig, train_saes
cfg = SAETrainConfig(total_tokens=2_000_000, batch_size=4096, lr=1e-3)
metrics = train_saes({"relu": relu_sae, "spade": spade_sae},
                     lambda: cache.batches("blocks.0.hook_resid_post", 4096, seed=0), cfg, out_dir="runs/x")
```
"""

from spade_lens.training.checkpoint import load_checkpoint, save_checkpoint
from spade_lens.training.config import SAETrainConfig
from spade_lens.training.dead import DeadLatentTracker
from spade_lens.training.schedule import learning_rate, sparsity_coefficient
from spade_lens.training.stream import estimate_normalization
from spade_lens.training.trainer import train_saes

__all__ = [
    "DeadLatentTracker",
    "SAETrainConfig",
    "estimate_normalization",
    "learning_rate",
    "load_checkpoint",
    "save_checkpoint",
    "sparsity_coefficient",
    "train_saes",
]
