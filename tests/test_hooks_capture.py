"""Capture: rows equal run_with_cache, labels aligned, one forward for many hooks, both model kinds, errors."""

from __future__ import annotations

import pytest
import torch
from _hooks_helpers import (
    D_VOCAB,
    HOOK,
    N_CTX,
    coded_dataset,
    coded_sequences,
    coded_source,
    padded_batches,
    tiny_bridge,
    tiny_ht,
)

from hooks import ActivationBatch, HooksError, capture_activations
from hooks.capture import stop_layer

HOOKS = [HOOK, "hook_embed", "blocks.1.mlp.hook_post", "blocks.0.attn.hook_z", "ln_final.hook_normalized"]


@pytest.fixture(scope="module", params=["ht", "bridge"])
def model(request):
    return tiny_ht() if request.param == "ht" else tiny_bridge()


def _cat(batches: list[ActivationBatch]) -> ActivationBatch:
    return ActivationBatch(
        {k: torch.cat([b.acts[k] for b in batches]) for k in batches[0].acts},
        torch.cat([b.token_ids for b in batches]), torch.cat([b.positions for b in batches]),
        torch.cat([b.seq_index for b in batches]),
        {k: torch.cat([b.labels[k] for b in batches]) for k in batches[0].labels},
        (batches[0].seq_range[0], batches[-1].seq_range[1]))


def test_rows_equal_run_with_cache_and_carry_their_labels(model):
    ids, _ = coded_sequences()
    got = _cat(list(capture_activations(model, coded_source(), HOOKS, batch_size=5)))
    assert len(got) == sum(map(len, ids))  # no tokenizer: nothing excluded
    assert torch.equal(got.labels["code"], got.seq_index * 1000 + got.positions)
    for seq in (0, 3, 11):
        _, cache = model.run_with_cache(torch.tensor([ids[seq]]), names_filter=lambda n: n in HOOKS)
        rows = got.seq_index == seq
        assert torch.equal(got.positions[rows], torch.arange(len(ids[seq])))
        assert torch.equal(got.token_ids[rows], torch.tensor(ids[seq]))
        for hook in HOOKS:
            ref = cache[hook][0].reshape(len(ids[seq]), -1)  # (pos, d)
            torch.testing.assert_close(got.acts[hook][rows], ref, atol=1e-5, rtol=1e-5)


def test_two_hooks_in_one_forward_equal_two_separate_captures(model):
    both = list(capture_activations(model, coded_source(), [HOOK, "blocks.1.hook_resid_post"], batch_size=4))
    for hook in (HOOK, "blocks.1.hook_resid_post"):
        alone = list(capture_activations(model, coded_source(), [hook], batch_size=4))
        assert len(alone) == len(both)
        for a, b in zip(alone, both, strict=True):
            assert torch.equal(a.acts[hook], b.acts[hook])
            assert torch.equal(a.seq_index, b.seq_index) and torch.equal(a.positions, b.positions)


def test_one_forward_per_batch_stopping_after_the_last_needed_block():
    model = tiny_ht()
    calls = []
    model.blocks[1].register_forward_hook(lambda *_: calls.append(1))
    n = len(list(capture_activations(model, coded_source(), [HOOK, "hook_embed"], batch_size=4)))
    assert n == 3 and calls == []  # block 1 never ran
    list(capture_activations(model, coded_source(), ["blocks.1.hook_resid_post", HOOK], batch_size=4))
    assert len(calls) == 3  # one forward per batch for both hooks


def test_no_hook_outlives_its_call_and_user_hooks_are_left_alone(model):
    seen = []
    with model.hooks(fwd_hooks=[(HOOK, lambda act, hook: seen.append(act.shape[0]))]):
        list(capture_activations(model, coded_source(), [HOOK], batch_size=4))
        assert seen == [4, 4, 4]  # the user's hook ran during capture and is still attached
        assert len(model.hook_dict[HOOK].fwd_hooks) == 1
    poison = model.hook_dict["hook_pos_embed"]
    poison.add_hook(lambda act, hook: act * float("nan"))
    try:
        with pytest.raises(HooksError, match="NaN"):  # an error mid-capture removes capture's hooks too
            list(capture_activations(model, torch.tensor([[1, 2]]), [HOOK]))
    finally:
        poison.remove_hooks("fwd")
    assert all(not p.fwd_hooks for p in model.hook_dict.values())


def test_stop_layer_choice():
    model = tiny_ht()
    assert stop_layer(model, ["hook_embed", "hook_pos_embed"]) == 0
    assert stop_layer(model, [HOOK, "hook_embed"]) == 1
    assert stop_layer(model, ["blocks.1.hook_resid_post"]) is None  # = n_layers: full forward
    assert stop_layer(model, [HOOK, "ln_final.hook_normalized"]) is None


def test_dataset_source_dataloader_batches_and_tensor_source(model):
    from_ds = _cat(list(capture_activations(model, coded_dataset(), [HOOK], batch_size=4)))
    assert set(from_ds.labels) == {"kind", "code"}
    assert torch.equal(from_ds.labels["kind"], from_ds.token_ids % 3)
    from_batches = _cat(list(capture_activations(model, padded_batches(12), [HOOK])))
    assert torch.equal(from_batches.labels["code"], from_batches.seq_index * 1000 + from_batches.positions)
    torch.testing.assert_close(from_batches.acts[HOOK], from_ds.acts[HOOK], atol=1e-5, rtol=1e-5)
    tokens = torch.randint(0, D_VOCAB, (6, 8), generator=torch.Generator().manual_seed(1))
    got = _cat(list(capture_activations(model, tokens, [HOOK], batch_size=4, label_columns=[])))
    assert got.acts[HOOK].shape == (48, 16) and got.labels == {}
    assert torch.equal(got.token_ids, tokens.reshape(-1))


def test_exclusion_of_padding_and_special_tokens():
    model = tiny_ht()
    tokens = torch.tensor([[1, 5, 6, 2, 0, 0], [1, 7, 2, 0, 0, 0]])  # BOS=1 EOS=2 PAD=0
    rows = _cat(list(capture_activations(model, tokens, [HOOK], pad_token_id=0, exclude_token_ids=[1, 2])))
    assert rows.token_ids.tolist() == [5, 6, 7]
    assert rows.positions.tolist() == [1, 2, 1] and rows.seq_index.tolist() == [0, 0, 1]
    only_pad = _cat(list(capture_activations(model, tokens, [HOOK], pad_token_id=0)))
    assert only_pad.token_ids.tolist() == [1, 5, 6, 2, 1, 7, 2]


def test_special_tokens_of_the_models_tokenizer_are_excluded_by_default():
    class Tok:  # the attributes capture reads from a Hugging Face tokenizer
        pad_token_id, bos_token_id, eos_token_id, all_special_ids = 0, 1, 2, [0, 1, 2, 3]
        padding_side = "right"

    model = tiny_ht()
    model.tokenizer = Tok()
    tokens = torch.tensor([[1, 3, 5, 6, 2, 0]])
    assert _cat(list(capture_activations(model, tokens, [HOOK]))).token_ids.tolist() == [5, 6]
    kept = _cat(list(capture_activations(model, tokens, [HOOK], exclude_token_ids=[])))
    assert kept.token_ids.tolist() == [1, 3, 5, 6, 2]  # padding stays excluded


def test_start_sequence_skips_sequences():
    model = tiny_ht()
    got = _cat(list(capture_activations(model, coded_source(), [HOOK], batch_size=4, start_sequence=5)))
    assert int(got.seq_index.min()) == 5 and got.seq_range == (5, 12)


def test_device_and_dtype_follow_the_model():
    model = tiny_ht().to(torch.float64)
    got = next(capture_activations(model, coded_source(), [HOOK]))
    assert got.acts[HOOK].dtype == torch.float64 and got.acts[HOOK].device.type == "cpu"
    assert not got.acts[HOOK].requires_grad


# --- bad input -----------------------------------------------------------------------------------------


class _Untouchable:
    def __iter__(self):
        raise AssertionError("the source must not be read")


def test_unknown_hook_fails_before_any_forward_with_close_names(model):
    with pytest.raises(HooksError, match=r"'blocks\.0\.hook_resid_pots'.*closest valid names.*blocks\.0\.hook_resid_post"):
        capture_activations(model, _Untouchable(), ["blocks.0.hook_resid_pots"])
    with pytest.raises(HooksError, match="hook_names: expected at least one"):
        capture_activations(model, _Untouchable(), [])


def test_token_outside_vocabulary(model):
    with pytest.raises(HooksError, match=r"token id 20 at sequence 1, position 2 is outside the model's "
                                         r"vocabulary \[0, 20\)"):
        list(capture_activations(model, torch.tensor([[1, 2, 3], [4, 5, 20]]), [HOOK]))
    with pytest.raises(HooksError, match="token id -3"):
        list(capture_activations(model, torch.tensor([[1, -3, 3]]), [HOOK]))


def test_sequence_longer_than_context(model):
    too_long = [[1] * 4, [2] * (N_CTX + 1)]
    with pytest.raises(HooksError, match=r"sequence 1 has 17 tokens, longer than the model's context n_ctx=16"):
        list(capture_activations(model, {"input_ids": too_long}, [HOOK]))


def test_label_column_of_wrong_length():
    src = coded_source()
    src["code"][4] = src["code"][4][:-1]
    with pytest.raises(HooksError, match=r"label column 'code': sequence 4 has \d+ labels for \d+ tokens"):
        list(capture_activations(tiny_ht(), src, [HOOK], batch_size=3))
    from datasets import Dataset

    with pytest.raises(HooksError, match=r"label column 'code': sequence 4 has \d+ labels for \d+ tokens"):
        list(capture_activations(tiny_ht(), Dataset.from_dict(src), [HOOK], batch_size=3))
    batches = padded_batches(8)
    batches[1]["code"] = batches[1]["code"][:, :-1]
    with pytest.raises(HooksError, match=r"label column 'code'.*expected one label per token"):
        list(capture_activations(tiny_ht(), batches, [HOOK]))


def test_nan_activations_name_hook_batch_and_count():
    model = tiny_ht()
    with torch.no_grad():
        model.embed.W_E[7] = float("nan")
    tokens = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 1, 1], [1, 7, 7]])
    with pytest.raises(HooksError, match=r"hook 'hook_embed' in batch 1 \(sequences from 2\) hold 48 NaN/inf"):
        list(capture_activations(model, tokens, ["hook_embed"], batch_size=2))


def test_other_bad_inputs():
    model = tiny_ht()
    with pytest.raises(HooksError, match="model: expected a TransformerLens hooked model"):
        capture_activations(torch.nn.Linear(2, 2), coded_source(), [HOOK])
    with pytest.raises(HooksError, match="batch_size: expected a positive integer, got 0"):
        capture_activations(model, coded_source(), [HOOK], batch_size=0)
    with pytest.raises(HooksError, match="hook_names: each hook may be requested once"):
        capture_activations(model, coded_source(), [HOOK, HOOK])
    with pytest.raises(HooksError, match="exclude_token_ids / pad_token_id: expected integer token ids"):
        capture_activations(model, coded_source(), [HOOK], exclude_token_ids=["<bos>"])
    with pytest.raises(HooksError, match="2-D integer tensor"):
        list(capture_activations(model, torch.rand(2, 3), [HOOK]))
    with pytest.raises(HooksError, match="label_columns: the source has no column 'nope'"):
        list(capture_activations(model, coded_source(), [HOOK], label_columns=["nope"]))
    with pytest.raises(HooksError, match="label_columns: 'position' is reserved"):
        list(capture_activations(model, {**coded_source(), "position": coded_source()["code"]}, [HOOK]))
    with pytest.raises(HooksError, match="source: expected a token tensor.*got int"):
        list(capture_activations(model, 3, [HOOK]))
    with pytest.raises(HooksError, match="pass one split"):
        from datasets import DatasetDict

        list(capture_activations(model, DatasetDict({"train": coded_dataset()}), [HOOK]))
    with pytest.raises(HooksError, match=r"'blocks\.0\.attn\.hook_pattern' gives activations of shape"):
        list(capture_activations(model, torch.ones(2, 3, dtype=torch.long), ["blocks.0.attn.hook_pattern"]))
    with pytest.raises(HooksError, match="did not run during the forward pass|cannot hook"):
        list(capture_activations(model, coded_source(), ["blocks.0.attn.hook_result"]))
