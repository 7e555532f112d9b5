"""harvest on 2 ranks (gloo): one cache with one manifest holding the rows of a single-process harvest; a part cut
short and a join cut short both resume; the slices are planned from token counts."""

from __future__ import annotations

import json

import pytest
import torch
from _distributed_helpers import run_ranks
from _hooks_helpers import HOOK, coded_dataset, coded_source, tiny_ht
from _training_helpers import one_torch_thread  # noqa: F401 (autouse fixture)

from hooks import ActivationCache, HooksError, harvest
from hooks.harvest_parallel import kept_tokens, plan_slices

SETTINGS = dict(shard_tokens=40, batch_size=4, exclude_token_ids=[0, 5], progress=False)


def _ranks_harvest(rank: int, world_size: int, folder, _: object) -> None:
    import importlib

    harvest_module = importlib.import_module("hooks.harvest")  # the module (hooks.harvest is the function)
    parallel_module = importlib.import_module("hooks.harvest_parallel")
    model, ds = tiny_ht(), coded_dataset(60, seed=3)
    record: dict = {}
    harvest(model, ds, [HOOK], folder / "whole", **SETTINGS)
    harvest(model, ds, [HOOK], folder / "cut", max_tokens=300, **SETTINGS)
    harvest(model, coded_source(30, seed=4), [HOOK], folder / "mapping", **SETTINGS)

    # rank 1's part stops after its first shard: every rank stops; run again, it resumes
    write_shard, calls = harvest_module._write_shard, []

    def failing(*args, **kwargs):
        calls.append(1)
        if rank == 1 and len(calls) == 2:
            raise OSError("disk full (on purpose)")
        return write_shard(*args, **kwargs)

    harvest_module._write_shard = failing
    try:
        harvest(model, ds, [HOOK], folder / "resumed", max_tokens=300, **SETTINGS)
    except (OSError, HooksError) as err:
        record["part_error"] = str(err)
    harvest_module._write_shard = write_shard
    harvest(model, ds, [HOOK], folder / "resumed", max_tokens=300, **SETTINGS)

    # the join stops after rank 0's part: run again, it finishes the join without harvesting again
    move = parallel_module._move_part

    def cut_join(root, part, manifest, offset):
        if part.name == "rank-1":
            raise OSError("killed mid-join (on purpose)")
        return move(root, part, manifest, offset)

    parallel_module._move_part = cut_join
    try:
        harvest(model, ds, [HOOK], folder / "joined", **SETTINGS)
    except (OSError, HooksError) as err:
        record["join_error"] = str(err)
    parallel_module._move_part = move
    calls.clear()
    harvest_module._write_shard = failing  # would fail on rank 1 if its part were harvested again
    harvest(model, ds, [HOOK], folder / "joined", **SETTINGS)
    harvest_module._write_shard = write_shard
    torch.save(record, folder / f"rank{rank}.pt")


def assert_same_rows(got: ActivationCache, want: ActivationCache) -> None:
    a, b = got.load(HOOK), want.load(HOOK)
    assert got.n_tokens == want.n_tokens and got.complete
    assert sorted(a.labels) == sorted(b.labels)
    for key in b.labels:  # the same tokens, in the same order, with the same labels and sequence numbers
        assert torch.equal(a.labels[key], b.labels[key]), key
    assert torch.allclose(a.acts, b.acts, atol=1e-6)
    assert got.metadata["n_sequences"] == want.metadata["n_sequences"]
    for key in ("model", "hook_names", "excluded_token_ids", "max_tokens", "source", "dims", "label_names"):
        assert got.metadata[key] == want.metadata[key], key


def test_two_ranks_harvest_the_rows_of_one_process_into_one_cache(tmp_path):
    run_ranks(_ranks_harvest, 2, tmp_path, None)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    model, ds = tiny_ht(), coded_dataset(60, seed=3)
    single = {
        "whole": harvest(model, ds, [HOOK], tmp_path / "single-whole", **SETTINGS),
        "cut": harvest(model, ds, [HOOK], tmp_path / "single-cut", max_tokens=300, **SETTINGS),
        "mapping": harvest(model, coded_source(30, seed=4), [HOOK], tmp_path / "single-mapping", **SETTINGS),
    }
    single["resumed"], single["joined"] = single["cut"], single["whole"]
    for name, want in single.items():
        got = ActivationCache(tmp_path / name)
        assert_same_rows(got, want)
        assert not (tmp_path / name / "parts").exists() and (tmp_path / name / "provenance.json").is_file()
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert "parallel" not in manifest and [s["index"] for s in manifest["shards"]] == list(range(len(
            manifest["shards"])))
        record = json.loads((tmp_path / name / "provenance.json").read_text())
        assert record["settings"]["ranks"] == 2
    assert single["cut"].n_tokens == 300
    assert "disk full" in ranks[1]["part_error"] and "rank 1 stopped with OSError" in ranks[0]["part_error"]
    assert "killed mid-join" in ranks[0]["join_error"] and "rank 0 stopped" in ranks[1]["join_error"]
    # a single process does not take over a harvest begun on 2 ranks
    (tmp_path / "begun").mkdir()
    manifest = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    manifest.update(complete=False, parallel={"ranks": 2, "slices": [], "joining": False})
    (tmp_path / "begun" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HooksError, match="begun on 2 process"):
        harvest(model, ds, [HOOK], tmp_path / "begun", max_tokens=300, **SETTINGS)


def test_slices_cover_the_rows_of_one_process_in_about_equal_parts():
    counts = torch.tensor([3, 0, 5, 2, 7, 1, 4])
    assert plan_slices(counts, None, 2) == [[0, 4, None], [4, 7, None]]  # 10 rows, then 12
    assert plan_slices(counts, 9, 2) == [[0, 2, None], [2, 4, 6]]  # 9 rows: 3, then 5 and 1 of sequence 3's 2
    assert plan_slices(counts, 3, 3) == [[0, 0, None], [0, 1, 3], [1, 1, None]]  # one sequence for 3 ranks
    source = {"input_ids": [[1, 0, 2], [5, 5], [3]]}
    assert kept_tokens(source, [0, 5]).tolist() == [2, 0, 1]
