"""train_saes across processes (gloo, 2 CPU ranks): the same SAEs as one process on the combined batches, resume
after an interrupt on one rank equals the uninterrupted run, and every rank stops together on errors."""

from __future__ import annotations

import json
import os
import signal
import warnings

import torch
from _distributed_helpers import rank_rows, run_ranks
from _training_helpers import make_acts, one_torch_thread  # noqa: F401 (autouse fixture)

from spade_lens.errors import SpadeLensError
from spade_lens.saes import create_sae
from spade_lens.training import SAETrainConfig, load_checkpoint, train_saes

D, WIDTH, BATCH, STEPS = 8, 32, 63, 14  # 63 rows: ranks of 31 and 32 rows, so the weighting matters
ARCH_KWARGS = {
    "relu": {"l1_coefficient": 0.01},
    "topk": {"k": 2, "k_aux": 4},  # few active latents and a short window: dead latents, so AuxK runs
    "jumprelu": {},
    "spade": {"init": "kmeans++", "resample_every": 3, "resample_until": 1.0, "dead_aux_coefficient": 0.5},
}


def make_saes() -> dict:
    return {a: create_sae(a, d_in=D, d_sae=WIDTH, seed=3, **kw) for a, kw in ARCH_KWARGS.items()}


def config(**kw) -> SAETrainConfig:
    base = dict(steps=STEPS, batch_size=BATCH, lr=3e-3, warmup_steps=2, sparsity_warmup_steps=3, log_every=2,
                dead_window_tokens=2 * BATCH, norm_batches=2, checkpoint_every=5)
    base.update(kw)
    return SAETrainConfig(**base)


def combined_batches() -> list[torch.Tensor]:
    return list(make_acts(STEPS * BATCH, D, seed=5).split(BATCH))


def states(saes: dict) -> dict:
    return {name: {k: v.clone() for k, v in sae.state_dict().items()} for name, sae in saes.items()}


def _ranks_train(rank: int, world_size: int, folder, _: object) -> None:
    mine = [rank_rows(b, rank, world_size) for b in combined_batches()]
    record: dict = {}
    # 1. uninterrupted
    saes = make_saes()
    train_saes(saes, mine, config(), out_dir=folder / "full", progress=False)
    record["full"] = states(saes)

    # 2. Ctrl-C reaches rank 1 alone while it fetches batch 7; both ranks stop after the same step, rank 0 saves
    def source():
        for i, batch in enumerate(mine):
            if rank == 1 and i == 7:
                os.kill(os.getpid(), signal.SIGINT)
            yield batch

    try:
        train_saes(make_saes(), source, config(), out_dir=folder / "cut", progress=False)
    except KeyboardInterrupt:
        record["interrupted"] = True
    if rank == 0:
        record["cut_step"] = load_checkpoint(folder / "cut")["step"]
    resumed = make_saes()
    train_saes(resumed, mine, config(), out_dir=folder / "cut", progress=False, resume=True)
    record["resumed"] = states(resumed)

    # 3. rank 1's one-shot stream ends after 5 batches: every rank stops there, with a warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        short = train_saes(make_saes(), iter(mine[:5] if rank == 1 else mine), config(checkpoint_every=0),
                           progress=False)
    record["short_steps"] = short["relu"]["steps"]
    record["short_warning"] = [str(w.message) for w in caught if "ran out" in str(w.message)]

    # 4. non-finite activations on rank 1 only: every rank stops with an error naming the step
    bad = [b.clone() for b in mine]
    if rank == 1:
        bad[4][0, 0] = float("nan")
    try:
        train_saes(make_saes(), bad, config(checkpoint_every=0), progress=False)
    except SpadeLensError as err:
        record["error"] = str(err)
    torch.save(record, folder / f"rank{rank}.pt")


def test_two_ranks_equal_one_process_on_the_combined_batches_and_resume_after_ctrl_c(tmp_path):
    run_ranks(_ranks_train, 2, tmp_path, None)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    single = make_saes()
    found = train_saes(single, combined_batches(), config(), out_dir=tmp_path / "single", progress=False)
    reference = states(single)
    for name in ARCH_KWARGS:
        for key, want in reference[name].items():
            for r in range(2):  # every rank holds the same weights, those of one process on the combined batch
                got = ranks[r]["full"][name][key]
                assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), (name, key, r, (got - want).abs().max())
            assert torch.equal(ranks[0]["full"][name][key], ranks[1]["full"][name][key])
            # the resumed run is the uninterrupted one, bit for bit
            assert torch.equal(ranks[0]["resumed"][name][key], ranks[0]["full"][name][key]), (name, key)
    assert ranks[0]["interrupted"] and ranks[1]["interrupted"]
    assert ranks[0]["cut_step"] == 7  # the step both ranks had finished when rank 1 got Ctrl-C
    assert found["topk"]["dead_fraction"] > 0 or any(
        json.loads(line)["dead_fraction"] > 0 for line in (tmp_path / "single" / "log.jsonl").read_text().splitlines()
        if json.loads(line)["sae"] == "topk"), "the test should exercise AuxK on dead latents"
    # rank 0 alone wrote the log: one line per SAE and logged step
    lines = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert len(lines) == len(ARCH_KWARGS) * (STEPS // 2)
    assert (tmp_path / "full" / "spade" / "cfg.json").is_file()
    # losses logged by the ranks are those of the combined batch
    single_lines = [json.loads(line) for line in (tmp_path / "single" / "log.jsonl").read_text().splitlines()]
    for a, b in zip(lines, single_lines, strict=True):
        assert a["tokens"] == b["tokens"] and abs(a["mse_loss"] - b["mse_loss"]) <= 1e-3 * abs(b["mse_loss"]) + 1e-4
    for r in range(2):
        assert ranks[r]["short_steps"] == 5
        assert ranks[r]["short_warning"] and "on some rank" in ranks[r]["short_warning"][0]
    assert "non-finite activations" in ranks[1]["error"] and "step 4" in ranks[1]["error"]
    assert "on another rank" in ranks[0]["error"] and "step 4" in ranks[0]["error"]
