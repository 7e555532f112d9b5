"""write_report writes report.md, metrics.json (documented keys) and PNGs; without matplotlib, md + json + hint."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from _probe_helpers import LinearReluSAE, random_stream

from spade_lens.errors import SpadeLensError
from spade_lens.probe import probe_saes
from spade_lens.report import CONCEPT_KEYS, PLOTS_HINT, SAE_KEYS, headline_table, write_report


def _results():
    _, _, batches = random_stream(n=240, d=4, n_concepts=3, batch=80, seed=0)
    saes = {"relu/a": LinearReluSAE(4, 16, seed=0), "relu b": LinearReluSAE(4, 8, seed=1)}
    return probe_saes(saes, batches, label_names=["N", "V", "Adj"], progress=False)


def _check_md_json(out, results):
    md = (out / "report.md").read_text()
    for name in results:
        assert name in md
    for heading in ("## SAEs", "## Best-latent F1 per concept", "## Mean F1 of the top-5", "## Per-concept L0"):
        assert heading in md
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == list(results)
    for name, entry in metrics.items():
        assert tuple(entry) == SAE_KEYS
        assert entry["width"] == results[name].width and entry["architecture"] == "relu"
        assert list(entry["concepts"]) == ["N", "V", "Adj"]
        for c, concept in enumerate(entry["concepts"].values()):
            assert tuple(concept) == CONCEPT_KEYS
            assert concept["best_f1"] == pytest.approx(float(results[name].best_f1[c]))
            assert concept["best_latent"] == int(results[name].best_latent[c])
    return md


def test_report_files_with_figures(tmp_path):
    pytest.importorskip("matplotlib")
    results = _results()
    out = tmp_path / "report"
    files = write_report(results, out, label="pos")
    md = _check_md_json(out, results)
    names = sorted(p.name for p in out.iterdir())
    expected_pngs = {"concept_f1.png", "concept_l0.png", "tradeoff.png", "f1_heatmap_relu_a.png",
                     "f1_heatmap_relu_b.png", "cooccurrence_relu_a.png", "cooccurrence_relu_b.png"}
    assert expected_pngs <= set(names) and not [n for n in names if ".tmp-" in n or ".old-" in n]
    assert {p.name for p in files.figures} == expected_pngs and files.message is None
    for png in expected_pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in md
    # Rewriting replaces the folder (atomically) rather than merging into it.
    (out / "stale.txt").write_text("x")
    write_report(results, out, plots=False)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "provenance.json", "report.md"]


def test_report_without_matplotlib(tmp_path, monkeypatch):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    results = _results()
    files = write_report(results, tmp_path / "r")
    assert files.message == PLOTS_HINT and files.figures == []
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["metrics.json", "provenance.json", "report.md"]
    md = _check_md_json(tmp_path / "r", results)
    assert 'pip install "spade-lens[plots]"' in md


def test_nan_values_become_null_and_headline(tmp_path):
    class NoDecode:
        def encode(self, x):
            return torch.relu(x)

    _, _, batches = random_stream(n=50, d=3, n_concepts=2, batch=50)
    results = probe_saes({"x": NoDecode()}, batches, label_names=["a", "b", "never"], progress=False)
    write_report(results, tmp_path / "r", plots=False)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["x"]["nmse"] is None and metrics["x"]["concepts"]["never"]["l0"] is None
    table = headline_table(results)
    assert table.splitlines()[0] == "| SAE | L0 | NMSE | a | b | never |" and "n/a" in table


def test_bad_results_raise(tmp_path):
    with pytest.raises(SpadeLensError, match="results: received an empty mapping"):
        write_report({}, tmp_path / "r")
    with pytest.raises(SpadeLensError, match=r"results\['a'\]: received a dict; expected a ProbeResult"):
        write_report({"a": {}}, tmp_path / "r")
