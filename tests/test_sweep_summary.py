"""Sweep numbers: mean and sd over seeds equal a hand computation; L0 bands and their leaders."""

import math
import statistics

import pytest

from spade_lens.sweep import aggregate_points, band_leaders, mean_sd
from spade_lens.sweep.summary import band_of


def _record(l0, f1_a, f1_b):
    return {"l0": l0, "nmse": 0.1 * l0, "dead_fraction": 0.0, "mean_best_f1": (f1_a + f1_b) / 2,
            "mean_top5_f1": None, "stable_rank_data": 2.0, "stable_rank_latents": 3.0, "cross_concept_mass": 0.5,
            "concepts": {"a": {"best_f1": f1_a, "top5_f1": f1_a / 2, "l0": l0},
                         "b": {"best_f1": f1_b, "top5_f1": f1_b / 2, "l0": l0}}}


def _result(arch, k, seed, l0, f1_a, f1_b):
    return {"name": f"{arch}_k-{k}_seed{seed}", "arch": arch, "params": {"k": k}, "label": f"{arch} k={k}",
            "seed": seed, "evals": {"full": {"pos": _record(l0, f1_a, f1_b)}}}


TINY = [
    _result("topk", 1, 0, 1.0, 0.90, 0.70), _result("topk", 1, 1, 1.0, 0.80, 0.60),
    _result("topk", 1, 2, 1.0, 0.85, 0.50),
    _result("spade", 1, 0, 1.4, 0.95, 0.91), _result("spade", 1, 1, 1.6, 0.99, 0.97),
    _result("spade", 1, 2, 1.8, 0.97, 0.99),
    _result("topk", 4, 0, 4.0, 0.5, 0.5),
]


def test_mean_sd_is_the_sample_sd():
    values = [0.9, 0.8, 0.85]
    got = mean_sd(values)
    assert got["mean"] == pytest.approx(statistics.mean(values))
    assert got["sd"] == pytest.approx(statistics.stdev(values))
    assert mean_sd([0.3]) == {"mean": 0.3, "sd": None, "values": [0.3]}
    assert mean_sd([0.3, None])["mean"] is None


def test_aggregate_over_seeds_equals_a_hand_computation():
    points = aggregate_points(TINY)
    assert [p["label"] for p in points] == ["topk k=1", "spade k=1", "topk k=4"]
    topk = points[0]["evals"]["full"]["pos"]
    assert points[0]["seeds"] == [0, 1, 2]
    assert topk["concepts"]["a"]["best_f1"]["mean"] == pytest.approx((0.90 + 0.80 + 0.85) / 3)
    assert topk["concepts"]["a"]["best_f1"]["sd"] == pytest.approx(0.05)
    spade = points[1]["evals"]["full"]["pos"]
    means = [(0.95 + 0.91) / 2, (0.99 + 0.97) / 2, (0.97 + 0.99) / 2]
    assert spade["mean_best_f1"]["mean"] == pytest.approx(sum(means) / 3)
    assert spade["mean_best_f1"]["sd"] == pytest.approx(statistics.stdev(means))
    assert spade["l0"]["mean"] == pytest.approx(1.6) and spade["l0"]["sd"] == pytest.approx(0.2)
    assert spade["mean_top5_f1"]["mean"] is None  # unknown in a seed -> unknown
    assert points[2]["evals"]["full"]["pos"]["l0"]["sd"] is None  # one seed


def test_l0_bands():
    assert [band_of(v) for v in (0.4, 0.5, 1.0, 2.49, 2.5, 6.49, 7.0, 12.6, 20.4, 40.4, 40.6, None)] == \
        [None, 0, 0, 0, 1, 1, 2, 3, 3, 4, None, None]


def test_band_leader_and_its_margin_in_seed_sds():
    rows = band_leaders(aggregate_points(TINY), "full", "pos")
    first = rows[0]
    assert first["band"] == (1, 2) and first["leader"] == "spade" and first["runner_up"] == "topk"
    spade_mean = sum([(0.95 + 0.91) / 2, (0.99 + 0.97) / 2, (0.97 + 0.99) / 2]) / 3
    topk_means = [0.80, 0.70, 0.675]
    margin = spade_mean - statistics.mean(topk_means)
    assert first["margin"] == pytest.approx(margin)
    spread = max(statistics.stdev(topk_means), statistics.stdev([0.93, 0.98, 0.98]))
    assert first["margin_in_sd"] == pytest.approx(margin / spread)
    assert first["verdict"] == "clear"
    assert rows[1]["leader"] == "topk" and rows[1]["verdict"] == "alone"
    assert rows[2]["verdict"] == "none" and rows[2]["leader"] is None
    per_concept = band_leaders(aggregate_points(TINY), "full", "pos", metric="best_f1", concept="b")
    assert per_concept[0]["best"]["spade"]["mean"] == pytest.approx((0.91 + 0.97 + 0.99) / 3)
    assert not math.isnan(per_concept[0]["margin"])


def test_a_tie_within_the_seed_spread():
    close = [_result("topk", 1, s, 1.0, 0.8 + 0.1 * s, 0.8 + 0.1 * s) for s in range(3)]
    close += [_result("relu", 1, s, 1.2, 0.85 + 0.1 * s, 0.85 + 0.1 * s) for s in range(3)]
    row = band_leaders(aggregate_points(close), "full", "pos")[0]
    assert row["leader"] == "relu" and row["verdict"] == "tie"
    assert row["margin_in_sd"] == pytest.approx(0.05 / 0.1)
