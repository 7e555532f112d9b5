"""The sweep's ``report/``: ``report.md`` (the L0-band leaders and every setting's mean +- sd over seeds) and the
Pareto figures, written atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spade_lens._atomic import atomic_dir
from spade_lens.report.writer import PLOTS_HINT
from spade_lens.sweep.figures import EVAL_TITLES
from spade_lens.sweep.summary import CLEAR_LEAD


def _pm(value: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``mean ± sd`` (``mean`` alone with one seed, ``n/a`` when unknown)."""
    if value is None or value.get("mean") is None:
        return "n/a"
    text = f"{value['mean']:.{digits}f}"
    return text if value.get("sd") is None else f"{text} ± {value['sd']:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def headline_view(summary: Mapping[str, Any]) -> str:
    """The view the report leads with: the config's ``headline_view`` if the sweep has it, else its first view."""
    views = list(next(iter(summary["bands"].values())))
    wanted = summary["config"].get("headline_view")
    return wanted if wanted in views else views[0]


def bands_table(rows: Sequence[Mapping[str, Any]], archs: Sequence[str]) -> str:
    """Per L0 band: each architecture's best setting there (mean F1 ± sd at its L0) and who leads."""
    body = []
    for row in rows:
        lo, hi = row["band"]
        cells = [f"{lo}-{hi}"]
        for arch in archs:
            b = row["best"].get(arch)
            cells.append("-" if b is None else f"{_pm(b)} (L0 {b['l0']:.1f})")
        if row["leader"] is None:
            verdict = "no setting in this band"
        elif row["runner_up"] is None:
            verdict = f"{row['leader']} (only architecture here)"
        else:
            ratio = row["margin_in_sd"]
            spread = "" if ratio is None else f", {ratio:.1f} sd"
            verdict = f"{row['leader']} by {row['margin']:.3f}{spread}: {row['verdict']}"
        body.append(cells + [verdict])
    return _table(["L0 band", *archs, "leader (margin over runner-up)"], body)


def settings_table(points: Sequence[Mapping[str, Any]], ev: str, view: str) -> str:
    """Every setting: seeds, L0, NMSE, dead fraction, mean best and top-5 F1, best F1 per concept, mean group F1
    (where computed), stable ranks."""
    concepts: list[str] = []
    for p in points:
        rec = p["evals"].get(ev, {}).get(view)
        if rec is not None:
            concepts += [c for c in rec["concepts"] if c not in concepts]
    grouped = any(p["evals"].get(ev, {}).get(view, {}).get("mean_group_f1", {}).get("mean") is not None
                  for p in points)
    header = ["setting", "seeds", "L0", "NMSE", "dead", "mean best F1", "mean top-5 F1", *concepts,
              *(["mean group F1"] if grouped else []), "stable rank data", "stable rank latents"]
    body = []
    for p in points:
        rec = p["evals"].get(ev, {}).get(view)
        if rec is None:
            continue
        body.append([p["label"], str(len(p["seeds"])), _pm(rec["l0"], 2), _pm(rec["nmse"], 4),
                     _pm(rec["dead_fraction"], 2), _pm(rec["mean_best_f1"]), _pm(rec["mean_top5_f1"]),
                     *[_pm(rec["concepts"].get(c, {}).get("best_f1")) for c in concepts],
                     *([_pm(rec.get("mean_group_f1"))] if grouped else []),
                     _pm(rec["stable_rank_data"], 1), _pm(rec["stable_rank_latents"], 1)])
    return _table(header, body)


def render_sweep_markdown(summary: Mapping[str, Any], figures: Sequence[str], plots_note: str | None) -> str:
    cfg = summary["config"]
    points = summary["points"]
    archs = sorted({p["arch"] for p in points})
    seeds = sorted({s for p in points for s in p["seeds"]})
    view = headline_view(summary)
    lines = [
        "# spade-lens sweep",
        "",
        f"{len(summary['results'])} SAEs: {len(points)} settings x seeds {seeds}, width {cfg['width']}, "
        f"{cfg['steps']} steps of {cfg['batch_size']} activations at `{summary['hook']}` "
        f"(`{summary['activations']}`), lr {cfg['lr']} (x {cfg['lr_scale']} per architecture). The settings of "
        "one seed train side by side on the same batches, shuffled with that seed. Probed on held-out "
        f"activations (`{summary['eval_activations']}`): the first {cfg['probe_tokens']:,} tokens (*held-out "
        f"stream*) and a balanced draw of {cfg['balanced_per_concept']:,} tokens per concept (*balanced set*, as the "
        "SpaDE paper evaluates). Numbers are mean ± sample sd over seeds.",
        "",
    ]
    for ev in summary["bands"]:
        lines += [
            f"## Who leads in each L0 band ({EVAL_TITLES.get(ev, ev)}, view `{view}`)",
            "",
            "Each cell: the architecture's best setting in the band by mean best-latent F1 (mean over concepts). "
            f"A lead is *clear* at {CLEAR_LEAD:g} or more seed sds (the larger sd of the two), *narrow* at 1-2, "
            "a *tie* below 1.",
            "",
            bands_table(summary["bands"][ev][view], archs),
            "",
        ]
    if summary.get("group_bands"):
        lines += [
            f"## Who leads by group F1 (balanced set, view `{view}`)",
            "",
            "The same, scored by the mean over concepts of the group F1: the latents whose best concept is `c` taken "
            "together (a token counts as `c` when any of them fires), so a dictionary that tiles a concept with many "
            "precise latents scores high even when no single latent covers it.",
            "",
            bands_table(summary["group_bands"][view], archs),
            "",
        ]
    for ev in summary["bands"]:
        for v in summary["bands"][ev]:
            lines += [f"## Every setting ({EVAL_TITLES.get(ev, ev)}, view `{v}`)", "",
                      settings_table(points, ev, v), ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    if plots_note:
        lines += [plots_note, ""]
    return "\n".join(lines)


def write_sweep_report(summary: Mapping[str, Any], out_dir: Path, *, plots: bool = True) -> Path:
    """Write ``report.md`` and (with matplotlib) the Pareto figures of ``summary`` (sweep.json's content)."""
    figures: list[str] = []
    note = None
    with atomic_dir(out_dir) as tmp:
        if plots:
            try:
                from spade_lens.sweep.figures import write_sweep_figures

                figures = write_sweep_figures(summary["points"], list(summary["bands"]), headline_view(summary), tmp,
                                              group=bool(summary.get("group_bands")))
            except ImportError:
                note = PLOTS_HINT
        (tmp / "report.md").write_text(render_sweep_markdown(summary, figures, note), encoding="utf-8")
    return Path(out_dir)
