"""PNG figures of the probe results (needs matplotlib, the ``plots`` extra).

Uses matplotlib's object-oriented API (``matplotlib.figure.Figure`` rendered by the Agg canvas), so nothing
touches pyplot's global state or the user's backend. Each ``plot_*`` function returns the file name written.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from spade_lens.probe import ProbeResult
from spade_lens.report.markdown import concept_names, mean_best_f1

MAX_HEATMAP_LATENTS = 512
"""The F1 heatmap and co-occurrence plots show at most this many latents (those with the highest F1)."""


def safe_name(name: str) -> str:
    """``name`` reduced to ``[A-Za-z0-9_.-]`` for use in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "sae"


def new_figure(w: float, h: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, out_dir: Path, file: str) -> str:
    """Write ``fig`` as ``out_dir/file`` (``out_dir`` is write_report's temporary folder: atomic as a whole)."""
    fig.savefig(out_dir / file, format="png")
    return file


def _shown_latents(res: ProbeResult) -> np.ndarray:
    """Latents to display: assigned latents in ``latent_order``, capped at the best ``MAX_HEATMAP_LATENTS``."""
    order = res.latent_order.numpy()
    order = order[res.latent_concept.numpy()[order] >= 0]
    if len(order) > MAX_HEATMAP_LATENTS:
        score = res.f1.max(dim=0).values.numpy() if res.f1.shape[0] else np.zeros(res.width)
        keep = set(np.argsort(-score[order], kind="stable")[:MAX_HEATMAP_LATENTS].tolist())
        order = order[[i for i in range(len(order)) if i in keep]]
    return order


def _group_bounds(res: ProbeResult, shown: np.ndarray) -> list[tuple[int, int, int]]:
    """(concept, start, end) runs of the shown latents' best concepts."""
    concepts = res.latent_concept.numpy()[shown]
    bounds, start = [], 0
    for i in range(1, len(concepts) + 1):
        if i == len(concepts) or concepts[i] != concepts[start]:
            bounds.append((int(concepts[start]), start, i))
            start = i
    return bounds


def plot_f1_heatmap(name: str, res: ProbeResult, out_dir: Path, stem: str | None = None) -> str:
    """Concept x latent F1, latents grouped by best concept."""
    shown = _shown_latents(res)
    f1 = res.f1.numpy()[:, shown] if len(shown) else np.zeros((len(res.concept_names), 1))
    fig = new_figure(min(4 + 0.03 * f1.shape[1], 16), 1.2 + 0.35 * f1.shape[0])
    ax = fig.add_subplot()
    im = ax.imshow(f1, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(res.concept_names)), res.concept_names)
    ax.set_xlabel(f"latents with a best concept, grouped by it ({len(shown)} of {res.width})")
    for _, _, end in _group_bounds(res, shown)[:-1]:
        ax.axvline(end - 0.5, color="white", lw=0.6)
    ax.set_title(f"{name} ({res.architecture}): F1 of each latent for each concept")
    fig.colorbar(im, ax=ax, label="F1", shrink=0.9)
    return save_figure(fig, out_dir, f"f1_heatmap_{stem or safe_name(name)}.png")


def plot_cooccurrence(name: str, res: ProbeResult, out_dir: Path, stem: str | None = None) -> str | None:
    """Cosine similarity of activation profiles, latents grouped by best concept; None if not computed."""
    if res.cooccurrence is None:
        return None
    shown = _shown_latents(res)
    cos = res.cooccurrence.numpy()[np.ix_(shown, shown)] if len(shown) else np.zeros((1, 1))
    fig = new_figure(6.4, 5.6)
    ax = fig.add_subplot()
    im = ax.imshow(cos, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    ticks, labels = [], []
    for concept, start, end in _group_bounds(res, shown):
        ticks.append((start + end - 1) / 2)
        labels.append(res.concept_names[concept])
        if start > 0:
            ax.axvline(start - 0.5, color="cyan", lw=0.5)
            ax.axhline(start - 0.5, color="cyan", lw=0.5)
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    mass = res.cross_concept_mass
    ax.set_title(f"{name}: latent co-occurrence (cosine)\ncross-concept mass "
                 f"{'n/a' if math.isnan(mass) else f'{mass:.3f}'}")
    fig.colorbar(im, ax=ax, label="cosine of activation profiles", shrink=0.85)
    return save_figure(fig, out_dir, f"cooccurrence_{stem or safe_name(name)}.png")


def _grouped_bars(results: Mapping[str, ProbeResult], values, ylabel: str, title: str, hatched=None) -> Any:
    concepts = concept_names(results)
    n = len(results)
    width = 0.8 / max(n, 1)
    fig = new_figure(max(6.0, 1.0 + 0.22 * n * len(concepts) + 0.6 * len(concepts)), 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(concepts))
    colors = [f"C{i % 10}" for i in range(n)]
    for j, (name, res) in enumerate(results.items()):
        pos = x - 0.4 + width * (j + 0.5)
        val = [float(values(res)[res.concept_names.index(c)]) if c in res.concept_names else np.nan
               for c in concepts]
        ax.bar(pos, val, width * 0.95, color=colors[j], label=name)
        if hatched is not None:
            hv = [float(hatched(res)[res.concept_names.index(c)]) if c in res.concept_names else np.nan
                  for c in concepts]
            ax.bar(pos, hv, width * 0.95, color="none", edgecolor="black", hatch="//", lw=0.6)
    ax.set_xticks(x, concepts, rotation=30 if len(concepts) > 8 else 0, ha="right" if len(concepts) > 8 else "center")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_concept_f1(results: Mapping[str, ProbeResult], out_dir: Path) -> str:
    """Best-latent F1 (bars) and mean top-5 F1 (hatched overlay) per concept, SAEs side by side."""
    fig = _grouped_bars(results, lambda r: r.best_f1.numpy(), "F1",
                        "Best-latent F1 per concept (hatched: mean of top-5 latents)",
                        hatched=lambda r: r.top5_f1.numpy())
    fig.axes[0].set_ylim(0, 1.05)
    return save_figure(fig, out_dir, "concept_f1.png")


def plot_concept_l0(results: Mapping[str, ProbeResult], out_dir: Path) -> str:
    """Per-concept L0, SAEs side by side."""
    fig = _grouped_bars(results, lambda r: r.concept_l0.numpy(), "L0 (active latents per token)",
                        "Per-concept L0")
    return save_figure(fig, out_dir, "concept_l0.png")


def plot_tradeoff(results: Mapping[str, ProbeResult], out_dir: Path) -> str:
    """L0 against NMSE and against mean best-latent F1, one point per SAE."""
    fig = new_figure(10, 4.2)
    ax_nmse, ax_f1 = fig.subplots(1, 2)
    for j, (name, res) in enumerate(results.items()):
        for ax, y in ((ax_nmse, res.nmse), (ax_f1, mean_best_f1(res))):
            if not math.isnan(y):
                ax.scatter([res.l0], [y], color=f"C{j % 10}", s=40, label=name)
                ax.annotate(name, (res.l0, y), textcoords="offset points", xytext=(4, 4), fontsize="small")
    ax_nmse.set_xlabel("L0")
    ax_nmse.set_ylabel("NMSE")
    ax_nmse.set_title("Sparsity vs reconstruction")
    ax_f1.set_xlabel("L0")
    ax_f1.set_ylabel("mean best-latent F1 over concepts")
    ax_f1.set_ylim(0, 1.05)
    ax_f1.set_title("Sparsity vs concept F1")
    return save_figure(fig, out_dir, "tradeoff.png")


def write_figures(results: Mapping[str, ProbeResult], out_dir: str | os.PathLike[str]) -> list[str]:
    """Write every figure into ``out_dir``; returns their file names. Raises ImportError without matplotlib."""
    import matplotlib  # noqa: F401  (fail early and clearly when the plots extra is missing)

    out = Path(out_dir)
    files = [plot_concept_f1(results, out), plot_concept_l0(results, out), plot_tradeoff(results, out)]
    used: set[str] = set()
    for name, res in results.items():
        stem = safe_name(name)
        while stem in used:  # two SAE names that reduce to the same file name
            stem += "_"
        used.add(stem)
        files.append(plot_f1_heatmap(name, res, out, stem))
        cooc = plot_cooccurrence(name, res, out, stem)
        if cooc is not None:
            files.append(cooc)
    return files
