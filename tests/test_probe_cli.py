"""``spade-lens probe`` on a tiny harvested cache and tiny saved SAEs (in-process)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from spade_lens.cli import main

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    saes_mod = pytest.importorskip("spade_lens.saes", reason="spade_lens.saes not available yet")
    hooks = pytest.importorskip("hooks")
    datasets = pytest.importorskip("datasets")
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    root = tmp_path_factory.mktemp("probe_cli")
    cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_heads=1, d_head=8, d_mlp=16, n_ctx=16, d_vocab=12,
                                  act_fn="gelu", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # HookedTransformer is deprecated in TL 3.9
        model = HookedTransformer(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 12, (12, 10), generator=gen)
    pos = ((ids - 3) % 3).tolist()
    for row in pos:
        row[0] = -1  # an unlabelled position
    features = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32")),
                                  "pos": datasets.Sequence(datasets.ClassLabel(names=["N", "V", "Adj"]))})
    ds = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "pos": pos}, features=features)
    hooks.harvest(model, ds, [HOOK], root / "cache", progress=False)
    dirs = []
    for i, arch in enumerate(("relu", "topk", "spade")):
        kwargs = {"k": 4} if arch == "topk" else {}
        sae = saes_mod.create_sae(arch, d_in=8, d_sae=16, seed=i, hook_name=HOOK, **kwargs)
        dirs.append(str(sae.save(root / arch)))
    return root, dirs


def test_probe_cli_writes_report_and_prints_headline(tiny_setup, capsys):
    root, dirs = tiny_setup
    out = root / "report"
    argv = ["probe", "--sae", dirs[0], "--sae", dirs[1], "--sae", dirs[2], "--activations", str(root / "cache"),
            "--out", str(out), "--no-progress", "--no-plots", "--batch-size", "32"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| SAE | L0 | NMSE | N | V | Adj |" in printed and "relu" in printed and "topk" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["relu", "topk", "spade"]
    assert metrics["spade"]["architecture"] == "spade" and metrics["spade"]["nmse"] is not None
    assert metrics["topk"]["architecture"] == "topk" and metrics["topk"]["width"] == 16
    assert metrics["topk"]["l0"] <= 4.0 + 1e-6
    assert set(metrics["relu"]["concepts"]) == {"N", "V", "Adj"}
    assert (out / "report.md").exists()
    assert "probed 3 SAE(s) on 120 tokens (108 labelled" in printed


def test_probe_cli_max_tokens_and_other_label(tiny_setup, capsys):
    root, dirs = tiny_setup
    out = root / "report2"
    assert main(["probe", "--sae", dirs[0], "--activations", str(root / "cache"), "--out", str(out),
                 "--no-progress", "--no-plots", "--max-tokens", "50", "--hook", HOOK]) == 0
    assert "on 50 tokens" in capsys.readouterr().out


def test_probe_cli_group_merges_concepts(tiny_setup, capsys):
    root, dirs = tiny_setup
    out = root / "report_grouped"
    assert main(["probe", "--sae", dirs[0], "--activations", str(root / "cache"), "--out", str(out),
                 "--no-progress", "--no-plots", "--group", "NV=N,V"]) == 0
    assert "| SAE | L0 | NMSE | NV | Adj |" in capsys.readouterr().out
    assert list(json.loads((out / "metrics.json").read_text())["relu"]["concepts"]) == ["NV", "Adj"]


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--group", "NV=N"], r"group: received 'NV=N'; expected NAME=A,B"),
        (["--group", "NP=N,Det"], r"'Det' is not a concept"),
        (["--label", "phrase"], r"--label: 'phrase' is not a label column .*\['pos'\]"),
        (["--hook", "blocks.0.hook_mlp_out"], r"--hook: SAE 'relu' reads hook 'blocks.0.hook_mlp_out'"),
        (["--max-tokens", "0"], r"--max-tokens: received 0"),
    ],
)
def test_probe_cli_bad_arguments(tiny_setup, capsys, extra, match):
    import re

    root, dirs = tiny_setup
    argv = ["probe", "--sae", dirs[0], "--activations", str(root / "cache"), "--out", str(root / "bad"),
            "--no-progress", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("spade-lens probe: error: ") and re.search(match, err)


def test_probe_never_replaces_what_is_not_a_report(tiny_setup, capsys):
    """Issue 11, defect 1: --out used to delete whatever was there (a file, a folder, the SAE being probed)."""
    root, dirs = tiny_setup
    base = ["probe", "--sae", dirs[0], "--activations", str(root / "cache"), "--no-progress", "--no-plots"]
    user_file = root / "notes.txt"
    user_file.write_text("mine")
    user_dir = root / "thesis"
    user_dir.mkdir(exist_ok=True)
    (user_dir / "chapter.tex").write_text("mine")
    sae_before = {p.name: p.read_bytes() for p in (root / "relu").iterdir()}
    for target, message in ((user_file, "is a file"), (user_dir, "holds other files (chapter.tex)"),
                            (root / "relu", "is the input"), (root / "cache", "is the input"),
                            (root, "holds the input")):
        assert main([*base, "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert user_file.read_text() == "mine" and (user_dir / "chapter.tex").read_text() == "mine"
    assert {p.name: p.read_bytes() for p in (root / "relu").iterdir()} == sae_before
    report = root / "old_report"
    assert main([*base, "--out", str(report)]) == 0 and main([*base, "--out", str(report)]) == 0  # a report: replaced
    record = json.loads((report / "provenance.json").read_text())
    assert record["kind"] == "report" and record["inputs"]["sae relu"]["path"] == dirs[0]
