"""The word-level tokenizer, its JSON file and its Hugging Face / TransformerLens twin."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcfg import PCFGError, Tokenizer, load_grammar
from pcfg.tokenizer import SPECIAL_TOKENS

ENGLISH = load_grammar("english")
TOK = Tokenizer.from_grammar(ENGLISH)


def test_vocabulary_layout():
    assert TOK.vocab[:4] == list(SPECIAL_TOKENS) == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert (TOK.pad_id, TOK.bos_id, TOK.eos_id, TOK.unk_id) == (0, 1, 2, 3)
    assert TOK.vocab[4:] == ENGLISH.terminals and len(TOK) == 64
    rich = Tokenizer.from_grammar(load_grammar("rich"))
    assert rich.vocab.count("saw") == 1  # one id for a word of two parts of speech


def test_encode_decode():
    ids = TOK.encode(["she", "sees", "big", "cat"])
    assert ids[0] == TOK.bos_id and ids[-1] == TOK.eos_id and len(ids) == 6
    assert TOK.encode("she sees big cat") == ids
    assert TOK.encode("she sees", add_special=False) == ids[1:3]
    assert TOK.decode(ids) == ["she", "sees", "big", "cat"]
    assert TOK.decode(ids, skip_special=False) == ["<bos>", "she", "sees", "big", "cat", "<eos>"]
    with pytest.raises(PCFGError, match="word 'zebra' is not in the vocabulary"):
        TOK.encode(["she", "zebra"])
    with pytest.raises(PCFGError, match="ids: token id 64 out of range; expected 0 <= id < 64"):
        TOK.decode([1, 64])


def test_bad_words():
    with pytest.raises(PCFGError, match="'a b' cannot be a word-level token"):
        Tokenizer(["a b"])
    with pytest.raises(PCFGError, match="'<eos>' clashes with a special token"):
        Tokenizer(["<eos>"])
    with pytest.raises(PCFGError, match=r"duplicate word\(s\) \['x'\]"):
        Tokenizer(["x", "y", "x"])


def test_save_load(tmp_path):
    path = tmp_path / "tokenizer.json"
    TOK.save(path)
    assert Tokenizer.load(path) == TOK
    assert not list(tmp_path.glob("*.tmp-*"))
    with pytest.raises(PCFGError, match="tokenizer path .*missing.json' does not exist"):
        Tokenizer.load(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text('{"vocab": ["a"]}')
    with pytest.raises(PCFGError, match="other.json: not a pcfg tokenizer file"):
        Tokenizer.load(tmp_path / "other.json")
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(PCFGError, match="junk.json: not a tokenizer JSON file"):
        Tokenizer.load(tmp_path / "junk.json")


@settings(max_examples=50, deadline=None)
@given(words=st.lists(st.sampled_from(ENGLISH.terminals), max_size=30))
def test_property_encode_decode_round_trip(words):
    ids = TOK.encode(words)
    assert len(ids) == len(words) + 2
    assert TOK.decode(ids) == words
    assert TOK.encode(" ".join(words)) == ids
    assert all(4 <= i < len(TOK) for i in ids[1:-1])


HF = TOK.to_hf()


def test_hf_tokenizer_matches():
    assert HF.bos_token == "<bos>" and HF.eos_token == "<eos>" and HF.pad_token == "<pad>"
    assert HF.unk_token == "<unk>" and len(HF) == len(TOK)
    assert (HF.bos_token_id, HF.eos_token_id, HF.pad_token_id, HF.unk_token_id) == (1, 2, 0, 3)
    assert HF("she sees big cat")["input_ids"] == TOK.encode("she sees big cat")[:-1]  # BOS, no EOS
    assert HF("she sees zebra")["input_ids"][-1] == TOK.unk_id
    assert HF.decode(TOK.encode("she sees"), skip_special_tokens=True) == "she sees"
    assert HF.convert_ids_to_tokens(TOK.encode("she sees")) == ["<bos>", "she", "sees", "<eos>"]


@settings(max_examples=30, deadline=None)
@given(words=st.lists(st.sampled_from(ENGLISH.terminals), min_size=1, max_size=20))
def test_property_hf_agrees_with_tokenizer(words):
    text = " ".join(words)
    assert HF(text, add_special_tokens=False)["input_ids"] == TOK.encode(words, add_special=False)
    assert HF.decode(TOK.encode(words), skip_special_tokens=True).split() == words


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("how", ["constructor", "set_tokenizer"])
def test_transformer_lens_string_apis(how):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=32,
                                  d_vocab=len(TOK), act_fn="gelu")
    if how == "constructor":
        model = HookedTransformer(cfg, tokenizer=TOK.to_hf())
    else:
        model = HookedTransformer(cfg)
        model.set_tokenizer(TOK.to_hf())
    ids = TOK.encode("she sees big cat")
    assert model.to_tokens("she sees big cat").tolist() == [ids[:-1]]
    assert model.to_tokens("she sees big cat", prepend_bos=False).tolist() == [ids[1:-1]]
    assert model.to_str_tokens("she sees big cat") == ["<bos>", "she", "sees", "big", "cat"]
    batch = model.to_tokens(["she sees", "he eats big cat"])
    assert batch.tolist() == [[1, *ids[1:3], 0, 0], ids[:1] + TOK.encode("he eats big cat")[1:-1]]
    assert model.to_string(batch[1, 1:]) == "he eats big cat"
    assert model(model.to_tokens("she sees")).shape == (1, 3, len(TOK))
