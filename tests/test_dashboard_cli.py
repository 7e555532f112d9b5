"""``spade-lens dashboard``: the command writes the site, its grouped concepts are the probe's, bad input is one line."""

from __future__ import annotations

import re

import pytest
from _dashboard_helpers import HOOK, shared_tiny_run

from hooks import ActivationCache
from spade_lens.cli import main
from spade_lens.dashboard import read_data
from spade_lens.probe import probe_saes
from spade_lens.saes import load_sae


def test_dashboard_command_writes_a_site_with_grouped_concepts_and_figure_links(tmp_path, capsys):
    run = shared_tiny_run()
    report = tmp_path / "report"
    report.mkdir()
    (report / "f1_heatmap.png").write_bytes(b"\x89PNG fake")
    out = tmp_path / "site"
    code = main(["dashboard", "--sae", str(run.saes["spade"]), "--sae", str(run.saes["topk"]),
                 "--activations", str(run.acts), "--corpus", str(run.corpus), "--model", str(run.lm),
                 "--out", str(out), "--report", str(report), "--group", "N+Pro=N,Pro", "--top-k", "3",
                 "--batch-size", "64", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "dashboard of 2 SAE(s), 48 latents" in printed and f"open {out / 'index.html'}" in printed
    for name in ("index.html", "dashboard.js", "dashboard.css", "dashboard.json", "data/index.js",
                 "data/spade/block-0000.js", "data/topk/block-0000.js"):
        assert (out / name).is_file(), name
    index = read_data(out / "data" / "index.js")
    assert index["figures"] == [{"name": "f1_heatmap.png", "href": "../report/f1_heatmap.png"}]
    assert index["concepts"] == ["Adj", "Adv", "Conj", "N+Pro", "V"]
    assert index["label_names"] == ["Adj", "Adv", "Conj", "N", "Pro", "V"]  # hover shows the gold label itself
    cache = ActivationCache(run.acts)
    saes = {"spade": load_sae(run.saes["spade"]), "topk": load_sae(run.saes["topk"])}
    probe = probe_saes(saes, cache.batches(HOOK, 64, shuffle=False), label="pos",
                       label_names=cache.label_names["pos"], groups={"N+Pro": ["N", "Pro"]}, progress=False)
    for s in index["saes"]:
        r = probe[s["name"]]
        assert s["best_f1"] == r.best_f1.tolist() and s["latents"]["concept"] == r.latent_concept.tolist()
        assert s["has_logits"] is True
        block = read_data(out / "data" / s["folder"] / "block-0000.js")
        assert [d["f1"] for d in block["latents"]] == r.f1.T.tolist()
        assert all(len(d["examples"]) <= 3 for d in block["latents"])
    # Rebuilding over an existing dashboard replaces it.
    assert main(["dashboard", "--sae", str(run.saes["relu"]), "--activations", str(run.acts), "--corpus",
                 str(run.corpus), "--out", str(out), "--no-progress"]) == 0
    assert [s["name"] for s in read_data(out / "data" / "index.js")["saes"]] == ["relu"]
    assert not (out / "data" / "spade").exists()


@pytest.mark.parametrize(("swap", "message"), [
    ({"--activations": "corpus"}, "--activations|not an activation cache folder"),
    ({"--corpus": "other"}, "were not harvested from this corpus|is not a corpus"),
    ({"--out": "acts_inside"}, "is, holds or lies inside the input"),
    ({"--label": "colour"}, "label: 'colour' is not a label column"),
    ({"--top-k": "0"}, "DashboardConfig.top_k: received 0; expected an integer >= 1"),
    ({"--split": "train"}, "'train' differs at sequence"),
    ({"--model": "corpus"}, "model folder .*config.json is missing"),
    ({"--report": "missing"}, "report_dir: .* is not a folder"),
])
def test_bad_dashboard_input_is_one_line_and_exit_code_2(tmp_path, capsys, swap, message):
    run = shared_tiny_run()
    other = tmp_path / "other"
    other.mkdir()
    values = {"corpus": str(run.corpus), "other": str(other), "acts_inside": str(run.acts / "dash"),
              "missing": str(tmp_path / "no-report")}
    args = {"--sae": str(run.saes["relu"]), "--activations": str(run.acts), "--corpus": str(run.corpus),
            "--out": str(tmp_path / "site")}
    for key, value in swap.items():
        args[key] = values.get(value, value)
    argv = ["dashboard", "--no-progress"] + [x for kv in args.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spade-lens dashboard: error: ") and "\n" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "site").exists()
