"""load_hf_model: tiny random BERT / GPT-2 folders -> TransformerLens models whose hooks equal HF hidden_states."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch

from hooks import HooksError, capture_activations, load_hf_model, residual_hook, residual_hook_names
from hooks.hf_model import is_encoder, is_hf_model_dir

TOL = 1e-4
SENTENCES = ["the grumpy locksmith misplaced my teapot near the river", "someone left",
             "it saw the scarecrow clumsily and nobody admired our sunflower"]


@pytest.fixture(scope="module")
def bert(bert_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_hf_model(bert_dir)


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return load_hf_model(gpt2_dir)


def _hf_hidden_states(folder, cls_name, ids, mask):
    import transformers

    hf = getattr(transformers, cls_name).from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states


def _padded(tokenizer, texts, bos=None):
    rows = [([bos] if bos is not None else []) + tokenizer(t)["input_ids"] for t in texts]
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return rows, ids, mask


def _captured(model, rows, names, batch_size):
    batches = list(capture_activations(model, {"input_ids": rows}, names, batch_size=batch_size))
    return {n: torch.cat([b.acts[n] for b in batches]) for n in names}, torch.cat([b.token_ids for b in batches])


def test_bert_folder_becomes_a_hooked_encoder_with_its_tokenizer(bert, bert_dir):
    from transformers import AutoTokenizer

    assert type(bert).__name__ == "HookedEncoder" and is_encoder(bert)
    assert bert.cfg.attention_dir == "bidirectional" and bert.cfg.n_layers == 2 and bert.cfg.d_model == 32
    assert bert.tokenizer.get_vocab() == AutoTokenizer.from_pretrained(str(bert_dir)).get_vocab()
    assert not bert.training


def test_bert_residual_hooks_equal_hf_hidden_states_through_padded_capture(bert, bert_dir):
    rows, ids, mask = _padded(bert.tokenizer, SENTENCES)
    hidden = _hf_hidden_states(bert_dir, "BertModel", ids, mask)
    names = residual_hook_names(bert)
    assert names == ["hook_full_embed", "blocks.0.hook_normalized_resid_post", "blocks.1.hook_normalized_resid_post"]
    got, token_ids = _captured(bert, rows, names, batch_size=3)  # one padded batch: the mask matters
    keep = mask.bool() & ~torch.isin(ids, torch.tensor(bert.tokenizer.all_special_ids))
    assert torch.equal(token_ids, ids[keep])  # [CLS], [SEP] and padding are never captured by default
    for i, name in enumerate(names):
        assert (got[name] - hidden[i][keep]).abs().max().item() <= TOL, name


def test_bert_capture_does_not_depend_on_the_padding_of_its_batch(bert):
    rows = [bert.tokenizer(t)["input_ids"] for t in SENTENCES]
    hook = residual_hook(bert, 2)
    together, _ = _captured(bert, rows, [hook], batch_size=3)
    alone, _ = _captured(bert, rows, [hook], batch_size=1)
    assert torch.allclose(together[hook], alone[hook], atol=TOL)


def test_bert_resid_post_is_not_the_residual_stream(bert, bert_dir):
    """Post-LN: hook_resid_post is the sum before the block's last LayerNorm (why residual_hook_names exists)."""
    rows, ids, mask = _padded(bert.tokenizer, SENTENCES[:1])
    hidden = _hf_hidden_states(bert_dir, "BertModel", ids, mask)
    got, _ = _captured(bert, rows, ["blocks.0.hook_resid_post"], batch_size=1)
    assert (got["blocks.0.hook_resid_post"] - hidden[1][0, 1:-1]).abs().max().item() > 1e-2


def test_encoder_heads_are_not_captured(bert):
    with pytest.raises(HooksError, match="captured through its encoder_output"):
        list(capture_activations(bert, torch.tensor([[2, 5, 3]]), ["mlm_head.ln.hook_normalized"]))


def test_encoder_only_folder_warns_that_heads_are_seeded(bert_dir):
    with pytest.warns(UserWarning, match=r"no weights for \['cls.predictions', 'cls.seq_relationship'\]"):
        a = load_hf_model(bert_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        b = load_hf_model(bert_dir)
    assert torch.equal(a.mlm_head.W, b.mlm_head.W)  # seeded: the same model every time


def test_pretraining_folder_loads_every_head(tmp_path):
    from _hf_helpers import make_bert_dir
    from transformers import BertForPreTraining

    folder = make_bert_dir(tmp_path / "bert-pt", head="pretraining", n_layers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is missing: no warning
        model = load_hf_model(folder)
    hf = BertForPreTraining.from_pretrained(str(folder), local_files_only=True).eval()
    _, ids, mask = _padded(model.tokenizer, SENTENCES)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).prediction_logits
        got = model(ids, one_zero_attention_mask=mask)
    assert (got - want)[mask.bool()].abs().max().item() <= TOL


def test_gpt2_folder_becomes_a_hooked_transformer_matching_hf(gpt2, gpt2_dir):
    assert type(gpt2).__name__ == "HookedTransformer" and not is_encoder(gpt2)
    bos = gpt2.tokenizer.bos_token_id
    rows, ids, mask = _padded(gpt2.tokenizer, SENTENCES, bos=bos)
    hidden = _hf_hidden_states(gpt2_dir, "GPT2Model", ids, mask)
    names = residual_hook_names(gpt2)
    assert names == ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    got, _ = _captured(gpt2, rows, [*names, "ln_final.hook_normalized"], batch_size=3)
    keep = mask.bool() & (ids != bos)
    for i, name in enumerate(names[:-1]):
        assert (got[name] - hidden[i][keep]).abs().max().item() <= TOL, name
    # Hugging Face's last hidden state is after the final LayerNorm (TransformerLens' hook_normalized is before
    # its gain and bias)
    final = got["ln_final.hook_normalized"] * gpt2.ln_final.w.detach() + gpt2.ln_final.b.detach()
    assert (final - hidden[-1][keep]).abs().max().item() <= TOL


def test_gpt2_config_matches_transformer_lens_own_conversion(gpt2, gpt2_dir, tmp_path):
    """TransformerLens 3.9 reads config.n_ctx, which transformers 5 no longer writes: given it, its conversion
    agrees with ours field for field."""
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    folder = tmp_path / "gpt2"
    shutil.copytree(gpt2_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_ctx": config["n_positions"]}))
    theirs = get_pretrained_model_config(str(folder), device="cpu")
    for field in ("d_model", "d_head", "n_heads", "d_mlp", "n_layers", "n_ctx", "eps", "d_vocab", "act_fn",
                  "use_attn_scale", "use_local_attn", "scale_attn_by_inverse_layer_idx", "normalization_type",
                  "positional_embedding_type", "original_architecture", "attention_dir"):
        assert getattr(gpt2.cfg, field) == getattr(theirs, field), field


def test_unsupported_architecture_is_named(tmp_path, bert_dir):
    folder = tmp_path / "llama"
    shutil.copytree(bert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="llama", architectures=["LlamaForCausalLM"])
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(HooksError, match=r"model_type='llama'.*LlamaForCausalLM.*'bert'.*'gpt2'"):
        load_hf_model(folder)


@pytest.mark.parametrize("case", ["missing", "no_config", "bad_json", "no_weights", "no_tokenizer"])
def test_bad_folders_are_one_line_errors(tmp_path, bert_dir, case):
    folder = tmp_path / "m"
    if case != "missing":
        shutil.copytree(bert_dir, folder)
    if case == "no_config":
        (folder / "config.json").unlink()
    elif case == "bad_json":
        (folder / "config.json").write_text("{nope")
    elif case == "no_weights":
        (folder / "model.safetensors").unlink()
    elif case == "no_tokenizer":
        for f in folder.glob("tokenizer*"):
            f.unlink()
    message = {"missing": "is not a folder", "no_config": "has no config.json", "bad_json": "not valid JSON",
               "no_weights": "has no weights", "no_tokenizer": "has no tokenizer"}[case]
    with pytest.raises(HooksError, match=message):
        load_hf_model(folder)
    assert is_hf_model_dir(folder) == (case in ("no_weights", "no_tokenizer"))


def test_residual_hook_checks_the_layer(bert):
    assert residual_hook(bert, 0) == "hook_full_embed"
    for bad in (-1, 3, 1.0, True):
        with pytest.raises(HooksError, match=r"layer: expected an integer in \[0, 2\]"):
            residual_hook(bert, bad)


@pytest.mark.parametrize(("change", "match"), [
    ({"hidden_act": "swish_of_doom"}, r"hidden_act='swish_of_doom'; supported: \["),
    ({"position_embedding_type": "relative_key"}, r"position_embedding_type='relative_key'; .* only 'absolute'"),
    ({"hidden_size": "wide"}, "has a value of the wrong type"),
])
def test_unsupported_bert_configs_are_named(tmp_path, bert_dir, change, match):
    folder = tmp_path / "bert"
    shutil.copytree(bert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(HooksError, match=match):
        load_hf_model(folder)
