"""harvest + ActivationCache: exact round trip, shuffled reading, resume after a crash, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from _hooks_helpers import (
    HOOK,
    FailingBatches,
    coded_dataset,
    coded_source,
    padded_batches,
    tiny_bridge,
    tiny_ht,
)

from hooks import ActivationCache, HooksError, capture_activations, harvest

HOOK1 = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def model():
    return tiny_ht()


def test_round_trip_is_exact_and_metadata_complete(model, tmp_path):
    ds = coded_dataset(30)
    cache = harvest(model, ds, [HOOK, HOOK1], tmp_path / "c", shard_tokens=40, batch_size=4, progress=False)
    direct = list(capture_activations(model, ds, [HOOK, HOOK1], batch_size=4))
    assert cache.n_tokens == sum(map(len, direct)) and len(cache.shard_rows) > 2
    for hook in (HOOK, HOOK1):
        loaded = cache.load(hook)
        assert torch.equal(loaded.acts, torch.cat([b.acts[hook] for b in direct]))
        assert torch.equal(loaded.labels["seq_index"], torch.cat([b.seq_index for b in direct]))
        assert torch.equal(loaded.labels["kind"], torch.cat([b.labels["kind"] for b in direct]))
    assert cache.d_in == 16 and cache.dims == {HOOK: 16, HOOK1: 16} and cache.complete
    assert cache.label_names == {"kind": ["a", "b", "c"]} and cache.label_columns == ["kind", "code"]
    meta = cache.metadata
    assert meta["model"]["class"] == "HookedTransformer" and meta["hook_names"] == [HOOK, HOOK1]
    assert meta["dtype"] == "torch.float32" and "shards" not in meta
    assert sorted(p.name for p in (tmp_path / "c").rglob("*.tmp-*")) == []


def test_shuffled_batches_cover_every_row_once_with_labels_aligned(model, tmp_path):
    cache = harvest(model, coded_source(40), [HOOK], tmp_path / "c", shard_tokens=30, batch_size=4,
                    progress=False)
    full = cache.load(HOOK)
    batches = list(cache.batches(HOOK, 16, seed=1))
    assert all(len(b) == 16 for b in batches[:-1])
    rows = torch.cat([b.labels["code"] for b in batches])
    assert sorted(rows.tolist()) == sorted(full.labels["code"].tolist())
    assert not torch.equal(rows, full.labels["code"])  # shuffled across the epoch
    lookup = {int(c): i for i, c in enumerate(full.labels["code"])}
    for b in batches:
        assert torch.equal(b.labels["code"], b.labels["seq_index"] * 1000 + b.labels["position"])
        assert torch.equal(b.acts, full.acts[[lookup[int(c)] for c in b.labels["code"]]])
    again = torch.cat([b.labels["code"] for b in cache.batches(HOOK, 16, seed=1)])
    assert torch.equal(rows, again)
    ordered = torch.cat([b.acts for b in cache.batches(HOOK, 16, shuffle=False)])
    assert torch.equal(ordered, full.acts)
    stats = cache.norm_stats(HOOK, n=10_000)
    assert stats.d == 16 and stats.scale > 0


def test_interrupted_harvest_resumes_without_duplicates_or_gaps(model, tmp_path):
    batches = padded_batches(40, batch=4)  # 10 forward batches
    ref = harvest(model, FailingBatches(batches), [HOOK], tmp_path / "ref", shard_tokens=20, progress=False)
    with pytest.raises(RuntimeError, match="failed on purpose"):
        harvest(model, FailingBatches(batches, fail_after=6), [HOOK], tmp_path / "c", shard_tokens=20,
                progress=False)
    partial = ActivationCache(tmp_path / "c", allow_incomplete=True)
    assert not partial.complete and 0 < partial.n_tokens < ref.n_tokens
    with pytest.raises(HooksError, match="is incomplete .* run the same harvest again to resume"):
        ActivationCache(tmp_path / "c")
    resumed = harvest(model, FailingBatches(batches), [HOOK], tmp_path / "c", shard_tokens=20, progress=False)
    got, want = resumed.load(HOOK), ref.load(HOOK)
    codes = got.labels["code"].tolist()
    assert len(codes) == len(set(codes)) == ref.n_tokens  # no duplicates, no gaps
    assert torch.equal(got.labels["code"], want.labels["code"]) and torch.equal(got.acts, want.acts)


def test_resume_on_a_dataset_source_and_finished_harvest_is_reused(model, tmp_path):
    ds = coded_dataset(24)
    ref = harvest(model, ds, [HOOK], tmp_path / "ref", shard_tokens=10, batch_size=3, progress=False)
    manifest = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    manifest["shards"], manifest["complete"] = manifest["shards"][:2], False  # as if killed after 2 shards
    manifest["n_tokens"] = sum(s["n_rows"] for s in manifest["shards"])
    manifest["n_sequences"] = manifest["shards"][-1]["seq_stop"]
    (tmp_path / "ref" / "manifest.json").write_text(json.dumps(manifest))
    resumed = harvest(model, ds, [HOOK], tmp_path / "ref", shard_tokens=10, batch_size=3, progress=False)
    assert resumed.n_tokens == ref.n_tokens and torch.equal(resumed.load(HOOK).acts, ref.load(HOOK).acts)
    mtime = (tmp_path / "ref" / "manifest.json").stat().st_mtime_ns
    harvest(model, ds, [HOOK], tmp_path / "ref", progress=False)  # complete: nothing recomputed
    assert (tmp_path / "ref" / "manifest.json").stat().st_mtime_ns == mtime


def test_max_tokens_is_exact(model, tmp_path):
    cache = harvest(model, coded_source(30), [HOOK], tmp_path / "c", max_tokens=50, shard_tokens=16,
                    batch_size=4, progress=False)
    assert cache.n_tokens == 50 and sum(cache.shard_rows) == 50 and len(cache.load(HOOK)) == 50


def test_bridge_model_harvest_and_fp16_storage(tmp_path):
    bridge = tiny_bridge()
    cache = harvest(bridge, coded_source(10), [HOOK, "hook_embed"], tmp_path / "c", dtype=torch.float16,
                    progress=False)
    direct = torch.cat([b.acts[HOOK] for b in capture_activations(bridge, coded_source(10), [HOOK])])
    got = cache.load(HOOK).acts
    assert got.dtype == torch.float16 and torch.equal(got, direct.half())
    assert cache.metadata["model"]["class"] == "TransformerBridge"


def test_cache_refusals(model, tmp_path):
    harvest(model, coded_source(8), [HOOK], tmp_path / "c", progress=False)
    with pytest.raises(HooksError, match="holds a harvest with other model"):
        harvest(tiny_ht(seed=1), coded_source(8), [HOOK], tmp_path / "c", progress=False)
    with pytest.raises(HooksError, match="holds a harvest with other hook_names"):
        harvest(model, coded_source(8), [HOOK1], tmp_path / "c", progress=False)
    with pytest.raises(HooksError, match="holds a harvest with other max_tokens"):
        harvest(model, coded_source(8), [HOOK], tmp_path / "c", max_tokens=5, progress=False)
    with pytest.raises(HooksError, match="holds a harvest with label columns \\['code'\\], now \\[\\]"):
        harvest(model, coded_source(8), [HOOK], tmp_path / "c", label_columns=[], progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(HooksError, match="exists and is not an activation cache"):
        harvest(model, coded_source(8), [HOOK], tmp_path / "other", progress=False)
    with pytest.raises(HooksError, match="is not an activation cache folder"):
        ActivationCache(tmp_path / "other")
    (tmp_path / "other" / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(HooksError, match="is not an activation-cache manifest"):
        ActivationCache(tmp_path / "other")
    cache = ActivationCache(tmp_path / "c")
    cache.check_model(model)
    with pytest.raises(HooksError, match="model: this cache in .* was harvested from .*, not from the given model"):
        cache.check_model(tiny_ht(seed=1))
    with pytest.raises(HooksError, match=r"hook_name: 'blocks.1.hook_resid_post' is not in this cache"):
        next(cache.batches(HOOK1, 4))
    with pytest.raises(HooksError, match="batch_size: expected a positive integer"):
        cache.batches(HOOK, 0)
    with pytest.raises(HooksError, match="shard_tokens: expected a positive integer, got 0"):
        harvest(model, coded_source(8), [HOOK], tmp_path / "d", shard_tokens=0, progress=False)
    with pytest.raises(HooksError, match="hook_names: 'blocks.9.hook_resid_post' is not a hook point"):
        harvest(model, coded_source(8), ["blocks.9.hook_resid_post"], tmp_path / "d", progress=False)
    with pytest.raises(HooksError, match="source: expected a token tensor"):
        harvest(model, 3, [HOOK], tmp_path / "d", progress=False)
    with pytest.raises(HooksError, match="batch_size: expected a positive integer, got -1"):
        harvest(model, coded_source(8), [HOOK], tmp_path / "d", batch_size=-1, progress=False)
    assert not (tmp_path / "d").exists()  # bad arguments are refused before the folder is made


def test_a_cache_is_reused_only_for_its_own_source(model, tmp_path):
    ds = coded_dataset(12)
    harvest(model, ds.select(range(6)), [HOOK], tmp_path / "c", progress=False)
    with pytest.raises(HooksError, match="holds a harvest of another source .*; use another folder, or pass "
                                         "overwrite=True"):
        harvest(model, ds.select(range(6, 12)), [HOOK], tmp_path / "c", progress=False)
    with pytest.raises(HooksError, match="holds a harvest of another source"):
        harvest(model, coded_source(8), [HOOK], tmp_path / "c", progress=False)
    again = harvest(model, coded_source(8), [HOOK], tmp_path / "c", progress=False, overwrite=True)
    assert again.metadata["source"]["kind"] == "mapping" and again.n_tokens == sum(
        len(r) for r in coded_source(8)["input_ids"])
    assert json.loads((tmp_path / "c" / "provenance.json").read_text())["inputs"]["source"]["kind"] == "mapping"


def test_a_cache_of_an_earlier_version_is_reused_with_a_note(model, tmp_path):
    harvest(model, coded_source(8), [HOOK], tmp_path / "c", progress=False)
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    del manifest["source"]  # earlier versions did not record it
    (tmp_path / "c" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="did not record its source"):
        cache = harvest(model, coded_source(8), [HOOK], tmp_path / "c", progress=False)
    assert cache.n_tokens == manifest["n_tokens"]


def test_the_source_tokenizer_must_be_the_models(tmp_path):
    from pcfg import Tokenizer

    model = tiny_ht()
    words = [f"w{i}" for i in range(16)]  # 20 tokens with the specials, the tiny model's d_vocab
    model.tokenizer = Tokenizer(words).to_hf()
    with pytest.raises(HooksError, match="source_tokenizer: the source's token ids come from another tokenizer"):
        harvest(model, coded_source(4), [HOOK], tmp_path / "c", progress=False,
                source_tokenizer=Tokenizer(words[::-1]))
    cache = harvest(model, coded_source(4), [HOOK], tmp_path / "c", progress=False,
                    source_tokenizer=Tokenizer(words))
    assert cache.metadata["tokenizer"] is not None
    with pytest.raises(HooksError, match="without a vocabulary"):
        harvest(model, coded_source(4), [HOOK], tmp_path / "d", progress=False, source_tokenizer=3.5)


def test_damaged_shards_are_named(model, tmp_path):
    cache = harvest(model, coded_source(8), [HOOK], tmp_path / "c", shard_tokens=8, batch_size=2, progress=False)
    shard = sorted((tmp_path / "c" / "acts").rglob("*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:50])
    with pytest.raises(HooksError, match=r"is damaged: acts/blocks.0.hook_resid_post/shard-00001.safetensors has 50 "
                                         r"bytes, \d+ were written"):
        ActivationCache(tmp_path / "c")
    shard.unlink()
    with pytest.raises(HooksError, match="shard-00001.safetensors is missing"):
        ActivationCache(tmp_path / "c")
    assert cache.n_tokens > 0


def _old_batches(cache, hook, batch_size, seed):
    """The reading of earlier versions: whole shards in a seeded order through a buffer of two shards."""
    from hooks import ShuffleBuffer

    order = torch.randperm(len(cache.shard_rows), generator=torch.Generator().manual_seed(seed)).tolist()
    capacity = max(2 * max(cache.shard_rows), 2 * batch_size)
    return ShuffleBuffer(lambda: (cache.read_shard(hook, i) for i in order), capacity=capacity,
                         batch_size=batch_size, seed=seed)


def test_reading_in_small_pieces_gives_the_batches_of_whole_shards(model, tmp_path, monkeypatch):
    import hooks.cache

    cache = harvest(model, coded_source(40), [HOOK], tmp_path / "c", shard_tokens=30, batch_size=4,
                    progress=False)
    want = [b.labels["code"] for b in _old_batches(cache, HOOK, 8, seed=2)]
    monkeypatch.setattr(hooks.cache, "CHUNK_BYTES", 16 * 4 * 7)  # 7 rows per read: shards cut in several pieces
    got = list(cache.batches(HOOK, 8, seed=2))
    assert len(got) == len(want) and all(torch.equal(g.labels["code"], w) for g, w in zip(got, want, strict=True))
    full = cache.load(HOOK)
    assert torch.equal(torch.cat([b.acts for b in cache.batches(HOOK, 5, shuffle=False)]), full.acts)
    piece = cache.read_rows(HOOK, 1, 3, 9)
    assert torch.equal(piece.acts, cache.read_shard(HOOK, 1).acts[3:9]) and len(piece.labels["code"]) == 6


def test_the_buffer_is_bounded_in_bytes(model, tmp_path, monkeypatch):
    import hooks.buffer
    import hooks.cache

    cache = harvest(model, coded_source(40), [HOOK], tmp_path / "c", shard_tokens=60, batch_size=4,
                    progress=False)
    seen = []
    real = hooks.buffer.ShuffleBuffer

    def spy(*args, **kwargs):
        seen.append(kwargs["capacity"])
        return real(*args, **kwargs)

    monkeypatch.setattr(hooks.cache, "ShuffleBuffer", spy)
    monkeypatch.setattr(hooks.cache, "BUFFER_BYTES", 50 * 16 * 4)  # 50 rows of 16 float32
    list(cache.batches(HOOK, 4, seed=0))
    list(cache.batches(HOOK, 40, seed=0))
    assert seen == [50, 80]  # at most BUFFER_BYTES, never under two batches


def test_ranks_read_their_own_contiguous_shares(model, tmp_path):
    cache = harvest(model, coded_source(40), [HOOK], tmp_path / "c", shard_tokens=30, batch_size=4,
                    progress=False)
    full = cache.load(HOOK).labels["code"]
    parts = [torch.cat([b.labels["code"] for b in cache.batches(HOOK, 7, shuffle=False, rank=r, world_size=3)])
             for r in range(3)]
    assert torch.equal(torch.cat(parts), full)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    for r in range(3):
        shuffled = torch.cat([b.labels["code"] for b in cache.batches(HOOK, 7, seed=4, rank=r, world_size=3)])
        assert sorted(shuffled.tolist()) == sorted(parts[r].tolist())
    with pytest.raises(HooksError, match="rank: expected an integer in \\[0, 3\\)"):
        cache.batches(HOOK, 4, rank=3, world_size=3)
    with pytest.raises(HooksError, match="rank 0 gets none"):
        cache.batches(HOOK, 4, rank=0, world_size=cache.n_tokens + 1)
