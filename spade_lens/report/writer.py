"""``write_report``: report.md + metrics.json + PNG figures for the probe results of several SAEs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from spade_lens._atomic import atomic_dir
from spade_lens.errors import SpadeLensError
from spade_lens.probe import ProbeResult
from spade_lens.provenance import check_target, json_identity, provenance_record, write_provenance
from spade_lens.report.markdown import render_markdown
from spade_lens.report.metrics_json import metrics_json

PLOTS_HINT = 'Figures need matplotlib: pip install "spade-lens[plots]" and rerun to get the PNGs.'
"""The line written to report.md (and returned as ``ReportFiles.message``) when matplotlib is missing."""


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote."""

    out_dir: Path
    """The report folder."""
    markdown: Path
    """``out_dir / "report.md"``."""
    metrics: Path
    """``out_dir / "metrics.json"``."""
    figures: list[Path] = field(default_factory=list)
    """PNG files (empty without matplotlib or with ``plots=False``)."""
    message: str | None = None
    """:data:`PLOTS_HINT` when figures were wanted but matplotlib is missing, else None."""


def write_report(
    results: Mapping[str, ProbeResult],
    out_dir: str | os.PathLike[str],
    *,
    title: str = "spade-lens concept probe",
    label: str | None = None,
    plots: bool = True,
    inputs: Mapping[str, object] | None = None,
) -> ReportFiles:
    """Write ``report.md``, ``metrics.json`` and (with matplotlib) PNG figures into ``out_dir``.

    The folder is written atomically: everything goes to a temporary folder beside ``out_dir`` which then
    replaces it (an existing ``out_dir`` is renamed away first, then removed). ``out_dir`` must be new, empty
    or a report folder: a file or any other folder is refused, so a mistyped path never deletes anything.

    Args:
        results: ``{sae name: ProbeResult}`` (from :func:`spade_lens.probe.probe_saes`), shown in this order.
        out_dir: the report folder.
        title: first heading of report.md.
        label: the label column probed, mentioned in report.md.
        plots: write the PNG figures (needs matplotlib; without it a line in report.md says how to get them).
        inputs: recorded in ``provenance.json`` (kind ``report``), e.g. the SAE and activation folders probed.
    """
    if not results:
        raise SpadeLensError("results: received an empty mapping; expected at least one ProbeResult")
    for name, res in results.items():
        if not isinstance(res, ProbeResult):
            raise SpadeLensError(f"results[{name!r}]: received a {type(res).__name__}; expected a ProbeResult")
    out = check_target(out_dir, "report", arg="out_dir")
    figures: list[str] = []
    message = None
    with atomic_dir(out) as tmp:
        if plots:
            try:
                from spade_lens.report.figures import write_figures

                figures = write_figures(results, tmp)
            except ImportError:
                message = PLOTS_HINT
        (tmp / "metrics.json").write_text(metrics_json(results), encoding="utf-8")
        md = render_markdown(results, title=title, label=label, figures=figures, plots_note=message)
        (tmp / "report.md").write_text(md, encoding="utf-8")
        write_provenance(tmp, provenance_record(
            "report", id=json_identity((tmp / "metrics.json").read_text(encoding="utf-8")), inputs=inputs,
            settings={"title": title, "label": label, "plots": plots, "saes": list(results)}))
    return ReportFiles(out, out / "report.md", out / "metrics.json", [out / f for f in figures], message)
