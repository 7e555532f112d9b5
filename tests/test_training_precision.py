"""SAETrainConfig(precision="bfloat16"): forward passes under bfloat16 autocast, losses within a stated tolerance of
float32 for every architecture, weights and optimiser state still float32.

The tolerance: bfloat16 keeps 8 significant bits, so autocast rounds each matmul input by at most 2^-9 of itself
and each product by at most about 2^-8 (0.4%) (products accumulate in float32). A reconstruction is then off by at
most 0.4% of the sum of its terms' sizes, and the squared error that makes the loss by at most about twice that:
0.8%, below the 1% asked of the first step's loss. Training adds no drift of its own: Adam's step hardly depends on
a 0.4% change of the gradient, so after 40 steps the evaluation NMSE is asked to stay within 1% too (measured on
these shapes: at most 0.19% for the first loss, 0.05% for the final NMSE)."""

from __future__ import annotations

import pytest
import torch
from _training_helpers import make_acts, one_torch_thread  # noqa: F401 (autouse fixture)

from spade_lens.errors import SpadeLensError
from spade_lens.metrics import evaluate_sae
from spade_lens.saes import create_sae
from spade_lens.training import SAETrainConfig, train_saes

D, WIDTH, BATCH = 32, 128, 256
KWARGS = {"relu": {"l1_coefficient": 0.01}, "topk": {"k": 4}, "jumprelu": {}, "spade": {}}
TOLERANCE = 1e-2


def _train(steps: int, precision: str) -> tuple[dict, dict, dict]:
    data = list(make_acts(40 * BATCH, D, seed=1, rank=8).split(BATCH))
    saes = {a: create_sae(a, d_in=D, d_sae=WIDTH, seed=0, **kw) for a, kw in KWARGS.items()}
    found = train_saes(saes, data, SAETrainConfig(steps=steps, batch_size=BATCH, lr=3e-3, precision=precision,
                                                  log_every=1), progress=False)
    return saes, found, {a: evaluate_sae(s.eval(), data[:8]).nmse for a, s in saes.items()}


def test_bfloat16_losses_stay_within_the_stated_tolerance_of_float32():
    for steps in (1, 40):
        _, full, full_nmse = _train(steps, "float32")
        saes, half, half_nmse = _train(steps, "bfloat16")
        for arch in KWARGS:
            rel = abs(half[arch]["loss"] - full[arch]["loss"]) / abs(full[arch]["loss"])
            assert rel < TOLERANCE, (arch, steps, rel)
            assert abs(half_nmse[arch] - full_nmse[arch]) < TOLERANCE * full_nmse[arch], (arch, steps)
            if steps == 1:
                assert half[arch]["loss"] != full[arch]["loss"], f"{arch}: bfloat16 changed nothing"
    for sae in saes.values():  # autocast computes in bfloat16; what is stored stays float32
        assert all(p.dtype == torch.float32 for p in sae.parameters())


def test_precision_is_checked_and_recorded_only_when_not_the_default():
    with pytest.raises(SpadeLensError, match=r"precision must be one of \['float32', 'bfloat16'\], got 'fp8'"):
        SAETrainConfig(steps=1, precision="fp8")
    assert "precision" not in SAETrainConfig(steps=1).to_dict()  # settings recorded before it existed still match
    assert SAETrainConfig(steps=1, precision="bfloat16").to_dict()["precision"] == "bfloat16"
