"""The dashboard's data equals the probe's numbers and plain references computed from all activations at once."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _dashboard_helpers import HOOK, shared_tiny_run
from _threads import torch_threads

from hooks import ActivationCache
from pcfg import load_corpus
from spade_lens.dashboard import DashboardConfig, build_dashboard, read_data
from spade_lens.lm import load_lm
from spade_lens.probe import probe_saes
from spade_lens.saes import load_sae

BATCH, TOP_K, WINDOW = 50, 5, 3  # several batches, full heaps and windows crossing batch boundaries


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    run = shared_tiny_run()
    saes = {arch: load_sae(path) for arch, path in run.saes.items()}
    out = tmp_path_factory.mktemp("dash") / "dashboard"
    cfg = DashboardConfig(batch_size=BATCH, top_k=TOP_K, window=WINDOW)
    with torch_threads(1), torch.no_grad():
        files = build_dashboard(saes, run.acts, run.corpus, out, model=run.lm, cfg=cfg, progress=False)
        cache = ActivationCache(run.acts)
        probe = probe_saes(saes, cache.batches(HOOK, BATCH, shuffle=False), label="pos",
                           label_names=cache.label_names["pos"], progress=False)
        z = {name: torch.cat([sae.encode(b.acts) for b in cache.batches(HOOK, BATCH, shuffle=False)])
             for name, sae in saes.items()}
    index = read_data(out / "data" / "index.js")
    blocks = {}
    for s in index["saes"]:
        latents = []
        for b in range(s["blocks"]):
            latents += read_data(out / "data" / s["folder"] / f"block-{b:04d}.js")["latents"]
        blocks[s["name"]] = latents
    return run, saes, files, probe, z, cache.load(HOOK), index, blocks


def _active(z):
    return z > 1e-6


def test_index_numbers_are_the_probes(built):
    run, saes, files, probe, z, rows, index, _ = built
    assert index["split"] == files.split == "validation"
    assert [s["name"] for s in index["saes"]] == list(saes)
    assert index["concepts"] == probe["spade"].concept_names
    for s in index["saes"]:
        r = probe[s["name"]]
        assert (s["l0"], s["nmse"], s["dead_fraction"]) == (r.l0, r.nmse, r.dead_fraction)
        assert s["best_f1"] == r.best_f1.tolist() and s["best_latent"] == r.best_latent.tolist()
        assert s["top5_f1"] == r.top5_f1.tolist() and s["concept_l0"] == r.concept_l0.tolist()
        lat = s["latents"]
        assert lat["concept"] == r.latent_concept.tolist()
        assert lat["firing_rate"] == r.firing_rate.tolist()
        for i, c in enumerate(r.latent_concept.tolist()):
            want = (r.f1[c, i], r.precision[c, i], r.recall[c, i]) if c >= 0 else (0.0, 0.0, 0.0)
            assert (lat["f1"][i], lat["precision"][i], lat["recall"][i]) == tuple(float(v) for v in want)
        active = _active(z[s["name"]])
        assert lat["firings"] == active.sum(0).tolist()
        assert s["dead"] == int((active.sum(0) == 0).sum())
        zmax = z[s["name"]].max(0).values
        assert lat["max_act"] == [float(m) if f else None for m, f in zip(zmax, active.any(0), strict=True)]
    assert files.results.keys() == probe.keys()


def test_block_concept_scores_are_the_probes_and_count_firings(built):
    run, saes, files, probe, z, rows, index, blocks = built
    labels = rows.labels["pos"]
    n_concepts = len(index["concepts"])
    for name, latents in blocks.items():
        r = probe[name]
        active = _active(z[name])
        assert [d["index"] for d in latents] == list(range(r.width))
        for d in latents:
            i = d["index"]
            assert d["precision"] == r.precision[:, i].tolist()
            assert d["recall"] == r.recall[:, i].tolist()
            assert d["f1"] == r.f1[:, i].tolist()
            assert d["firing_rate"] == float(r.firing_rate[i])
            on = labels[active[:, i]]
            assert d["tp"] == [int((on == c).sum()) for c in range(n_concepts)]
            assert d["firings"] == int(active[:, i].sum()) and d["labelled_firings"] == int((on >= 0).sum())
            assert d["concept"] == int(r.latent_concept[i])


def test_top_examples_equal_a_sort_of_all_tokens_with_their_corpus_context(built):
    run, saes, files, probe, z, rows, index, blocks = built
    corpus = load_corpus(run.corpus).dataset["validation"]
    seq, pos = rows.labels["seq_index"].tolist(), rows.labels["position"].tolist()
    row_of = {(s, p): r for r, (s, p) in enumerate(zip(seq, pos, strict=True))}
    checked = 0
    for name, latents in blocks.items():
        zz = z[name].numpy()
        for d in latents:
            i = d["index"]
            on = np.nonzero(zz[:, i] > 1e-6)[0]
            order = on[np.lexsort((on, -zz[on, i].astype(np.float64)))][:TOP_K]
            assert [ex["row"] for ex in d["examples"]] == order.tolist()
            for ex, r in zip(d["examples"], order, strict=True):
                assert ex["act"] == float(zz[r, i]) and (ex["seq"], ex["pos"]) == (seq[r], pos[r])
                sentence = corpus[ex["seq"]]
                last = len(sentence["input_ids"]) - 2  # BOS and EOS are not captured
                span = range(max(1, ex["pos"] - WINDOW), min(last, ex["pos"] + WINDOW) + 1)
                assert ex["tokens"] == [sentence["input_ids"][p] for p in span]
                assert ex["labels"] == [sentence["pos"][p] for p in span]
                assert ex["centre"] == ex["pos"] - span.start
                want = [float(f"{zz[row_of[(ex['seq'], p)], i]:.4g}") for p in span]
                assert ex["acts"] == want
                checked += 1
    assert checked > 100


def test_histograms_count_every_firing_in_exact_power_of_two_bins(built):
    run, saes, files, probe, z, rows, index, blocks = built
    bins = DashboardConfig().bins
    for name, latents in blocks.items():
        for d in latents:
            values = z[name][:, d["index"]]
            values = values[values > 1e-6].double()
            if values.numel() == 0:
                assert d["histogram"] is None
                continue
            h = d["histogram"]
            assert h["width"] == 2.0 ** math.frexp(float(values.max()) / bins)[1]
            want = torch.bincount((values / h["width"]).floor().long(), minlength=len(h["counts"]))
            assert h["counts"] == want.tolist() and sum(h["counts"]) == d["firings"]


def test_spade_prototype_distances_match_a_direct_computation(built):
    run, saes, files, probe, z, rows, index, blocks = built
    sae = saes["spade"]
    with torch.no_grad():
        dist = sae.distances(sae.normalize(rows.acts)).double().clamp(min=0).sqrt()
    active = _active(z["spade"])
    for d in blocks["spade"]:
        on = dist[active[:, d["index"]], d["index"]]
        got = d["distances"]
        assert got["mean_all"] == pytest.approx(float(dist[:, d["index"]].mean()), rel=1e-6)
        if on.numel():
            assert got["mean"] == pytest.approx(float(on.mean()), rel=1e-6)
            assert got["std"] == pytest.approx(float(on.std(unbiased=False)), rel=1e-4, abs=1e-6)
            assert got["min"] == pytest.approx(float(on.min()), rel=1e-6)
            assert got["max"] == pytest.approx(float(on.max()), rel=1e-6)
    assert all(d["distances"] is None for d in blocks["relu"])
    assert [s["has_distances"] for s in index["saes"]] == [name == "spade" for name in saes]


def test_logit_lens_is_the_decoder_rows_times_the_unembedding(built):
    run, saes, files, probe, z, rows, index, blocks = built
    w_u = load_lm(run.lm).W_U.detach()
    for name, sae in saes.items():
        logits = sae.W_dec.detach() @ w_u
        for d in blocks[name]:
            top = logits[d["index"]].topk(10)
            bottom = logits[d["index"]].topk(10, largest=False)
            assert [t for t, _ in d["logits"]["top"]] == top.indices.tolist()
            assert [t for t, _ in d["logits"]["bottom"]] == bottom.indices.tolist()
            assert [v for _, v in d["logits"]["top"]] == pytest.approx(top.values.tolist(), rel=1e-3)


def test_block_token_table_is_the_corpus_tokenizers_text(built):
    run, saes, files, probe, z, rows, index, blocks = built
    vocab = load_corpus(run.corpus).tokenizer.vocab
    block = read_data(files.out_dir / "data" / "relu" / "block-0000.js")
    used = {t for d in block["latents"] for ex in d["examples"] for t in ex["tokens"]}
    assert used <= {int(t) for t in block["tokens"]}
    for t, (text, space) in block["tokens"].items():
        assert text == vocab[int(t)] and space is True
