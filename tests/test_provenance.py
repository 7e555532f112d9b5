"""Provenance records: one shape in pcfg and hooks, tokenizer identities any stage can compare, the checks
before a folder is trusted or overwritten, and folders of earlier versions that still load."""

from __future__ import annotations

import json
import shutil

import pytest

import hooks.provenance as hp
import pcfg.provenance as pp
from pcfg import build_corpus, load_corpus, load_grammar, save_corpus
from spade_lens.errors import SpadeLensError
from spade_lens.provenance import check_reuse, check_target, differences, folder_kind, read_provenance


def test_pcfg_and_hooks_write_the_same_shape_and_identities(tmp_path):
    kwargs = dict(id="abc", tokenizer="def", inputs={"x": {"kind": "corpus", "id": "1", "path": "p"}},
                  settings={"n": 3, "t": (1, 2)})
    assert pp.provenance_record("k", **kwargs) == hp.provenance_record("k", **kwargs)
    pp.write_provenance(tmp_path, pp.provenance_record("k", **kwargs))
    assert hp.read_provenance(tmp_path) == pp.read_provenance(tmp_path) == hp.provenance_record("k", **kwargs)
    assert set(hp.read_provenance(tmp_path)) == {"format", "version", "kind", "package_version", "id", "tokenizer",
                                                 "inputs", "settings"}
    value = {"b": [1, "é"], "a": None}
    assert pp.json_identity(value) == hp.json_identity(value) and len(hp.json_identity(value)) == 16
    assert hp.json_identity({"a": 1}) != hp.json_identity({"a": 2})


def test_a_tokenizer_has_one_identity_as_pcfg_vocab_hf_tokenizer_and_model():
    from spade_lens.lm import build_model
    from spade_lens.lm.config import LMConfig, resolve_config

    english = build_corpus(load_grammar("english"), n=5, seed=0, progress=False)
    tok = english.tokenizer
    ident = pp.tokenizer_identity(tok)
    cfg = resolve_config(LMConfig(n_layers=1, d_model=8, n_heads=1, d_head=8, d_mlp=8), longest_sequence=20,
                         vocab_size=len(tok))
    assert ident == hp.tokenizer_identity(tok) == hp.tokenizer_identity(tok.to_hf())
    assert ident == hp.tokenizer_identity(build_model(cfg, tok)) == english.tokenizer_identity
    assert ident == hp.vocab_identity({w: i for i, w in enumerate(tok.vocab)})
    rich = build_corpus(load_grammar("rich"), n=5, seed=0, progress=False)
    assert rich.tokenizer_identity != ident
    assert hp.tokenizer_identity(object()) is None


def test_a_corpus_identity_is_a_hash_of_its_columns(tmp_path):
    g = load_grammar("english")
    a = build_corpus(g, n=30, seed=0, progress=False)
    assert a.identity == build_corpus(g, n=30, seed=0, progress=False).identity
    assert a.identity != build_corpus(g, n=30, seed=1, progress=False).identity
    back = load_corpus(save_corpus(a, tmp_path / "c"))
    from pcfg.corpus import content_identity

    assert back.identity == a.identity == content_identity(back.dataset)  # recomputed from the files
    record = read_provenance(tmp_path / "c")
    assert record["kind"] == "corpus" and record["id"] == a.identity and record["tokenizer"] == a.tokenizer_identity
    assert record["settings"] == {"grammar": "english", "n": 30, "seed": 0, "val_fraction": 0.1, "max_length": 64}


def test_a_corpus_with_an_empty_split_saves_loads_and_trains(tmp_path):
    """Issue 11, defect 7: --val-fraction 0 (or a tiny --n) used to write a split datasets could not load."""
    from spade_lens.lm import LMConfig, LMTrainConfig, train_lm

    corpus = build_corpus(load_grammar("english"), n=12, seed=0, val_fraction=0, progress=False)
    back = load_corpus(save_corpus(corpus, tmp_path / "c"))
    assert back.dataset["validation"].num_rows == 0 and back.dataset["train"].num_rows == 12
    assert list(back.dataset["validation"].features) == list(corpus.dataset["train"].features)
    model = train_lm(tmp_path / "c", LMConfig(n_layers=1, d_model=8, n_heads=1, d_head=8, d_mlp=8),
                     LMTrainConfig(steps=2, batch_size=4, warmup_steps=1), tmp_path / "lm", progress=False)
    assert model.cfg.d_vocab == len(back.tokenizer)


def test_check_target_allows_new_empty_and_own_kind_only(tmp_path):
    save_corpus(build_corpus(load_grammar("english"), n=5, seed=0, progress=False), tmp_path / "c")
    (tmp_path / "empty").mkdir()
    assert check_target(tmp_path / "new" / "deeper", "report") == tmp_path / "new" / "deeper"
    assert check_target(tmp_path / "empty", "report") == tmp_path / "empty"
    assert check_target(tmp_path / "c", "corpus") == tmp_path / "c"
    with pytest.raises(SpadeLensError, match="--out: .* holds a corpus .*, not a probe report"):
        check_target(tmp_path / "c", "report")
    with pytest.raises(SpadeLensError, match="holds the input"):
        check_target(tmp_path, "corpus", inputs=[tmp_path / "c" / "train"])
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_differences_and_check_reuse(tmp_path):
    assert differences({"a": 1, "b": {"c": (1, 2)}}, {"a": 1, "b": {"c": [1, 2]}}) == []
    assert differences({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": 0}) == [
        ("b.c", 2, 3), ("d", "(not recorded)", 0)]
    folder = tmp_path / "s"
    assert check_reuse(folder, "sweep", {"k": 1}) == "new"
    folder.mkdir()
    hp.write_provenance(folder, hp.provenance_record("sweep", inputs={"acts": {"id": "A"}}, settings={"k": 1}))
    assert check_reuse(folder, "sweep", {"k": 1}, inputs={"acts": "A"}) == "same"
    with pytest.raises(SpadeLensError, match=r"other settings than requested \(k: recorded 1, requested 2\); redo"):
        check_reuse(folder, "sweep", {"k": 2}, how="redo")
    with pytest.raises(SpadeLensError, match="input acts: recorded 'A', requested 'B'"):
        check_reuse(folder, "sweep", {"k": 1}, inputs={"acts": "B"})
    with pytest.raises(SpadeLensError, match=r"holds a sweep \(`spade-lens sweep`\), not a corpus"):
        check_reuse(folder, "corpus", {})


def test_folders_of_earlier_versions_are_recognised_and_load(tmp_path):
    """Folders written before provenance existed still load, and are recognised by their files."""
    corpus = build_corpus(load_grammar("english"), n=5, seed=0, progress=False)
    save_corpus(corpus, tmp_path / "c")
    (tmp_path / "c" / "provenance.json").unlink()
    meta = json.loads((tmp_path / "c" / "corpus.json").read_text())
    for key in ("content_id", "tokenizer_id"):  # an earlier version's corpus.json
        meta.pop(key)
    (tmp_path / "c" / "corpus.json").write_text(json.dumps(meta))
    assert folder_kind(tmp_path / "c") == "corpus" and read_provenance(tmp_path / "c") is None
    old = load_corpus(tmp_path / "c")
    assert old.identity == corpus.identity  # computed from the columns
    assert check_target(tmp_path / "c", "corpus") == tmp_path / "c"
    shutil.copytree(tmp_path / "c", tmp_path / "run" / "corpus")
    assert folder_kind(tmp_path / "run") == "run"
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / ".c.lock").write_text("1")  # transient files do not make a folder non-empty
    assert folder_kind(tmp_path / "junk") == "empty"
