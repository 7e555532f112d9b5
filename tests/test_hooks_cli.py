"""``spade-lens harvest`` on a saved (untrained) spade-lens model and a saved pcfg corpus."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

pcfg = pytest.importorskip("pcfg", reason="the pcfg package (load_corpus) is needed for the CLI")
lm = pytest.importorskip("spade_lens.lm", reason="spade_lens.lm (load_lm) is needed for the CLI")

from hooks import ActivationCache, capture_activations  # noqa: E402
from spade_lens.cli import main  # noqa: E402

HOOK = "blocks.0.hook_resid_post"


@functools.cache
def _corpus():
    return pcfg.build_corpus(pcfg.load_grammar("english"), n=60, seed=0, max_length=10, progress=False)


def _saved(tmp_path: Path) -> tuple[Path, Path]:
    from spade_lens.lm.config import LMConfig, resolve_config

    corpus = _corpus()
    pcfg.save_corpus(corpus, tmp_path / "corpus")
    longest = max(len(r) for split in corpus.dataset.values() for r in split["input_ids"])
    cfg = resolve_config(LMConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32),
                         longest_sequence=longest, vocab_size=len(corpus.tokenizer))
    lm.save_lm(lm.build_model(cfg, corpus.tokenizer), tmp_path / "lm", grammar=corpus.grammar)
    return tmp_path / "lm", tmp_path / "corpus"


def test_cli_harvest_writes_a_labelled_cache_equal_to_the_python_api(tmp_path, capsys):
    model_dir, corpus_dir = _saved(tmp_path)
    argv = ["harvest", "--model", str(model_dir), "--corpus", str(corpus_dir), "--hook", HOOK,
            "--hook", "hook_embed", "--out", str(tmp_path / "acts"), "--shard-tokens", "100", "--no-progress"]
    assert main(argv) == 0
    assert "harvested" in capsys.readouterr().out
    cache = ActivationCache(tmp_path / "acts")
    corpus = _corpus()
    assert cache.label_names == corpus.label_names and cache.hook_names == [HOOK, "hook_embed"]
    rows = cache.load(HOOK)
    tok = corpus.tokenizer
    assert not set(rows.labels["token_id"].tolist()) & {tok.bos_id, tok.eos_id, tok.pad_id}
    assert int(rows.labels["pos"].min()) >= 0  # sentence tokens only: every row has a part of speech
    model = lm.load_lm(model_dir)
    direct = torch.cat([b.acts[HOOK] for b in capture_activations(model, corpus.dataset["train"], [HOOK])])
    assert torch.equal(rows.acts, direct) and cache.n_tokens == len(direct)
    assert main(argv) == 0  # finished: reused as is


def test_cli_harvest_errors(tmp_path, capsys):
    model_dir, corpus_dir = _saved(tmp_path)
    base = ["harvest", "--model", str(model_dir), "--corpus", str(corpus_dir), "--out", str(tmp_path / "a"),
            "--no-progress"]
    assert main([*base, "--hook", "blocks.0.hook_resid_pots"]) == 2
    assert "closest valid names: ['blocks.0.hook_resid_post'" in capsys.readouterr().err
    assert main([*base, "--hook", HOOK, "--split", "test"]) == 2
    assert "--split: the corpus has no split 'test'" in capsys.readouterr().err
    assert main([*base, "--hook", HOOK, "--max-tokens", "0"]) == 2
    assert "max_tokens: expected a positive integer, got 0" in capsys.readouterr().err


def test_cli_harvest_refuses_a_corpus_of_another_tokenizer(tmp_path, capsys):
    """Issue 11, defect 2: an english model harvested on a `rich` corpus used to give meaningless rows, exit 0."""
    model_dir, _ = _saved(tmp_path)
    rich = pcfg.save_corpus(pcfg.build_corpus(pcfg.load_grammar("rich"), n=20, seed=0, max_length=10,
                                              progress=False), tmp_path / "rich")
    argv = ["harvest", "--model", str(model_dir), "--corpus", str(rich), "--hook", HOOK, "--out",
            str(tmp_path / "a"), "--no-progress"]
    assert main(argv) == 2
    assert "the source's token ids come from another tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_cli_harvest_reuses_a_cache_only_for_its_own_corpus_and_split(tmp_path, capsys):
    """Issue 11, defect 3: a cache used to be reused for any corpus or split (and named the split asked for)."""
    model_dir, corpus_dir = _saved(tmp_path)
    other = pcfg.save_corpus(pcfg.build_corpus(pcfg.load_grammar("english"), n=60, seed=1, max_length=10,
                                               progress=False), tmp_path / "other")
    base = ["harvest", "--model", str(model_dir), "--hook", HOOK, "--out", str(tmp_path / "a"), "--no-progress"]
    assert main([*base, "--corpus", str(corpus_dir), "--split", "validation"]) == 0
    assert "tokens of split 'validation'" in capsys.readouterr().out
    n_val = ActivationCache(tmp_path / "a").n_tokens
    assert main([*base, "--corpus", str(corpus_dir), "--split", "train"]) == 2
    assert "holds a harvest of another source (split 'validation'" in capsys.readouterr().err
    assert main([*base, "--corpus", str(other), "--split", "validation"]) == 2
    assert "holds a harvest of another source" in capsys.readouterr().err
    assert ActivationCache(tmp_path / "a").n_tokens == n_val  # untouched
    assert main([*base, "--corpus", str(corpus_dir), "--split", "train", "--overwrite"]) == 0
    assert "tokens of split 'train'" in capsys.readouterr().out
    cache = ActivationCache(tmp_path / "a")
    assert cache.metadata["source"]["split"] == "train" and cache.n_tokens > n_val
    record = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert record["kind"] == "activations" and record["inputs"]["source"]["split"] == "train"
    assert record["tokenizer"] == _corpus().tokenizer_identity
    assert record["inputs"]["corpus"]["path"] == str(corpus_dir) and record["inputs"]["lm"]["kind"] == "lm"


def test_cli_harvest_refuses_an_empty_split(tmp_path, capsys):
    """Issue 11, defect 7: a split left empty by --val-fraction 0 used to end in an IndexError."""
    model_dir, _ = _saved(tmp_path)
    empty = pcfg.save_corpus(pcfg.build_corpus(pcfg.load_grammar("english"), n=10, seed=0, val_fraction=0,
                                               max_length=10, progress=False), tmp_path / "val0")
    argv = ["harvest", "--model", str(model_dir), "--corpus", str(empty), "--hook", HOOK, "--split", "validation",
            "--out", str(tmp_path / "a"), "--no-progress"]
    assert main(argv) == 2
    assert "split 'validation' of" in capsys.readouterr().err
