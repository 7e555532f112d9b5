"""Batching, padding-exact loss, batch order, optimiser groups and the schedule."""

import math

import pytest
import torch
from _lm_helpers import TINY, one_thread

from spade_lens.errors import SpadeLensError
from spade_lens.lm.config import LMTrainConfig, resolve_config
from spade_lens.lm.data import BatchOrder, epoch_batches, lm_loss, lm_targets, pad_sequences, take
from spade_lens.lm.model import build_model
from spade_lens.lm.optim import lr_factor, param_groups


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def test_padded_batch_loss_equals_unpadded_sequence_losses():
    cfg = resolve_config(TINY, longest_sequence=9, vocab_size=20)
    model = build_model(cfg)
    seqs = [[1, 5, 6, 7, 2], [1, 8, 2], [1, 9, 10, 11, 12, 13, 14, 15, 2]]
    batch = pad_sequences(seqs, pad_id=0)
    assert batch.tokens.shape == (3, 9) and batch.lengths.tolist() == [5, 3, 9]
    padded = lm_loss(model(batch.tokens), lm_targets(batch.tokens, batch.lengths), reduction="sum")
    unpadded = sum(
        lm_loss(model(torch.tensor([s])), lm_targets(torch.tensor([s]), torch.tensor([len(s)])), reduction="sum")
        for s in seqs
    )
    torch.testing.assert_close(padded, unpadded)
    targets = lm_targets(batch.tokens, batch.lengths)
    assert int((targets != -100).sum()) == sum(len(s) - 1 for s in seqs)  # EOS predicted, pads not


def test_batch_order_is_seeded_and_covers_each_item_once_per_epoch():
    lengths = torch.randint(3, 30, (100,), generator=torch.Generator().manual_seed(0))
    a, b = BatchOrder(lengths, 10, seed=1, sort_window=4), BatchOrder(lengths, 10, seed=1, sort_window=4)
    first = torch.cat([a.indices(s) for s in range(10)])
    assert sorted(first.tolist()) == list(range(100))
    assert torch.equal(first, torch.cat([b.indices(s) for s in range(10)]))
    assert not torch.equal(a.indices(10), a.indices(0))  # the next epoch is reshuffled
    assert torch.equal(a.indices(13), b.indices(13)) and torch.equal(a.indices(3), b.indices(3))  # random access
    other = torch.cat([BatchOrder(lengths, 10, seed=2).indices(s) for s in range(10)])
    assert not torch.equal(first, other)


def test_sorting_windows_reduce_padding():
    lengths = torch.randint(3, 40, (640,), generator=torch.Generator().manual_seed(0))

    def padded(sort_window):
        batches = epoch_batches(lengths, 32, seed=0, epoch=0, sort_window=sort_window)
        return int(lengths[batches].max(dim=1).values.sum()) * 32

    assert padded(20) < 0.7 * padded(1)


def test_take_trims_to_the_longest_sequence_of_the_batch():
    data = pad_sequences([[1, 2], [1, 4, 5, 2], [1, 4, 5, 6, 7, 8, 2]], pad_id=0)
    batch = take(data, torch.tensor([0, 1]))
    assert batch.tokens.shape == (2, 4)


def test_weight_decay_only_on_weight_matrices():
    model = build_model(resolve_config(TINY, longest_sequence=9, vocab_size=20))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "unembed.W_U" in decayed and "blocks.0.attn.W_Q" in decayed and "blocks.0.mlp.W_in" in decayed
    assert not decayed & {"embed.W_E", "pos_embed.W_pos", "blocks.0.ln1.w", "unembed.b_U"}
    assert no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = LMTrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(s, cfg) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert factors[-1] == pytest.approx(0.1)
    assert lr_factor(54, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 44 / 89)))


def test_model_needs_a_resolved_config():
    with pytest.raises(SpadeLensError, match=r"LMConfig\.n_ctx: got None; expected an integer"):
        build_model(TINY)
