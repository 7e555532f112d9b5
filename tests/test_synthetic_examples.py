"""Smoke runs of examples/separability.py and examples/heterogeneity.py at a tiny size (not their results)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("script", "args", "verdict"),
    [
        ("separability.py", ["--n", "2048", "--n-eval", "600", "--width", "16"], "separability result:"),
        ("heterogeneity.py", ["--n", "1024", "--n-eval", "500", "--width", "128"], "heterogeneity result:"),
    ],
)
def test_example_runs_and_reports(tmp_path, monkeypatch, capsys, script, args, verdict):
    pytest.importorskip("spade_lens.training", reason="spade_lens.training not available")
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", [script, *args, "--out", str(out), "--no-progress", "--no-plots"])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    printed = capsys.readouterr().out
    assert f"paper's qualitative {verdict}" in printed
    assert (out / "report" / "metrics.json").exists() and (out / "report" / "report.md").exists()
