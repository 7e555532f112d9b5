"""``spade-lens run --quick``: every stage's artifacts, the report's documented keys, and skip-on-rerun."""

import json

import pytest

from spade_lens.cli import main
from spade_lens.errors import SpadeLensError
from spade_lens.pipeline import ARCHITECTURES, RunConfig
from spade_lens.report import CONCEPT_KEYS, SAE_KEYS


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(["run", "--quick", "--no-progress", "--out", str(out)])
    assert code == 0
    return out


def test_quick_run_writes_every_stage(quick_run):
    assert (quick_run / "corpus" / "dataset_dict.json").is_file()
    assert (quick_run / "lm" / "model.safetensors").is_file()
    assert (quick_run / "activations" / "train" / "manifest.json").is_file()
    assert (quick_run / "activations" / "validation" / "manifest.json").is_file()
    for arch in ARCHITECTURES:
        assert (quick_run / "saes" / arch / "cfg.json").is_file()
        assert (quick_run / "saes" / arch / "sae_weights.safetensors").is_file()
    assert (quick_run / "report" / "report.md").is_file()


def test_quick_run_metrics_have_documented_keys(quick_run):
    metrics = json.loads((quick_run / "report" / "metrics.json").read_text())
    assert set(metrics) == set(ARCHITECTURES)
    pos = {"Adj", "Adv", "Conj", "N", "Pro", "V"}
    for arch, entry in metrics.items():
        assert set(SAE_KEYS) <= set(entry)
        assert entry["architecture"] == arch and entry["width"] == RunConfig.quick().width
        assert set(entry["concepts"]) == pos
        for concept in entry["concepts"].values():
            assert set(CONCEPT_KEYS) <= set(concept)
            assert 0.0 <= concept["best_f1"] <= 1.0


def test_quick_run_also_reports_nouns_and_pronouns_as_one_concept(quick_run):
    six = json.loads((quick_run / "report" / "metrics.json").read_text())
    five = json.loads((quick_run / "report" / "paper_concepts" / "metrics.json").read_text())
    assert set(five) == set(ARCHITECTURES)
    for arch in ARCHITECTURES:
        assert list(five[arch]["concepts"]) == ["Adj", "Adv", "Conj", "N+Pro", "V"]
        assert five[arch]["l0"] == six[arch]["l0"]  # the same SAEs on the same tokens
        for concept in ("Adj", "Adv", "Conj", "V"):
            assert five[arch]["concepts"][concept] == six[arch]["concepts"][concept]
    assert (quick_run / "report" / "paper_concepts" / "report.md").is_file()


def test_quick_run_writes_a_latent_browser_with_the_reports_numbers(quick_run):
    from spade_lens.dashboard import read_data

    assert (quick_run / "report" / "dashboard" / "index.html").is_file()
    index = read_data(quick_run / "report" / "dashboard" / "data" / "index.js")
    metrics = json.loads((quick_run / "report" / "metrics.json").read_text())
    assert [s["name"] for s in index["saes"]] == list(ARCHITECTURES) and index["split"] == "validation"
    for s in index["saes"]:
        assert s["l0"] == metrics[s["name"]]["l0"] and s["has_logits"]
        assert s["best_f1"] == [c["best_f1"] for c in metrics[s["name"]]["concepts"].values()]
    assert any(f["href"].startswith("../") and f["href"].endswith(".png") for f in index["figures"])


def test_rerun_skips_finished_stages(quick_run, capsys):
    before = (quick_run / "saes" / "spade" / "sae_weights.safetensors").read_bytes()
    assert main(["run", "--quick", "--no-progress", "--out", str(quick_run)]) == 0
    out = capsys.readouterr().out
    assert "corpus: " in out and "exists with these settings, skipped" in out
    assert out.count("with these settings, skipped") == 5  # corpus, model, both activation caches, SAEs
    assert "SAEs: " in out and "skipped" in out
    assert (quick_run / "saes" / "spade" / "sae_weights.safetensors").read_bytes() == before
    assert "| spade |" in out  # the headline table
    assert "| SAE | L0 | NMSE | Adj | Adv | Conj | N+Pro | V |" in out  # and the paper's five concepts


def test_bad_run_config_is_a_clear_error():
    with pytest.raises(SpadeLensError, match="RunConfig.width: expected a positive integer, got 0"):
        RunConfig(width=0)
    with pytest.raises(SpadeLensError, match="unknown architectures \\['gelu'\\]"):
        RunConfig(sae_kwargs={"gelu": {}})
    with pytest.raises(SpadeLensError, match="RunConfig.sae_lr_scale: unknown architectures \\['spades'\\]"):
        RunConfig(sae_lr_scale={"spades": 10.0})


@pytest.mark.parametrize(("options", "message"), [
    (["--quick", "--seed", "1"], "corpus' was made with other settings than requested (seed: recorded 0, requested 1)"),
    (["--quick", "--grammar", "rich"], "(grammar: recorded 'english ("),
    ([], "corpus' was made with other settings than requested (n: recorded 600, requested 100000"),
    (["--quick", "--sae-seed", "1"], "saes' was made with other settings than requested (seed: recorded 0, requested 1)"),
])
def test_rerun_with_other_settings_stops_and_names_them(quick_run, capsys, options, message):
    """Issue 11, defect 4: --grammar, --seed and a full run into a --quick folder used to be ignored (old results
    printed, exit 0)."""
    before = (quick_run / "report" / "metrics.json").read_bytes()
    assert main(["run", "--no-progress", "--out", str(quick_run), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and "remove" in err and err.count("\n") == 1, err
    assert (quick_run / "report" / "metrics.json").read_bytes() == before


def test_every_stage_records_its_provenance(quick_run):
    from spade_lens.provenance import read_provenance

    kinds = {name: read_provenance(quick_run / name)["kind"] for name in
             ("corpus", "lm", "activations/train", "activations/validation", "saes", "report", ".")}
    assert kinds == {"corpus": "corpus", "lm": "lm", "activations/train": "activations",
                     "activations/validation": "activations", "saes": "saes", "report": "report", ".": "run"}
    corpus, lm = read_provenance(quick_run / "corpus"), read_provenance(quick_run / "lm")
    acts = read_provenance(quick_run / "activations" / "train")
    assert lm["inputs"]["corpus"]["id"] == corpus["id"] and lm["tokenizer"] == corpus["tokenizer"]
    assert acts["inputs"]["model"]["id"] == lm["id"] and acts["tokenizer"] == corpus["tokenizer"]
    assert read_provenance(quick_run / "saes")["inputs"]["activations"]["id"] == acts["id"]
    assert read_provenance(quick_run / "report")["inputs"]["activations"]["path"].endswith("validation")
