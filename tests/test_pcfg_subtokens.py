"""Sub-token corpora: gold labels aligned to a real tokenizer's pieces, checked against the tokenizer's offsets."""

from __future__ import annotations

import hashlib
import warnings

import pytest
import torch

from hooks import capture_activations, load_hf_model, residual_hook
from pcfg import (
    NO_LABEL,
    PCFGError,
    Tokenizer,
    build_corpus,
    build_subtoken_corpus,
    load_corpus,
    load_grammar,
    sample_sentences,
    save_corpus,
    vocab_fingerprint,
)

N_ALIGN = 200


@pytest.fixture(scope="module")
def bert(bert_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_hf_model(bert_dir)


def offsets_word_index(tokenizer, words):
    """Per token of ``tokenizer(" ".join(words))``: (index of the word its characters come from, whether it is
    that word's first token), None for special tokens; from the tokenizer's character offsets alone."""
    text = " ".join(words)
    starts, pos = [], 0
    for w in words:
        starts.append(pos)
        pos += len(w) + 1
    enc = tokenizer(text, return_offsets_mapping=True)
    out, seen = [], set()
    for token, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        if token in tokenizer.all_special_ids or a == b:
            out.append(None)
            continue
        a += len(text[a:b]) - len(text[a:b].lstrip())  # byte-level BPE offsets may include the leading space
        word = max(i for i, s in enumerate(starts) if s <= a)
        out.append((word, word not in seen))
        seen.add(word)
    return enc["input_ids"], out


@pytest.mark.parametrize("labels", ["first", "all"])
def test_captured_labels_equal_gold_pos_of_their_word(bert, labels):
    """Harvested rows of 200 sentences: each row's label is its word's gold tag, by an offsets-based mapping."""
    grammar = load_grammar("real")
    corpus = build_subtoken_corpus(grammar, bert.tokenizer, n=N_ALIGN, seed=7, labels=labels, val_fraction=0,
                                   progress=False)
    gold = sample_sentences(grammar, N_ALIGN, seed=7)  # sampled independently of the corpus
    names = corpus.label_names["pos"]
    batches = list(capture_activations(bert, corpus.dataset["train"], [residual_hook(bert, 0)], batch_size=32))
    seq = torch.cat([b.seq_index for b in batches]).tolist()
    position = torch.cat([b.positions for b in batches]).tolist()
    pos = torch.cat([b.labels["pos"] for b in batches]).tolist()
    token = torch.cat([b.token_ids for b in batches]).tolist()
    mapping = {}
    n_pieces = n_continuations = 0
    for i, sentence in enumerate(gold):
        ids, where = offsets_word_index(bert.tokenizer, sentence.words)
        assert corpus.dataset["train"][i]["input_ids"] == ids  # the same tokens as the tokenizer's own
        for p, w in enumerate(where):
            if w is not None:
                mapping[(i, p)] = (ids[p], sentence.pos[w[0]], w[1])
                n_pieces += 1
                n_continuations += not w[1]
    assert len(seq) == n_pieces  # every sub-token of every word captured, no special token, nothing else
    assert n_continuations > len(seq) // 10  # the tokenizer really split words
    for s, p, label, t in zip(seq, position, pos, token, strict=True):
        want_token, want_pos, first = mapping[(s, p)]
        assert t == want_token
        if first or labels == "all":
            assert names[label] == want_pos
        else:
            assert label == NO_LABEL


def test_gpt2_corpus_matches_the_tokenizer_and_starts_with_bos(gpt2_dir):
    model = load_hf_model(gpt2_dir)
    tok = model.tokenizer
    corpus = build_subtoken_corpus(load_grammar("real"), tok, n=60, seed=1, progress=False)
    assert corpus.metadata["subtokens"]["prefix"] == [tok.bos_token_id] and corpus.metadata["subtokens"]["suffix"] == []
    for row, sentence in zip(corpus.dataset["train"], sample_sentences(load_grammar("real"), 60, seed=1),
                             strict=False):
        ids, where = offsets_word_index(tok, sentence.words)  # this tokenizer puts BOS first itself
        assert row["input_ids"] == ids and ids[0] == tok.bos_token_id
        firsts = [p for p, w in enumerate(where) if w is not None and w[1]]
        assert [p for p, k in enumerate(row["piece_index"]) if k == 0] == firsts
        assert [row["pos"][p] for p in firsts] == [corpus.label_names["pos"].index(t) for t in sentence.pos]


def test_same_sentences_and_tags_as_the_word_level_corpus(bert):
    grammar = load_grammar("real")
    words = build_corpus(grammar, n=40, seed=3, progress=False)
    pieces = build_subtoken_corpus(grammar, bert.tokenizer, n=40, seed=3, progress=False)
    for split in ("train", "validation"):
        for a, b in zip(words.dataset[split], pieces.dataset[split], strict=True):
            first = [p for p, k in enumerate(b["piece_index"]) if k == 0]
            assert [b["pos"][p] for p in first] == a["pos"][1:-1]
            assert [b["depth"][p] for p in first] == a["depth"][1:-1]
            assert [b["word_index"][p] for p in first] == list(range(len(a["pos"]) - 2))


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_saved_twice_byte_identical_and_loads_with_its_tokenizer(bert, tmp_path):
    grammar = load_grammar("real")
    for name in ("a", "b"):
        save_corpus(build_subtoken_corpus(grammar, bert.tokenizer, n=30, seed=5, labels="all", progress=False),
                    tmp_path / name)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    loaded = load_corpus(tmp_path / "a")
    assert loaded.tokenizer.get_vocab() == bert.tokenizer.get_vocab()
    assert loaded.metadata["tokenizer"]["vocab_sha256"] == vocab_fingerprint(bert.tokenizer)
    assert loaded.metadata["subtokens"]["labels"] == "all"
    assert loaded.dataset["train"].column_names == ["input_ids", "pos", "phrase", "depth", "word_index",
                                                    "piece_index"]


def test_vocab_fingerprint_is_the_vocabulary():
    tok = Tokenizer(["cat", "dog"])
    assert vocab_fingerprint(tok) == vocab_fingerprint(tok.to_hf())  # word-level and its HF twin agree
    assert vocab_fingerprint(tok) != vocab_fingerprint(Tokenizer(["cat", "dot"]))
    with pytest.raises(PCFGError, match="tokenizer: expected"):
        vocab_fingerprint(object())


def test_a_word_the_tokenizer_cannot_spell_is_refused():
    tok = Tokenizer(["cat"]).to_hf()  # word-level: every other word is <unk>
    with pytest.raises(PCFGError, match=r"grammar word '\w+' becomes \[3\] \(unknown token 3\)"):
        build_subtoken_corpus(load_grammar("real"), tok, n=5, seed=0, progress=False)


class _ContextTokenizer:
    """Splits words alone as the wrapped tokenizer does, but gives whole sentences one more token."""

    def __init__(self, inner):
        self.inner = inner
        self.unk_token_id = inner.unk_token_id

    def get_vocab(self):
        return self.inner.get_vocab()

    def __len__(self):
        return len(self.inner)

    def __call__(self, text, add_special_tokens=True):
        out = self.inner(text, add_special_tokens=add_special_tokens)
        if isinstance(text, list):
            return {"input_ids": [ids + [5] if " " in t else ids for t, ids in zip(text, out["input_ids"],
                                                                                   strict=True)]}
        return out


def test_a_tokenizer_whose_pieces_depend_on_context_is_refused(bert):
    with pytest.raises(PCFGError, match=r"sentence 0 .* as a whole but to .* word by word"):
        build_subtoken_corpus(load_grammar("real"), _ContextTokenizer(bert.tokenizer), n=5, seed=0, progress=False)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"labels": "middle"}, r"labels: expected one of \['first', 'all'\], got 'middle'"),
    ({"n": 0}, r"n: expected an int >= 1, got 0"),
    ({"tokenizer": "bert"}, r"tokenizer: expected a Hugging Face tokenizer"),
])
def test_bad_arguments_are_named(bert, kwargs, match):
    args = {"grammar": load_grammar("real"), "tokenizer": bert.tokenizer, "n": 5, "seed": 0, **kwargs}
    with pytest.raises(PCFGError, match=match):
        build_subtoken_corpus(**args, progress=False)


def test_train_lm_refuses_a_sub_token_corpus(bert):
    import spade_lens as sl
    from spade_lens.errors import SpadeLensError

    corpus = build_subtoken_corpus(load_grammar("real"), bert.tokenizer, n=10, seed=0, progress=False)
    with pytest.raises(SpadeLensError, match="built for a pretrained model's tokenizer"):
        sl.train_lm(corpus)
