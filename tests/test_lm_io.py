"""Save / load: identical logits, atomic folder, and every kind of broken model folder."""

import json
import shutil

import pytest
import torch
from _lm_helpers import one_thread, tiny_corpus, trained_model
from safetensors.torch import load_file, save_file

from pcfg import Tokenizer
from spade_lens.errors import SpadeLensError
from spade_lens.lm import load_lm, load_lm_grammar, save_lm


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture()
def model_dir(tmp_path):
    save_lm(trained_model(), tmp_path / "lm", grammar=tiny_corpus().grammar)
    return tmp_path / "lm"


def test_load_gives_identical_logits_and_a_working_tokenizer(model_dir):
    model = trained_model()
    loaded = load_lm(model_dir)
    tokens = torch.tensor([list(s) for s in tiny_corpus().dataset["validation"]["input_ids"][:1]])
    assert torch.equal(model(tokens), loaded(tokens))
    assert not loaded.training
    assert loaded.to_str_tokens(tokens[0])[:1] == ["<bos>"]
    assert loaded.to_str_tokens("she sees")[1:] == ["she", "sees"]
    assert loaded.cfg.n_ctx == model.cfg.n_ctx and loaded.cfg.d_vocab == model.cfg.d_vocab
    assert load_lm_grammar(model_dir).text == tiny_corpus().grammar.text


def test_saving_over_a_model_keeps_the_checkpoint_and_leaves_no_temp_files(model_dir):
    (model_dir / "checkpoint").mkdir()
    (model_dir / "checkpoint" / "state.pt").write_text("x")
    save_lm(trained_model(), model_dir, grammar=tiny_corpus().grammar)
    assert (model_dir / "checkpoint" / "state.pt").read_text() == "x"
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["lm"]


def test_tokenizer_of_another_size_is_refused_when_saving(tmp_path):
    with pytest.raises(SpadeLensError, match=r"tokenizer: has 6 tokens, but the model's d_vocab is"):
        save_lm(trained_model(), tmp_path / "lm", grammar=tiny_corpus().grammar, tokenizer=Tokenizer(["a", "b"]))


def test_missing_folder(tmp_path):
    with pytest.raises(SpadeLensError, match=r"model folder .*nowhere.* does not exist"):
        load_lm(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json", "grammar.pcfg"])
def test_missing_file(model_dir, name):
    (model_dir / name).unlink()
    with pytest.raises(SpadeLensError, match=rf"model folder .*: {name} is missing"):
        load_lm(model_dir)


def test_tokenizer_size_other_than_d_vocab(model_dir):
    Tokenizer(["a", "b", "c"]).save(model_dir / "tokenizer.json")
    with pytest.raises(SpadeLensError, match=r"tokenizer\.json: the tokenizer has 7 tokens but config\.json says d_vocab="):
        load_lm(model_dir)


def test_tokenizer_file_that_is_not_a_tokenizer(model_dir):
    (model_dir / "tokenizer.json").write_text("{}")
    with pytest.raises(SpadeLensError, match=r"tokenizer\.json: not a pcfg tokenizer"):
        load_lm(model_dir)


def test_weights_of_another_shape(model_dir):
    tensors = load_file(str(model_dir / "model.safetensors"))
    tensors["unembed.b_U"] = torch.zeros(3)
    save_file(tensors, str(model_dir / "model.safetensors"))
    with pytest.raises(SpadeLensError, match=r"model\.safetensors: tensor 'unembed\.b_U' has shape \(3,\), expected"):
        load_lm(model_dir)


def test_weights_of_another_architecture(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    config["lm_config"]["n_layers"] = 2
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(SpadeLensError, match=r"model\.safetensors: tensors do not match the model config: missing \['blocks\.1"):
        load_lm(model_dir)


def test_weights_file_that_is_not_safetensors(model_dir):
    (model_dir / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(SpadeLensError, match=r"model\.safetensors: not a safetensors file"):
        load_lm(model_dir)


@pytest.mark.parametrize("text, match", [
    ("not json", r"config\.json: not a spade-lens LM config"),
    ('{"format": "other"}', r"config\.json: not a spade-lens LM config"),
    ('{"format": "spade-lens-lm", "lm_config": {"n_layers": 0}}', r"config\.json: not a spade-lens LM config .*n_layers"),
    ('{"format": "spade-lens-lm", "lm_config": {}}', r"config\.json: n_ctx and d_vocab must be set"),
])
def test_bad_config(model_dir, text, match):
    (model_dir / "config.json").write_text(text)
    with pytest.raises(SpadeLensError, match=match):
        load_lm(model_dir)


def test_bad_grammar_file(model_dir):
    (model_dir / "grammar.pcfg").write_text("S -> [")
    with pytest.raises(SpadeLensError, match=r"grammar\.pcfg: not a valid grammar"):
        load_lm_grammar(model_dir)


def test_copy_of_a_folder_loads(model_dir, tmp_path):
    shutil.copytree(model_dir, tmp_path / "copy")
    assert torch.equal(load_lm(tmp_path / "copy").W_E, trained_model().W_E)


def test_an_unrelated_folder_is_never_replaced(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(SpadeLensError, match=r"out_dir .*home.* exists and is not a model folder"):
        save_lm(trained_model(), tmp_path / "home", grammar=tiny_corpus().grammar)
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"


def test_non_finite_weights_are_refused(model_dir):
    """Issue 11, defect 6 (the model's side): NaN / inf weights used to load silently."""
    tensors = load_file(str(model_dir / "model.safetensors"))
    tensors["blocks.0.attn.W_Q"].view(-1)[3] = float("nan")
    save_file(tensors, str(model_dir / "model.safetensors"))
    with pytest.raises(SpadeLensError, match="model.safetensors: tensor 'blocks.0.attn.W_Q' holds 1 NaN/inf"):
        load_lm(model_dir)
