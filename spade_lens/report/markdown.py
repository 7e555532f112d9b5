"""``report.md``: tables of the probe results of one or several SAEs, side by side."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from spade_lens.probe import ProbeResult


def _f(v: float, digits: int = 3) -> str:
    v = float(v)
    return "n/a" if math.isnan(v) else f"{v:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def concept_names(results: Mapping[str, ProbeResult]) -> list[str]:
    """Union of the SAEs' concept names, in first-seen order."""
    names: list[str] = []
    for res in results.values():
        names += [c for c in res.concept_names if c not in names]
    return names


def _per_concept(results: Mapping[str, ProbeResult], cell) -> list[list[str]]:
    rows = []
    for concept in concept_names(results):
        row = [concept]
        for res in results.values():
            c = res.concept_names.index(concept) if concept in res.concept_names else -1
            row.append(cell(res, c) if c >= 0 else "-")
        rows.append(row)
    return rows


def mean_best_f1(res: ProbeResult) -> float:
    """Mean over concepts of the best-latent F1 (NaN without concepts)."""
    return float(res.best_f1.mean()) if res.best_f1.numel() else float("nan")


def summary_table(results: Mapping[str, ProbeResult]) -> str:
    """Per SAE: architecture, width, L0, NMSE, dead fraction, mean best F1, cross-concept mass."""
    header = ["SAE", "architecture", "width", "L0", "NMSE", "dead", "mean best F1", "cross-concept mass"]
    rows = [
        [name, r.architecture, str(r.width), _f(r.l0, 2), _f(r.nmse), _f(r.dead_fraction),
         _f(mean_best_f1(r)), _f(r.cross_concept_mass)]
        for name, r in results.items()
    ]
    return _table(header, rows)


def headline_table(results: Mapping[str, ProbeResult]) -> str:
    """The headline: per SAE, L0, NMSE and best-latent F1 per concept (one column per concept)."""
    concepts = concept_names(results)
    rows = []
    for name, r in results.items():
        row = [name, _f(r.l0, 2), _f(r.nmse)]
        for concept in concepts:
            row.append(_f(r.best_f1[r.concept_names.index(concept)]) if concept in r.concept_names else "-")
        rows.append(row)
    return _table(["SAE", "L0", "NMSE", *concepts], rows)


def render_markdown(
    results: Mapping[str, ProbeResult],
    *,
    title: str = "spade-lens concept probe",
    label: str | None = None,
    figures: Sequence[str] = (),
    plots_note: str | None = None,
) -> str:
    """The text of report.md; ``figures`` are PNG file names (relative to the report) to embed."""
    saes = list(results)
    first = next(iter(results.values()))
    parts = [f"# {title}", ""]
    what = f"label column `{label}`, " if label else ""
    parts.append(
        f"{len(saes)} SAE(s) probed on {first.n_tokens} tokens ({what}{first.n_labelled} labelled, "
        f"{len(concept_names(results))} concepts). Definitions at the end."
    )
    parts += ["", "## SAEs", "", summary_table(results), ""]
    parts += ["## Best-latent F1 per concept", "", "F1 of each concept's best latent (latent index in brackets).", ""]
    parts.append(_table(["concept", *saes], _per_concept(
        results, lambda r, c: f"{_f(r.best_f1[c])} (#{int(r.best_latent[c])})")))
    parts += ["", "## Mean F1 of the top-5 latents per concept", ""]
    parts.append(_table(["concept", *saes], _per_concept(results, lambda r, c: _f(r.top5_f1[c]))))
    parts += ["", "## Per-concept L0", "", "Mean number of active latents on the tokens of each concept.", ""]
    parts.append(_table(["concept", "tokens", *saes], [
        [row[0], str(int(first.concept_tokens[first.concept_names.index(row[0])]))
         if row[0] in first.concept_names else "-", *row[1:]]
        for row in _per_concept(results, lambda r, c: _f(r.concept_l0[c], 2))
    ]))
    if any(not math.isnan(r.nmse) for r in results.values()):
        parts += ["", "## Per-concept NMSE", "",
                  "Squared error over each concept's tokens / that concept's own total variance.", ""]
        parts.append(_table(["concept", *saes], _per_concept(results, lambda r, c: _f(r.concept_nmse[c]))))
    parts += ["", "## Figures", ""]
    if plots_note:
        parts.append(plots_note)
    parts += [f"![{fig}]({fig})" for fig in figures]
    parts += [
        "",
        "## Definitions",
        "",
        "- active: z_i > 1e-6; L0 = mean number of active latents per token; dead = never active here.",
        "- NMSE = mean squared error / total variance (sum over dims of Var(x_dim)).",
        "- F1 (concept c, latent i), over labelled tokens: precision = TP / #active(i), recall = TP / #tokens(c),"
        " TP = tokens of c where i is active. Best latent = argmax_i F1 (no one-to-one matching).",
        "- Co-occurrence: cosine of latents' activation profiles (values z over all tokens), latents grouped by"
        " best concept (argmax_c F1); cross-concept mass = share of off-diagonal |cosine| between latents of"
        " different best concepts (0 = latents co-fire only within their concept).",
        "",
    ]
    return "\n".join(parts)
