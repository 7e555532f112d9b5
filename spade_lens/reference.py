"""The paper's reference recipe for the synthetic experiments: build SAEs, train them in one pass, probe them.

Adam with lr 1e-2 cosine-decayed to 1e-4, grad-norm clip 1.0, one pass over the training points, inputs
mean-centred and scaled so E||x||^2 = d (DESIGN.md section 3); SpaDE's prototypes start at training points.
Used by ``examples/separability.py`` and ``examples/heterogeneity.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from spade_lens.probe import ProbeResult, probe_saes
from spade_lens.saes import create_sae
from spade_lens.training import SAETrainConfig, estimate_normalization, train_saes


def build_saes(archs: Mapping[str, tuple[str, dict[str, Any]]], width: int, seed: int,
               x_train: Tensor, prototype_sample: int = 20_000) -> tuple[dict[str, Any], tuple[Tensor, float]]:
    """``archs``: name -> (architecture, its keyword arguments). Returns SAEs of ``width`` latents for (n, d)
    ``x_train`` (each seeded ``seed + i``), normalised with its statistics, and those statistics (mean, scale). SpaDE's
    prototypes start at points drawn from the first ``prototype_sample`` training points."""
    mean, scale = estimate_normalization([x_train])
    saes = {}
    for i, (name, (arch, kwargs)) in enumerate(archs.items()):
        sae = create_sae(arch, d_in=x_train.shape[1], d_sae=width, seed=seed + i, **kwargs)
        sae.set_normalization(mean, scale)
        if hasattr(sae, "init_prototypes_from_data"):
            sae.init_prototypes_from_data(x_train[:prototype_sample], seed=seed)
        saes[name] = sae
    return saes, (mean, scale)


def train_and_probe(saes: Mapping[str, Any], norm: tuple[Tensor, float], x_train: Tensor, x_eval: Tensor,
                    labels_eval: Tensor, names: Sequence[str], *, batch_size: int,
                    progress: bool = True) -> dict[str, ProbeResult]:
    """Train ``saes`` side by side on one pass of (n, d) ``x_train`` with the reference recipe and the
    normalisation ``norm`` (from :func:`build_saes`), then probe them on (m, d) ``x_eval`` with its concept
    ids ``labels_eval`` (m,) named by ``names``."""
    cfg = SAETrainConfig(total_tokens=x_train.shape[0], batch_size=batch_size, lr=1e-2, final_lr=1e-4,
                         grad_clip=1.0)
    train_saes(saes, list(x_train.split(batch_size)), cfg, norm_stats=norm, progress=progress)
    for sae in saes.values():
        sae.eval()
    batches = list(zip(x_eval.split(4096), labels_eval.split(4096), strict=True))
    return probe_saes(saes, batches, label_names=list(names), progress=False)
