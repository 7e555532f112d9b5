"""``spade-lens harvest``, ``train-sae`` and ``sweep`` run unchanged under ``torchrun --nproc-per-node 2`` (gloo on
this CPU): rank 0 writes, the harvest holds the rows of one process, and the SAEs equal one process trained on the
ranks' combined batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _hooks_helpers import HOOK, coded_dataset, tiny_ht
from _training_helpers import one_torch_thread  # noqa: F401 (autouse fixture)

from hooks import ActivationCache
from spade_lens.saes import create_sae, load_sae
from spade_lens.training import SAETrainConfig, train_saes

DRIVER = Path(__file__).with_name("_torchrun_driver.py")
BATCH, TOKENS, WIDTH = 63, 630, 16  # 10 combined batches of 31 + 32 rows


@pytest.fixture(scope="module")
def acts(tmp_path_factory):
    from hooks import harvest

    root = tmp_path_factory.mktemp("acts")
    model = tiny_ht()
    harvest(model, coded_dataset(160, seed=0), [HOOK], root / "train", progress=False, shard_tokens=200)
    harvest(model, coded_dataset(80, seed=1), [HOOK], root / "validation", progress=False)
    return root


def torchrun(*commands: list[str]) -> subprocess.CompletedProcess:
    argv = [a for i, c in enumerate(commands) for a in ([] if i == 0 else ["--"]) + c]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(DRIVER), *argv], capture_output=True, text=True, env=env, timeout=600, check=False)


def combined(make_rank_batches) -> list[torch.Tensor]:
    """Batch i of one process: batch i of rank 0, then of rank 1."""
    parts = [[getattr(b, "acts", b) for b in make_rank_batches(r)] for r in range(2)]
    assert abs(len(parts[0]) - len(parts[1])) <= 1
    return [torch.cat(pair) for pair in zip(*parts, strict=False)]


def same_sae(a, b, x) -> None:
    assert torch.allclose(a.encode(x), b.encode(x), rtol=1e-4, atol=1e-5)
    assert torch.allclose(a.W_dec, b.W_dec, rtol=1e-4, atol=1e-5)


def test_harvest_train_sae_and_sweep_under_torchrun(acts, tmp_path):
    from test_hooks_cli import _saved

    from spade_lens.cli import main
    from spade_lens.cli.train_sae import rank_stream
    from spade_lens.sweep import SweepConfig

    model_dir, corpus_dir = _saved(tmp_path)
    out, sweep = tmp_path / "saes", tmp_path / "sweep"
    harvest_argv = ["harvest", "--model", str(model_dir), "--corpus", str(corpus_dir), "--hook", HOOK,
                    "--shard-tokens", "60", "--batch-size", "8", "--no-progress"]
    done = torchrun(
        [*harvest_argv, "--out", str(tmp_path / "harvested")],
        ["train-sae", "--activations", str(acts / "train"), "--arch", "relu,topk,spade", "--width", str(WIDTH),
         "--k", "2", "--batch-size", str(BATCH), "--tokens", str(TOKENS), "--eval-tokens", "200", "--no-progress",
         "--device", "cpu", "--out", str(out)],
        ["sweep", "--activations", str(acts), "--arch", "topk:k=1,2", "--seeds", "0", "--width", str(WIDTH),
         "--steps", "6", "--batch-size", "64", "--probe-tokens", "300", "--balanced", "20", "--label", "kind",
         "--no-plots", "--no-progress", "--out", str(sweep)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("tokens of split") == 1  # rank 0 alone reports
    assert main([*harvest_argv, "--out", str(tmp_path / "one-process")]) == 0
    got, want = ActivationCache(tmp_path / "harvested").load(HOOK), ActivationCache(tmp_path / "one-process").load(HOOK)
    assert torch.equal(got.labels["token_id"], want.labels["token_id"]) and len(got) > 100
    assert torch.equal(got.labels["seq_index"], want.labels["seq_index"])
    assert torch.allclose(got.acts, want.acts, atol=1e-5)
    assert done.stdout.count("trained 3 SAE(s)") == 1  # rank 0 alone reports
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == TOKENS // BATCH and summary["saes"]["relu"]["tokens"] == TOKENS
    assert len((out / "log.jsonl").read_text().splitlines()) == 3 * 2  # logged at steps 10 (every 50) and evals
    assert (out / "provenance.json").is_file() and not list(out.glob("*.tmp-*"))

    # the SAEs equal one process trained on the combined batches of the two ranks
    cache = ActivationCache(acts / "train")
    batches = combined(lambda r: rank_stream(cache, HOOK, BATCH, TOKENS, seed=0, rank=r, world_size=2)())
    assert [len(b) for b in batches] == [BATCH] * (TOKENS // BATCH)
    kwargs = {"relu": {}, "topk": {"k": 2}, "spade": {}}
    ref = {a: create_sae(a, d_in=cache.d_in, d_sae=WIDTH, seed=0, hook_name=HOOK, **kw) for a, kw in kwargs.items()}
    train_saes(ref, batches, SAETrainConfig(total_tokens=TOKENS, batch_size=BATCH, lr=1e-3), progress=False)
    x = cache.load(HOOK).acts[:100]
    for arch, sae in ref.items():
        same_sae(load_sae(out / arch), sae.eval(), x)

    # the sweep: every setting trained, saved, probed and reported once, by rank 0
    for name in ("topk_k-1_seed0", "topk_k-2_seed0"):
        result = json.loads((sweep / "results" / f"{name}.json").read_text())
        assert set(result["evals"]) == {"full", "balanced"}
    assert (sweep / "report" / "report.md").is_file() and done.stdout.count("trained 2 of 2 settings") == 1
    cfg = SweepConfig(width=WIDTH, steps=6, batch_size=64)
    batches = combined(lambda r: cache.batches(HOOK, 32, shuffle=True, seed=0, rank=r, world_size=2))
    ref = {"k1": create_sae("topk", d_in=cache.d_in, d_sae=WIDTH, seed=0, hook_name=HOOK,
                            **{**cfg.defaults.get("topk", {}), "k": 1})}
    train_saes(ref, batches, SAETrainConfig(steps=6, batch_size=64, lr=cfg.lr,
                                            lr_scale={"k1": cfg.lr_scale.get("topk", 1.0)}), progress=False)
    same_sae(load_sae(sweep / "saes" / "topk_k-1_seed0"), ref["k1"].eval(), x)
