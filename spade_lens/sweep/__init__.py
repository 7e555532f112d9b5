"""Sweeps: a grid of SAE settings x seeds trained on one activation set, probed, and reported as mean +- sd over
seeds with Pareto pictures (concept F1, NMSE and dead latents against L0) and the leader of each L0 band.

```
from spade_lens.sweep import SweepConfig, expand_grid, parse_arch_spec, run_sweep
grid = [parse_arch_spec("spade:kds_coefficient=0.01,0.1,1"), parse_arch_spec("topk:k=1,4,16")]
result = run_sweep("runs/default/activations", expand_grid(grid, seeds=[0, 1, 2]), SweepConfig(), out="runs/sweep")
```
"""

from spade_lens.sweep.config import SweepConfig
from spade_lens.sweep.grid import (
    ArchGrid,
    SweepSetting,
    expand_grid,
    grids_from_mapping,
    parse_arch_spec,
    parse_seeds,
)
from spade_lens.sweep.runner import SweepResult, resolve_caches, run_sweep
from spade_lens.sweep.summary import L0_BANDS, aggregate_points, band_leaders, mean_sd, summarize

__all__ = [
    "L0_BANDS",
    "ArchGrid",
    "SweepConfig",
    "SweepResult",
    "SweepSetting",
    "aggregate_points",
    "band_leaders",
    "expand_grid",
    "grids_from_mapping",
    "mean_sd",
    "parse_arch_spec",
    "parse_seeds",
    "resolve_caches",
    "run_sweep",
    "summarize",
]
