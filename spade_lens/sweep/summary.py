"""From probe results to the sweep's numbers: one record per trained SAE, mean and sd over seeds per setting, and
which architecture leads in each L0 band.

Record of one SAE and one (evaluation set, view): ``l0``, ``nmse``, ``dead_fraction``, ``mean_best_f1`` (mean over
concepts of the best-latent F1), ``mean_top5_f1``, ``stable_rank_data``, ``stable_rank_latents``,
``cross_concept_mass`` and ``concepts`` (name -> ``best_f1``, ``top5_f1``, ``l0``). On an evaluation set held in
memory (the balanced one) also ``mean_group_f1`` and, per concept, ``group_f1`` and ``group_size`` (see
:mod:`spade_lens.probe.coverage`). Unknown values are None.

Over seeds, every number becomes ``{"mean", "sd", "values"}``: the mean and the sample standard deviation
(``ddof=1``; None with a single seed) of the seeds' values, the values in seed order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from spade_lens.probe import ProbeResult

SCALARS = ("l0", "nmse", "dead_fraction", "mean_best_f1", "mean_top5_f1", "mean_group_f1", "stable_rank_data",
           "stable_rank_latents", "cross_concept_mass")
"""The per-SAE numbers of a record (besides the per-concept ones)."""
CONCEPT_SCALARS = ("best_f1", "top5_f1", "l0", "group_f1", "group_size")
"""The per-concept numbers of a record."""

L0_BANDS: tuple[tuple[int, int], ...] = ((1, 2), (3, 6), (7, 12), (13, 20), (21, 40))
"""The L0 bands of the leaders table; a setting belongs to band (lo, hi) when ``lo - 0.5 <= mean L0 < hi + 0.5``."""

CLEAR_LEAD = 2.0
"""A lead of at least this many seed standard deviations is called clear (one to two: narrow; below one: a tie
within the seeds' spread)."""


def _num(v: Any) -> float | None:
    f = float(v)
    return None if math.isnan(f) else f


def summarize(res: ProbeResult) -> dict[str, Any]:
    """The record of one SAE's :class:`ProbeResult` (JSON-ready)."""
    best, top5 = res.best_f1, res.top5_f1
    return {
        "l0": _num(res.l0),
        "nmse": _num(res.nmse),
        "dead_fraction": _num(res.dead_fraction),
        "mean_best_f1": _num(best.mean()) if best.numel() else None,
        "mean_top5_f1": _num(top5.mean()) if top5.numel() else None,
        "stable_rank_data": _num(res.stable_rank_data),
        "stable_rank_latents": _num(res.stable_rank_latents),
        "cross_concept_mass": _num(res.cross_concept_mass),
        "mean_group_f1": None,
        "concepts": {name: {"best_f1": _num(res.best_f1[c]), "top5_f1": _num(res.top5_f1[c]),
                            "l0": _num(res.concept_l0[c])}
                     for c, name in enumerate(res.concept_names)},
    }


def mean_sd(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"mean", "sd", "values"}`` of ``values``; None entries make the mean and sd None."""
    vals = list(values)
    if not vals or any(v is None for v in vals):
        return {"mean": None, "sd": None, "values": vals}
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return {"mean": mean, "sd": sd, "values": vals}


def aggregate_records(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and sd over the seeds' records of one setting, for one (evaluation set, view)."""
    out: dict[str, Any] = {key: mean_sd([r.get(key) for r in records]) for key in SCALARS}
    concepts: list[str] = []
    for r in records:
        concepts += [c for c in r["concepts"] if c not in concepts]
    out["concepts"] = {
        c: {key: mean_sd([r["concepts"].get(c, {}).get(key) for r in records]) for key in CONCEPT_SCALARS}
        for c in concepts
    }
    return out


def aggregate_points(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group per-SAE results (as written to ``results/<name>.json``) by setting and average over seeds.

    Each result has ``arch``, ``params`` (dict), ``label``, ``seed`` and ``evals`` (evaluation set -> view ->
    record). Returns one dict per setting, in first-seen order: ``arch``, ``params``, ``label``, ``seeds``,
    ``names`` and ``evals`` (evaluation set -> view -> aggregated record), for the evaluation sets and views
    every seed has.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        groups.setdefault(r["label"], []).append(r)
    points = []
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        evals: dict[str, Any] = {}
        for ev in rs[0]["evals"]:
            if not all(ev in r["evals"] for r in rs):
                continue
            views = [v for v in rs[0]["evals"][ev] if all(v in r["evals"][ev] for r in rs)]
            evals[ev] = {v: aggregate_records([r["evals"][ev][v] for r in rs]) for v in views}
        points.append({"arch": rs[0]["arch"], "params": dict(rs[0]["params"]), "label": label,
                       "seeds": [r["seed"] for r in rs], "names": [r["name"] for r in rs], "evals": evals})
    return points


def band_of(l0: float | None) -> int | None:
    """Index into :data:`L0_BANDS` of a mean L0, or None outside every band."""
    if l0 is None:
        return None
    for i, (lo, hi) in enumerate(L0_BANDS):
        if lo - 0.5 <= l0 < hi + 0.5:
            return i
    return None


def _get(point: Mapping[str, Any], ev: str, view: str, metric: str, concept: str | None = None) -> dict[str, Any]:
    rec = point["evals"][ev][view]
    return rec["concepts"][concept][metric] if concept is not None else rec[metric]


def band_leaders(points: Sequence[Mapping[str, Any]], ev: str, view: str, metric: str = "mean_best_f1",
                 concept: str | None = None) -> list[dict[str, Any]]:
    """Per L0 band: each architecture's best setting in the band (by mean ``metric``), the leader, its margin
    over the runner-up and that margin in units of the seeds' spread (the larger of the two sds).

    Returns one dict per band: ``band`` (lo, hi), ``best`` (arch -> {label, l0, mean, sd}), ``leader``,
    ``runner_up``, ``margin``, ``margin_in_sd`` (None when the spread is 0) and ``verdict``: ``"clear"`` (at
    least :data:`CLEAR_LEAD` sds), ``"narrow"`` (1 to 2), ``"tie"`` (less than one sd), ``"one seed"`` (no spread
    to compare with), ``"alone"`` (one architecture has a setting in the band) or ``"none"``.
    """
    rows = []
    for i, band in enumerate(L0_BANDS):
        best: dict[str, dict[str, Any]] = {}
        for p in points:
            if ev not in p["evals"] or view not in p["evals"][ev]:
                continue
            l0 = _get(p, ev, view, "l0")["mean"]
            value = _get(p, ev, view, metric, concept)
            if band_of(l0) != i or value["mean"] is None:
                continue
            if p["arch"] not in best or value["mean"] > best[p["arch"]]["mean"]:
                best[p["arch"]] = {"label": p["label"], "l0": l0, "mean": value["mean"], "sd": value["sd"]}
        ranked = sorted(best, key=lambda a: -best[a]["mean"])
        row: dict[str, Any] = {"band": band, "best": best, "leader": ranked[0] if ranked else None,
                               "runner_up": ranked[1] if len(ranked) > 1 else None, "margin": None,
                               "margin_in_sd": None, "verdict": "none" if not ranked else "alone"}
        if len(ranked) > 1:
            first, second = best[ranked[0]], best[ranked[1]]
            margin = first["mean"] - second["mean"]
            if first["sd"] is None and second["sd"] is None:
                row.update(margin=margin, verdict="one seed")
            else:
                spread = max(first["sd"] or 0.0, second["sd"] or 0.0)
                ratio = margin / spread if spread > 0 else None
                clear = ratio is None and margin > 0 or ratio is not None and ratio >= CLEAR_LEAD
                row.update(margin=margin, margin_in_sd=ratio,
                           verdict="clear" if clear else "narrow" if ratio is not None and ratio >= 1 else "tie")
        rows.append(row)
    return rows
