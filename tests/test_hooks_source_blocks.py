"""A datasets split is read in blocks of batches (hooks.source.Ragged): the chunks, rows and labels are those of
the same sequences given as Python lists, whatever the block and batch boundaries."""

from __future__ import annotations

import pytest
import torch
from _hooks_helpers import HOOK, coded_dataset, coded_sequences, tiny_ht

import hooks.source as source_mod
from hooks import HooksError, capture_activations
from hooks.source import Ragged, iter_chunks


@pytest.mark.parametrize(("batch_size", "start", "block"), [(3, 0, 2), (4, 5, 1), (5, 2, 32), (40, 0, 2)])
def test_dataset_chunks_equal_list_chunks(monkeypatch, batch_size, start, block):
    monkeypatch.setattr(source_mod, "BLOCK_BATCHES", block)
    ds = coded_dataset(23, seed=4)
    ids, codes = coded_sequences(23, 4)
    lists = {"input_ids": ids, "kind": [[t % 3 for t in row] for row in ids], "code": codes}
    got = list(iter_chunks(ds, batch_size=batch_size, label_columns=None, start_sequence=start))
    want = list(iter_chunks(lists, batch_size=batch_size, label_columns=["kind", "code"], start_sequence=start))
    assert len(got) == len(want) == -(-(23 - start) // batch_size)
    for a, b in zip(got, want, strict=True):
        assert a.seq_start == b.seq_start
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.valid, b.valid)
        assert sorted(a.labels) == ["code", "kind"]
        for name in a.labels:
            assert torch.equal(a.labels[name], b.labels[name]), name


def test_capture_rows_and_labels_unchanged_across_blocks(monkeypatch):
    ds = coded_dataset(17, seed=2)
    model = tiny_ht()
    monkeypatch.setattr(source_mod, "BLOCK_BATCHES", 1)
    one = list(capture_activations(model, ds, [HOOK], batch_size=4))
    monkeypatch.setattr(source_mod, "BLOCK_BATCHES", 3)
    three = list(capture_activations(model, ds, [HOOK], batch_size=4))
    ids, codes = coded_sequences(17, 2)
    from_lists = list(capture_activations(model, {"input_ids": ids, "code": codes}, [HOOK], batch_size=4))
    assert len(one) == len(three) == len(from_lists) == 5
    for a, b, c in zip(one, three, from_lists, strict=True):
        assert torch.equal(a.acts[HOOK], b.acts[HOOK]) and torch.equal(a.acts[HOOK], c.acts[HOOK])
        assert torch.equal(a.labels["code"], c.labels["code"]) and torch.equal(a.seq_index, c.seq_index)
        assert torch.equal(a.labels["kind"], b.labels["kind"])
        assert torch.equal(a.labels["code"] // 1000, a.seq_index) and torch.equal(a.labels["code"] % 1000,
                                                                                   a.positions)


def test_ragged_rows_and_pad():
    import numpy as np

    r = Ragged(np.array([1, 2, 3, 4, 5, 6], dtype=np.int64), np.array([0, 2, 2, 6], dtype=np.int64))
    padded, lengths = r.rows(1, 3).pad(-1)
    assert lengths.tolist() == [0, 4]
    assert padded.tolist() == [[-1, -1, -1, -1], [3, 4, 5, 6]]
    assert len(r.rows(2, 99)) == 1


def test_column_with_nulls_falls_back_to_rows():
    from datasets import Dataset

    ds = Dataset.from_dict({"input_ids": [[1, 2], [3], [4, 5, 6]], "tag": [[1, 1], None, [0, 0, 1]]})
    with pytest.raises(HooksError, match="tag: expected sequences of integer ids"):  # named, as before
        list(iter_chunks(ds, batch_size=3, label_columns=["tag"]))
