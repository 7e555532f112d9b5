"""ShuffleBuffer (epoch, endless, seeded, labels aligned) and NormStats."""

from __future__ import annotations

import pytest
import torch

from hooks import HooksError, LabelledBatch, NormStats, ShuffleBuffer, estimate_norm_stats


def _chunks(n_rows: int = 203, chunk: int = 17, d: int = 3) -> list[LabelledBatch]:
    """Rows whose every value encodes the row number, so alignment can be checked after shuffling."""
    ids = torch.arange(n_rows)
    acts = ids[:, None].float() * torch.ones(d)  # (rows, d): row r is all r
    return [LabelledBatch(acts[i:i + chunk], {"row": ids[i:i + chunk], "twice": 2 * ids[i:i + chunk]})
            for i in range(0, n_rows, chunk)]


def test_epoch_gives_every_row_once_shuffled_and_aligned():
    batches = list(ShuffleBuffer(_chunks(), capacity=64, batch_size=10, seed=0))
    assert all(len(b) == 10 for b in batches[:-1]) and 0 < len(batches[-1]) <= 10
    rows = torch.cat([b.labels["row"] for b in batches])
    assert sorted(rows.tolist()) == list(range(203))
    assert not torch.equal(rows, torch.arange(203))  # shuffled
    for b in batches:
        assert torch.equal(b.acts[:, 0].long(), b.labels["row"]) and torch.equal(b.labels["twice"], 2 * b.labels["row"])


def test_same_seed_same_batches_other_seed_other_order():
    def rows(seed):
        return torch.cat([b.labels["row"] for b in ShuffleBuffer(_chunks(), capacity=64, batch_size=8, seed=seed)])

    assert torch.equal(rows(3), rows(3))
    assert not torch.equal(rows(3), rows(4))


def test_mixing_reaches_beyond_one_chunk():
    first = next(iter(ShuffleBuffer(_chunks(), capacity=100, batch_size=20, seed=0)))
    assert int(first.labels["row"].max()) >= 17  # rows from several source chunks


def test_endless_restarts_a_reiterable_source_and_callables():
    for source in (_chunks(40, 7), lambda: iter(_chunks(40, 7))):
        it = iter(ShuffleBuffer(source, capacity=16, batch_size=8, seed=0, endless=True))
        rows = torch.cat([next(it).labels["row"] for _ in range(20)])  # 160 rows = 4 passes
        assert len(rows) == 160 and set(rows.tolist()) == set(range(40))
        counts = torch.bincount(rows, minlength=40)
        assert int(counts.min()) >= 2  # each row served again on later passes


def test_buffer_errors():
    with pytest.raises(HooksError, match="capacity: expected at least 2 \\* batch_size = 20 rows, got 10"):
        ShuffleBuffer(_chunks(), capacity=10, batch_size=10)
    with pytest.raises(HooksError, match="batch_size: expected a positive integer, got 0"):
        ShuffleBuffer(_chunks(), capacity=10, batch_size=0)
    with pytest.raises(HooksError, match="endless=True needs a re-iterable source"):
        list(ShuffleBuffer(iter(_chunks(20, 5)), capacity=8, batch_size=4, endless=True))
    mixed = [*_chunks(20, 5), LabelledBatch(torch.zeros(4, 5), {"row": torch.zeros(4, dtype=torch.long),
                                                               "twice": torch.zeros(4, dtype=torch.long)})]
    with pytest.raises(HooksError, match=r"same width and label keys; got width \(5,\)"):
        list(ShuffleBuffer(mixed, capacity=8, batch_size=4))


def test_norm_stats_give_unit_scale_per_dimension():
    gen = torch.Generator().manual_seed(0)
    x = 100 + 3 * torch.randn(5000, 8, generator=gen)  # large common mean
    stats = estimate_norm_stats(x)
    y = stats.apply(x)
    assert abs(float((y * y).sum(1).mean()) - 8) < 1e-3
    torch.testing.assert_close(stats.invert(y), x)
    again = NormStats.from_dict(stats.to_dict())
    torch.testing.assert_close(again.mean, stats.mean)
    assert again.scale == pytest.approx(stats.scale)
    streamed = estimate_norm_stats([LabelledBatch(x[i:i + 700], {}) for i in range(0, 5000, 700)])
    torch.testing.assert_close(streamed.mean, stats.mean)
    assert streamed.scale == pytest.approx(stats.scale, rel=1e-9)
    assert estimate_norm_stats([x[:100], x[100:]], n_max=150).mean.shape == (8,)


def test_norm_stats_errors():
    with pytest.raises(HooksError, match="sample: expected at least 2 rows"):
        estimate_norm_stats(torch.zeros(1, 4))
    with pytest.raises(HooksError, match="rows are all equal"):
        estimate_norm_stats(torch.ones(10, 4))
    with pytest.raises(HooksError, match=r"sample: expected \(n, d\) tensors"):
        estimate_norm_stats(torch.ones(10))
    with pytest.raises(HooksError, match="scale: expected a positive finite float, got 0.0"):
        NormStats(torch.zeros(3), 0.0)
    with pytest.raises(HooksError, match="data: expected a dict with keys 'mean' and 'scale'"):
        NormStats.from_dict({"mean": [0.0]})


def _compacting_buffer(chunks, capacity, batch_size, seed):
    """The plain algorithm: fill, serve a random half, move the kept rows to the front, refill (one epoch)."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.cat([c.acts for c in chunks])
    held, at = rows[:0], 0
    while True:
        take = capacity - len(held)
        held, at = torch.cat([held, rows[at:at + take]]), at + take
        exhausted = at >= len(rows)
        if len(held) == 0:
            return
        perm = torch.randperm(len(held), generator=gen)
        out = len(held) if exhausted else max(len(held) // 2 // batch_size, 1) * batch_size
        for i in range(0, out, batch_size):
            yield held[perm[i:min(i + batch_size, out)]]
        held = held[perm[out:]]


def test_buffer_batches_equal_the_plain_compacting_algorithm():
    g = torch.Generator().manual_seed(0)
    chunks = [LabelledBatch(torch.randn(n, 3, generator=g), {"i": torch.arange(n)}) for n in (7, 30, 1, 22, 13)]
    for capacity, batch in ((16, 4), (20, 3), (64, 8)):
        got = [b.acts for b in ShuffleBuffer(chunks, capacity=capacity, batch_size=batch, seed=3)]
        want = list(_compacting_buffer(chunks, capacity, batch, seed=3))
        assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
