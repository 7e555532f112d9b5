"""``spade-lens train-sae`` end to end on a tiny harvested cache."""

from __future__ import annotations

import json

import pytest
import torch
from _training_helpers import one_torch_thread, tiny_model  # noqa: F401 (autouse fixture)

from spade_lens.cli import main
from spade_lens.saes import load_sae

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    from hooks import harvest

    tokens = torch.randint(1, 12, (96, 8), generator=torch.Generator().manual_seed(0))
    out = tmp_path_factory.mktemp("acts") / "cache"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        harvest(tiny_model(), tokens, [HOOK], out, progress=False, shard_tokens=256)
    finally:
        torch.set_num_threads(before)
    return out


def test_train_sae_end_to_end(cache_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train-sae", "--activations", str(cache_dir), "--arch", "relu,topk,jumprelu,spade",
                 "--width", "32", "--k", "4", "--gamma", "relu=0.01", "--batch-size", "64", "--tokens", "640",
                 "--eval-tokens", "256", "--no-progress", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hook"] == HOOK and summary["steps"] == 10
    for arch in ("relu", "topk", "jumprelu", "spade"):
        assert arch in printed
        row = summary["saes"][arch]
        assert 0 <= row["dead_fraction"] <= 1 and row["nmse"] >= 0 and row["tokens_per_s"] > 0
        sae = load_sae(out / arch)
        assert sae.cfg.d_sae == 32 and sae.cfg.hook_name == HOOK
    assert load_sae(out / "topk").cfg.k == 4
    assert load_sae(out / "relu").cfg.l1_coefficient == 0.01
    assert summary["saes"]["topk"]["l0"] <= 4 + 1e-9
    assert (out / "log.jsonl").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--arch", "relu,nope"], r"--arch: received 'relu,nope'; expected distinct names among \["),
        (["--arch", "relu", "--gamma", "spade=1"], r"--gamma: received values for \['spade'\]"),
        (["--arch", "relu", "--gamma", "abc"], "--gamma: received 'abc'; expected a number"),
        (["--arch", "relu", "--k", "4"], "--k: received 4 but --arch 'relu' has no topk"),
        (["--arch", "topk", "--k", "64"], r"--k: received 64; expected at most --width \(32\)"),
        (["--arch", "topk", "--width", "16"], "--k: TopK.s default k=32 is more than --width 16"),
        (["--arch", "relu", "--gamma", "-1"], "l1_coefficient must be"),
        (["--arch", "relu", "--hook", "blocks.1.hook_resid_post"], "--hook: received 'blocks.1.hook_resid_post'"),
        (["--arch", "relu", "--width", "0"], "--width: received 0; expected an integer >= 1"),
        (["--arch", "relu", "--tokens", "0"], "--tokens: received 0; expected a positive integer"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(cache_dir, tmp_path, capsys, extra, message):
    code = main(["train-sae", "--activations", str(cache_dir), "--width", "32", "--out", str(tmp_path / "o"),
                 "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("spade-lens train-sae: error:")
    import re

    assert re.search(message, err), err


def test_missing_cache_and_existing_run(tmp_path, capsys, cache_dir):
    assert main(["train-sae", "--activations", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "is not an activation cache folder" in capsys.readouterr().err
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "checkpoint.pt").write_bytes(b"")
    assert main(["train-sae", "--activations", str(cache_dir), "--out", str(tmp_path / "o")]) == 2
    assert "already holds a run (checkpoint.pt); pass --resume" in capsys.readouterr().err


def test_tokens_trains_exactly_that_many_tokens(cache_dir, tmp_path):
    """Issue 11: --tokens N used to train fewer than N (each pass over the cache ended in a short batch)."""
    out = tmp_path / "run"
    assert main(["train-sae", "--activations", str(cache_dir), "--arch", "relu", "--width", "16", "--batch-size",
                 "100", "--tokens", "1000", "--eval-tokens", "64", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 10 and summary["saes"]["relu"]["tokens"] == 1000  # the cache holds 768 rows


def test_trained_saes_are_replaced_only_with_overwrite(cache_dir, tmp_path, capsys):
    argv = ["train-sae", "--activations", str(cache_dir), "--arch", "relu", "--width", "16", "--batch-size", "64",
            "--tokens", "128", "--eval-tokens", "64", "--no-progress", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    first = (tmp_path / "run" / "relu" / "sae_weights.safetensors").read_bytes()
    assert main([*argv[:-2], "--seed", "1", "--out", str(tmp_path / "run")]) == 2
    assert "already holds trained SAEs (relu); pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "run" / "relu" / "sae_weights.safetensors").read_bytes() == first
    assert main([*argv, "--seed", "1", "--overwrite"]) == 0
    assert (tmp_path / "run" / "relu" / "sae_weights.safetensors").read_bytes() != first
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert record["kind"] == "saes" and record["settings"]["seed"] == 1
    assert record["inputs"]["activations"]["path"] == str(cache_dir)
