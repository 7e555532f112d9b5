"""Corpora: columns and alignment, the save/load round trip, byte-identical rebuilds, bad folders."""

import hashlib
import json
import os
from pathlib import Path

import datasets
import pytest

from pcfg import (
    LABEL_COLUMNS,
    NO_LABEL,
    Corpus,
    PCFGError,
    build_corpus,
    is_grammatical,
    load_corpus,
    load_grammar,
    sample_sentences,
    save_corpus,
)

RICH = load_grammar("rich")


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return build_corpus(RICH, n=300, seed=5, val_fraction=0.2, max_length=30, progress=False)


def test_columns_features_and_metadata(corpus):
    ds = corpus.dataset
    assert set(ds) == {"train", "validation"}
    assert ds["train"].num_rows == 240 and ds["validation"].num_rows == 60
    feats = ds["train"].features
    assert list(feats) == ["input_ids", *LABEL_COLUMNS]
    assert feats["input_ids"].feature.dtype == "int32" and feats["depth"].feature.dtype == "int32"
    assert feats["pos"].feature.names == RICH.parts_of_speech
    assert feats["phrase"].feature.names == RICH.phrase_labels
    assert corpus.label_names == {"pos": RICH.parts_of_speech, "phrase": RICH.phrase_labels}
    meta = corpus.metadata
    assert meta["grammar"] == "rich" and meta["grammar_text"] == RICH.text and meta["seed"] == 5
    assert meta["splits"] == {"train": 240, "validation": 60} and meta["n"] == 300
    assert meta["max_length"] == 30 and meta["vocab_size"] == len(corpus.tokenizer)
    assert meta["max_seq_len"] == max(len(r) for s in ds.values() for r in s["input_ids"]) <= 32
    assert json.loads(ds["validation"].info.description) == meta


def test_rows_match_the_sampler_and_stay_aligned(corpus):
    tok = corpus.tokenizer
    sents = sample_sentences(RICH, 300, seed=5, max_length=30)
    rows = list(corpus.dataset["train"]) + list(corpus.dataset["validation"])
    names = corpus.label_names
    for s, row in zip(sents, rows, strict=True):
        ids = row["input_ids"]
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        assert tok.decode(ids) == list(s.words)
        for col in LABEL_COLUMNS:
            assert len(row[col]) == len(ids)
            assert row[col][0] == row[col][-1] == NO_LABEL
        assert tuple(names["pos"][i] for i in row["pos"][1:-1]) == s.pos
        assert tuple(names["phrase"][i] for i in row["phrase"][1:-1]) == s.phrase
        assert tuple(row["depth"][1:-1]) == s.depth
        assert is_grammatical(RICH, tok.decode(ids))


def test_save_load_round_trip_and_load_from_disk(corpus, tmp_path):
    out = save_corpus(corpus, tmp_path / "c")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["corpus.json", "dataset_dict.json", "grammar.pcfg", "provenance.json", "tokenizer.json", "train",
         "validation"])
    back = load_corpus(out)
    assert back.metadata == corpus.metadata and back.tokenizer == corpus.tokenizer
    assert back.grammar.text == RICH.text and back.grammar.name == "rich"
    assert back.label_names == corpus.label_names
    for split in ("train", "validation"):
        assert back.dataset[split].to_dict() == corpus.dataset[split].to_dict()
    plain = datasets.load_from_disk(str(out))
    assert plain["train"].features == corpus.dataset["train"].features
    assert plain["train"][0] == corpus.dataset["train"][0]
    assert not [p for p in tmp_path.iterdir() if p.name != "c"]  # no temp folders left


def test_same_seed_gives_byte_identical_folders(tmp_path):
    """Every file of the saved folder (arrow data, state.json with its fingerprint, info) is identical."""
    g = load_grammar("english")
    save_corpus(build_corpus(g, n=200, seed=3, progress=False), tmp_path / "a")
    save_corpus(build_corpus(g, n=200, seed=3, progress=False), tmp_path / "b")
    save_corpus(build_corpus(g, n=200, seed=4, progress=False), tmp_path / "c")
    a, b, c = (file_hashes(tmp_path / x) for x in "abc")
    assert a == b and len(a) == 11  # provenance.json included
    assert a["train/data-00000-of-00001.arrow"] != c["train/data-00000-of-00001.arrow"]


def test_save_replaces_a_corpus_but_refuses_other_folders(corpus, tmp_path):
    g = load_grammar("english")
    out = tmp_path / "c"
    save_corpus(build_corpus(g, n=20, seed=0, progress=False), out)
    save_corpus(corpus, out)
    assert load_corpus(out).metadata["grammar"] == "rich"
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(PCFGError, match="out_dir .*other' exists and is not a corpus folder"):
        save_corpus(corpus, other)
    assert (other / "precious.txt").read_text() == "keep me"
    with pytest.raises(PCFGError, match="corpus: expected a pcfg.Corpus, got dict"):
        save_corpus({}, tmp_path / "x")


def test_load_corpus_errors(corpus, tmp_path):
    with pytest.raises(PCFGError, match="corpus path .*nowhere' does not exist"):
        load_corpus(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PCFGError, match="corpus path .*empty' is not a corpus: missing corpus.json"):
        load_corpus(tmp_path / "empty")
    out = save_corpus(corpus, tmp_path / "c")
    (out / "corpus.json").write_text('{"format": "other"}')
    with pytest.raises(PCFGError, match="corpus.json has no format='pcfg-corpus'"):
        load_corpus(out)


def test_build_corpus_argument_errors():
    g = load_grammar("english")
    with pytest.raises(PCFGError, match=r"val_fraction: expected a number in \[0, 1\), got 1\.0"):
        build_corpus(g, n=10, seed=0, val_fraction=1.0, progress=False)
    with pytest.raises(PCFGError, match="n: expected an int >= 1, got 0"):
        build_corpus(g, n=0, seed=0, progress=False)
    with pytest.raises(PCFGError, match="grammar: expected a pcfg.Grammar, got str"):
        build_corpus("english", n=1, seed=0, progress=False)
    small = build_corpus(g, n=3, seed=0, val_fraction=0.1, progress=False)
    assert small.metadata["splits"] == {"train": 2, "validation": 1}
    none = build_corpus(g, n=3, seed=0, val_fraction=0.0, progress=False)
    assert none.dataset["validation"].num_rows == 0 and none.dataset["train"].num_rows == 3


def test_save_is_atomic_when_writing_fails(corpus, tmp_path, monkeypatch):
    out = tmp_path / "c"
    save_corpus(corpus, out)
    before = file_hashes(out)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("pcfg.tokenizer.Tokenizer.save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_corpus(corpus, out)
    assert file_hashes(out) == before
    assert sorted(os.listdir(tmp_path)) == ["c"]
