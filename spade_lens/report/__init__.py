"""The probe report: ``report.md`` (tables), ``metrics.json`` and PNG figures (with the ``plots`` extra).

``write_report({name: ProbeResult}, out_dir)`` writes all of them; ``headline_table(results)`` is the short
table (per SAE: L0, NMSE, best-latent F1 per concept) the CLI prints.
"""

from spade_lens.report.markdown import headline_table, render_markdown, summary_table
from spade_lens.report.metrics_json import CONCEPT_KEYS, SAE_KEYS, metrics_dict, metrics_json
from spade_lens.report.writer import PLOTS_HINT, ReportFiles, write_report

__all__ = [
    "CONCEPT_KEYS",
    "PLOTS_HINT",
    "SAE_KEYS",
    "ReportFiles",
    "headline_table",
    "metrics_dict",
    "metrics_json",
    "render_markdown",
    "summary_table",
    "write_report",
]
