"""``run_sweep`` / ``spade-lens sweep`` end to end on tiny activation caches: results, resume without retraining,
recipe checks, the report."""

import json

import pytest
import torch
from _hooks_helpers import HOOK, coded_dataset, tiny_ht
from safetensors.torch import load_file

from spade_lens.cli import main
from spade_lens.errors import SpadeLensError
from spade_lens.sweep import SweepConfig, expand_grid, parse_arch_spec, run_sweep

GRID = ["topk:k=1,3", "spade:kds_coefficient=0.01,0.3"]


def _cfg(**kw):
    base = dict(width=16, steps=30, batch_size=64, probe_tokens=800, balanced_per_concept=40, label="kind",
                views={"kind": None, "ab": {"a+b": ["a", "b"]}}, headline_view="kind", checkpoint_every=10)
    return SweepConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def acts(tmp_path_factory):
    from hooks import harvest

    root = tmp_path_factory.mktemp("acts")
    model = tiny_ht()
    harvest(model, coded_dataset(200, seed=0), [HOOK], root / "train", progress=False)
    harvest(model, coded_dataset(120, seed=1), [HOOK], root / "validation", progress=False)
    return root


@pytest.fixture(scope="module")
def swept(acts, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    settings = expand_grid([parse_arch_spec(g) for g in GRID], [0, 1])
    return out, settings, run_sweep(acts, settings, _cfg(), out=out, progress=False)


def test_every_setting_has_an_sae_a_result_and_both_views(swept):
    out, settings, result = swept
    assert sorted(result.trained) == sorted(s.name for s in settings)
    for s in settings:
        assert (out / "saes" / s.name / "cfg.json").is_file()
        saved = json.loads((out / "results" / f"{s.name}.json").read_text())
        assert set(saved["evals"]) == {"full", "balanced"}
        for ev in saved["evals"].values():
            assert set(ev) == {"kind", "ab"}
            assert list(ev["ab"]["concepts"]) == ["a+b", "c"]
    topk1 = json.loads((out / "results" / "topk_k-1_seed0.json").read_text())
    assert topk1["evals"]["full"]["kind"]["l0"] == pytest.approx(1.0)
    balanced = topk1["evals"]["balanced"]["ab"]
    assert 0 <= balanced["mean_group_f1"] <= 1 and topk1["evals"]["full"]["ab"]["mean_group_f1"] is None
    assert sum(c["group_size"] for c in balanced["concepts"].values()) <= 16
    assert all(0 <= c["group_f1"] <= 1 for c in balanced["concepts"].values())
    assert not (out / "train" / "seed-0" / "checkpoint.pt").exists()  # removed once the pass is saved
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["settings"] == [s.name for s in settings]
    assert [p["label"] for p in summary["points"]] == ["topk k=1", "topk k=3", "spade kds_coefficient=0.01",
                                                       "spade kds_coefficient=0.3"]
    report = (out / "report" / "report.md").read_text()
    assert "Who leads in each L0 band" in report and "| topk k=3 | 2 |" in report
    assert (out / "report" / "pareto_f1_balanced_kind.png").is_file()


def test_balanced_view_probes_the_same_number_of_tokens_of_each_concept(swept):
    out, _, _ = swept
    saved = json.loads((out / "results" / "topk_k-3_seed1.json").read_text())
    # a latent firing on every token would have recall 1 and precision 1/3 on the balanced set; check the L0s
    per_concept = saved["evals"]["balanced"]["kind"]["concepts"]
    assert set(per_concept) == {"a", "b", "c"}
    assert saved["evals"]["balanced"]["kind"]["l0"] == pytest.approx(3.0)


def test_rerun_trains_nothing_and_a_removed_result_is_retrained_identically(swept, acts):
    out, settings, _ = swept
    before = {s.name: (out / "results" / f"{s.name}.json").read_text() for s in settings}
    again = run_sweep(acts, settings, _cfg(), out=out, progress=False)
    assert again.trained == []
    assert {s.name: (out / "results" / f"{s.name}.json").read_text() for s in settings} == before
    name = "spade_kds_coefficient-0.3_seed1"
    weights = load_file(out / "saes" / name / "sae_weights.safetensors")
    (out / "results" / f"{name}.json").unlink()
    import shutil
    shutil.rmtree(out / "saes" / name)
    third = run_sweep(acts, settings, _cfg(), out=out, progress=False)
    assert third.trained == [name]  # trained alone, on the same batches as in its first pass
    retrained = load_file(out / "saes" / name / "sae_weights.safetensors")
    assert all(torch.equal(weights[k], retrained[k]) for k in weights)
    assert json.loads((out / "results" / f"{name}.json").read_text())["evals"] == json.loads(before[name])["evals"]


def test_a_saved_but_unprobed_sae_is_probed_without_training(swept, acts):
    out, settings, _ = swept
    name = "topk_k-1_seed1"
    (out / "results" / f"{name}.json").unlink()
    again = run_sweep(acts, settings, _cfg(), out=out, progress=False)
    assert again.trained == [] and (out / "results" / f"{name}.json").is_file()


def test_another_recipe_in_the_same_folder_is_refused(swept, acts):
    out, settings, _ = swept
    with pytest.raises(SpadeLensError, match=r"already holds topk_k-1_seed0 made differently \(steps: 30 there, 31"):
        run_sweep(acts, settings, _cfg(steps=31), out=out, progress=False)


def test_interrupted_pass_resumes_to_the_same_weights(acts, tmp_path, monkeypatch):
    settings = expand_grid([parse_arch_spec("spade:kds_coefficient=0.1")], [0])
    ref = run_sweep(acts, settings, _cfg(), out=tmp_path / "ref", progress=False, plots=False)
    assert ref.trained == [settings[0].name]

    import spade_lens.training.trainer as trainer

    real = trainer._train_step
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "_train_step", failing)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(acts, settings, _cfg(), out=tmp_path / "cut", progress=False, plots=False)
    assert (tmp_path / "cut" / "train" / "seed-0" / "checkpoint.pt").is_file()
    monkeypatch.setattr(trainer, "_train_step", real)
    run_sweep(acts, settings, _cfg(), out=tmp_path / "cut", progress=False, plots=False)
    a = load_file(tmp_path / "ref" / "saes" / settings[0].name / "sae_weights.safetensors")
    b = load_file(tmp_path / "cut" / "saes" / settings[0].name / "sae_weights.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_sweep_prints_the_band_table(acts, tmp_path, capsys):
    code = main(["sweep", "--activations", str(acts), "--arch", "topk:k=1,2", "--arch", "relu", "--seeds", "0,1",
                 "--width", "16", "--steps", "20", "--batch-size", "64", "--probe-tokens", "600", "--balanced", "0",
                 "--label", "kind", "--no-progress", "--no-plots", "--out", str(tmp_path / "s")])
    out = capsys.readouterr().out
    assert code == 0
    assert "mean best-latent F1 by L0 band (full, view kind)" in out  # no N/Pro labels: no paper view
    assert "| L0 band | relu | topk |" in out and "trained 6 of 6 settings" in out
    assert not (tmp_path / "s" / "results" / "topk_k-1_seed0.json").read_text().count('"balanced"')


def test_cli_sweep_bad_arguments(acts, tmp_path, capsys):
    assert main(["sweep", "--activations", str(acts), "--arch", "topk:q=1", "--out", str(tmp_path / "x")]) == 2
    assert "not settings of 'topk'" in capsys.readouterr().err
    assert main(["sweep", "--activations", str(acts / "train"), "--out", str(tmp_path / "x")]) == 2
    assert "expected held-out activations" in capsys.readouterr().err
    assert main(["sweep", "--activations", str(acts / "train"), "--eval-activations", str(acts / "train"),
                 "--arch", "relu", "--out", str(tmp_path / "x")]) == 2
    assert "probing on training data" in capsys.readouterr().err


def test_parallel_passes_give_the_same_saes_as_one_after_another(acts, tmp_path):
    settings = expand_grid([parse_arch_spec("topk:k=2"), parse_arch_spec("spade:kds_coefficient=0.1")], [0, 1])
    one = run_sweep(acts, settings, _cfg(), out=tmp_path / "one", progress=False, plots=False)
    two = run_sweep(acts, settings, _cfg(), out=tmp_path / "two", progress=False, plots=False, jobs=2)
    assert sorted(two.trained) == sorted(one.trained) == sorted(s.name for s in settings)
    for s in settings:
        a = load_file(tmp_path / "one" / "saes" / s.name / "sae_weights.safetensors")
        b = load_file(tmp_path / "two" / "saes" / s.name / "sae_weights.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SpadeLensError, match="jobs: received 0"):
        run_sweep(acts, settings, _cfg(), out=tmp_path / "three", jobs=0)
