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
