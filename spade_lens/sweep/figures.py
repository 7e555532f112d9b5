"""Pareto pictures of a sweep (needs matplotlib): one line per architecture through its settings, sorted by L0,
each point the mean over seeds with the seeds' standard deviation as error bars in both directions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spade_lens.report.figures import new_figure, save_figure
from spade_lens.sweep.summary import L0_BANDS

EVAL_TITLES = {"full": "held-out stream", "balanced": "balanced set"}


def _series(points: Sequence[Mapping[str, Any]], ev: str, view: str, metric: str,
            concept: str | None) -> dict[str, list[tuple[float, float, float, float]]]:
    """arch -> [(L0 mean, L0 sd, value mean, value sd)] sorted by L0, for points with both numbers."""
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    for p in points:
        rec = p["evals"].get(ev, {}).get(view)
        if rec is None:
            continue
        value = rec["concepts"].get(concept, {}).get(metric) if concept is not None else rec.get(metric)
        if value is None or value["mean"] is None or rec["l0"]["mean"] is None:
            continue
        out.setdefault(p["arch"], []).append((rec["l0"]["mean"], rec["l0"]["sd"] or 0.0, value["mean"],
                                              value["sd"] or 0.0))
    return {arch: sorted(rows) for arch, rows in out.items()}


def _panel(ax: Any, points: Sequence[Mapping[str, Any]], ev: str, view: str, metric: str, ylabel: str,
           concept: str | None = None, log_y: bool = False) -> None:
    archs = sorted({p["arch"] for p in points})
    for i, arch in enumerate(archs):
        rows = _series(points, ev, view, metric, concept).get(arch)
        if not rows:
            continue
        x, xe, y, ye = zip(*rows, strict=True)
        ax.errorbar(x, y, xerr=xe, yerr=ye, color=f"C{i % 10}", marker="o", ms=4, lw=1.2, capsize=2, label=arch)
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    for lo, hi in L0_BANDS[1::2]:
        ax.axvspan(lo - 0.5, hi + 0.5, color="0.93", zorder=0)
    ax.set_xlabel("L0 (active latents per token)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", lw=0.3)


def plot_pareto_f1(points: Sequence[Mapping[str, Any]], ev: str, view: str, out_dir: Path) -> str:
    """Mean best-latent F1 against L0, one line per architecture."""
    fig = new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    _panel(ax, points, ev, view, "mean_best_f1", "mean best-latent F1 over concepts")
    ax.set_ylim(top=1.02)
    ax.set_title(f"Concept F1 against sparsity ({EVAL_TITLES.get(ev, ev)}, view {view})\n"
                 "mean over seeds, bars: seed sd; shaded: L0 bands 3-6 and 13-20")
    ax.legend(fontsize="small")
    return save_figure(fig, out_dir, f"pareto_f1_{ev}_{view}.png")


def plot_pareto_concepts(points: Sequence[Mapping[str, Any]], ev: str, view: str, out_dir: Path) -> str:
    """Best-latent F1 of each concept against L0, one panel per concept."""
    concepts: list[str] = []
    for p in points:
        rec = p["evals"].get(ev, {}).get(view)
        if rec is not None:
            concepts += [c for c in rec["concepts"] if c not in concepts]
    cols = min(3, max(1, len(concepts)))
    rows = max(1, math.ceil(len(concepts) / cols))
    fig = new_figure(4.2 * cols, 3.3 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, concept in enumerate(concepts):
        ax = axes[k // cols][k % cols]
        _panel(ax, points, ev, view, "best_f1", "best-latent F1", concept=concept)
        ax.set_ylim(top=1.02)
        ax.set_title(concept)
    for k in range(len(concepts), rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    axes[0][0].legend(fontsize="small")
    fig.suptitle(f"Best-latent F1 per concept against L0 ({EVAL_TITLES.get(ev, ev)}, view {view})")
    return save_figure(fig, out_dir, f"pareto_concepts_{ev}_{view}.png")


def plot_pareto_nmse_dead(points: Sequence[Mapping[str, Any]], ev: str, view: str, out_dir: Path) -> str:
    """NMSE and dead fraction against L0, side by side."""
    fig = new_figure(11, 4.2)
    ax_nmse, ax_dead = fig.subplots(1, 2)
    _panel(ax_nmse, points, ev, view, "nmse", "NMSE", log_y=True)
    ax_nmse.set_title("Reconstruction against sparsity")
    _panel(ax_dead, points, ev, view, "dead_fraction", "dead fraction (never active on the set)")
    ax_dead.set_ylim(-0.02, 1.02)
    ax_dead.set_title("Dead latents against sparsity")
    ax_nmse.legend(fontsize="small")
    fig.suptitle(f"{EVAL_TITLES.get(ev, ev)}; mean over seeds, bars: seed sd")
    return save_figure(fig, out_dir, f"pareto_nmse_dead_{ev}_{view}.png")


def plot_pareto_group_f1(points: Sequence[Mapping[str, Any]], view: str, out_dir: Path) -> str:
    """Mean best-latent F1 and mean group F1 against L0 on the balanced set, side by side."""
    fig = new_figure(11, 4.2)
    ax_best, ax_group = fig.subplots(1, 2, sharey=True)
    _panel(ax_best, points, "balanced", view, "mean_best_f1", "mean F1 over concepts")
    ax_best.set_title("Best single latent per concept")
    _panel(ax_group, points, "balanced", view, "mean_group_f1", "mean F1 over concepts")
    ax_group.set_title("All latents whose best concept it is, together (group F1)")
    ax_best.set_ylim(top=1.02)
    ax_best.legend(fontsize="small")
    fig.suptitle(f"balanced set, view {view}; mean over seeds, bars: seed sd")
    return save_figure(fig, out_dir, f"pareto_group_f1_{view}.png")


def write_sweep_figures(points: Sequence[Mapping[str, Any]], evals: Sequence[str], view: str,
                        out_dir: Path, group: bool = False) -> list[str]:
    """Every Pareto figure of ``view`` for each evaluation set (and, with ``group``, best against group F1 on
    the balanced set); returns the file names. ImportError without matplotlib."""
    import matplotlib  # noqa: F401  (fail early when the plots extra is missing)

    files = []
    for ev in evals:
        files += [plot_pareto_f1(points, ev, view, out_dir), plot_pareto_concepts(points, ev, view, out_dir),
                  plot_pareto_nmse_dead(points, ev, view, out_dir)]
    if group:
        files.append(plot_pareto_group_f1(points, view, out_dir))
    return files
