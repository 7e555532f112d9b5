"""The dashboard's streaming parts on synthetic streams: batching never changes them, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _dashboard_helpers import shared_tiny_run

from hooks import ActivationCache
from pcfg import build_corpus, load_corpus, load_grammar
from spade_lens.dashboard import DashboardConfig, build_dashboard
from spade_lens.dashboard.histogram import ActivationHistogram
from spade_lens.dashboard.site import check_out_dir
from spade_lens.dashboard.tokens import matching_split, token_texts
from spade_lens.dashboard.topk import NO_TOKEN, TopExamples
from spade_lens.errors import SpadeLensError


def _stream(n_rows: int = 300, n_latents: int = 7, seed: int = 0):
    """Sparse latents with many ties (values on a grid) and sentence-like row metadata in harvest order."""
    gen = torch.Generator().manual_seed(seed)
    z = (torch.randint(0, 6, (n_rows, n_latents), generator=gen).float() / 4) * (torch.rand(n_rows, n_latents,
                                                                                            generator=gen) < 0.3)
    seq, pos = [], []
    s = 0
    while len(seq) < n_rows:
        length = int(torch.randint(1, 9, (1,), generator=gen))
        seq += [s] * length
        pos += list(range(1, length + 1))
        s += 1
    cols = {"seq_index": torch.tensor(seq[:n_rows]), "position": torch.tensor(pos[:n_rows]),
            "token_id": torch.randint(4, 30, (n_rows,), generator=gen),
            "pos": torch.randint(-1, 6, (n_rows,), generator=gen)}
    return z, cols


def _top(z, cols, batch: int, k: int = 4, window: int = 2) -> TopExamples:
    top = TopExamples(z.shape[1], k, window, "pos")
    for start in range(0, z.shape[0], batch):
        top.update(z[start:start + batch], {c: v[start:start + batch] for c, v in cols.items()})
    top.finish()
    return top


@pytest.mark.parametrize("batch", [1, 3, 17, 300])
def test_top_examples_do_not_depend_on_batching_and_keep_the_earliest_of_ties(batch):
    z, cols = _stream()
    top, k, window = _top(z, cols, batch), 4, 2
    for i in range(z.shape[1]):
        on = np.nonzero(z[:, i].numpy() > 1e-6)[0]
        order = on[np.lexsort((on, -z[on, i].numpy()))][:k]
        assert top.row[i, : len(order)].tolist() == order.tolist()
        assert top.value[i, : len(order)].tolist() == z[order, i].tolist()
        for r, row in enumerate(order.tolist()):
            for o in range(-window, window + 1):
                j = row + o
                same = 0 <= j < z.shape[0] and cols["seq_index"][j] == cols["seq_index"][row]
                want_tok = int(cols["token_id"][j]) if same else NO_TOKEN
                assert int(top.tokens[i, r, o + window]) == want_tok
                assert float(top.acts[i, r, o + window]) == (float(z[j, i]) if same else 0.0)
                assert int(top.labels[i, r, o + window]) == (int(cols["pos"][j]) if same else NO_TOKEN)


def test_shuffled_rows_give_windows_of_one_token_not_wrong_context():
    z, cols = _stream()
    perm = torch.randperm(z.shape[0], generator=torch.Generator().manual_seed(3))
    top = _top(z[perm], {c: v[perm] for c, v in cols.items()}, batch=50)
    filled = top.value > float("-inf")
    side = torch.cat([top.tokens[:, :, :2], top.tokens[:, :, 3:]], dim=2)
    centre_ok = top.tokens[:, :, 2][filled] != NO_TOKEN
    assert bool(centre_ok.all())
    neighbours_ok = (side[filled] == NO_TOKEN) | _consecutive(top, cols, perm)[filled]
    assert bool(neighbours_ok.all())


def _consecutive(top, cols, perm):
    """(n, k, 4) True where a shown neighbour really is the token at that offset in the same sequence."""
    rows = top.row.clamp(max=len(perm) - 1)
    src = perm[rows]  # original row of each example's centre
    out = []
    for o in (-2, -1, 1, 2):
        j = (src + o).clamp(0, len(perm) - 1)
        out.append((cols["seq_index"][j] == cols["seq_index"][src]) & (cols["position"][j] == cols["position"][src] + o))
    return torch.stack(out, dim=2)


def test_top_examples_need_the_row_columns_of_a_cache():
    top = TopExamples(3, 2, 1, "pos")
    with pytest.raises(SpadeLensError, match=r"rows carry no \['token_id', 'position', 'seq_index'\]"):
        top.update(torch.ones(2, 3), {"pos": torch.zeros(2, dtype=torch.long)})


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_histogram_bins_double_exactly_as_larger_values_arrive(batch):
    gen = torch.Generator().manual_seed(0)
    # Growing values, so early bins are merged several times; one latent never fires.
    z = torch.rand(200, 4, generator=gen) * torch.linspace(0.01, 40, 200).unsqueeze(1)
    z[:, 3] = 0
    z[torch.rand(200, 4, generator=gen) < 0.4] = 0
    hist = ActivationHistogram(4, bins=8)
    for start in range(0, 200, batch):
        hist.update(z[start:start + batch])
    for i in range(3):
        v = z[:, i][z[:, i] > 1e-6].double()
        h = hist.latent(i)
        width = h["width"]
        assert v.max() < 8 * width <= 2 * v.max()  # the smallest power-of-two width that holds the max
        assert h["counts"] == torch.bincount((v / width).floor().long()).tolist()
    assert hist.latent(3) is None
    with pytest.raises(SpadeLensError, match="bins: received 6; expected a power of two"):
        ActivationHistogram(2, bins=6)


class _WordPiece:
    tokens = ["[PAD]", "[CLS]", "the", "walk", "##ing", "##s", "dog"]

    def convert_ids_to_tokens(self, i):
        return self.tokens[i]


class _ByteBPE:
    tokens = ["<|endoftext|>", "Ġthe", "Ġwalk", "ing", "Ġdog"]

    def id_to_token(self, i):
        return self.tokens[i]


def test_token_text_follows_the_tokenizers_word_markers():
    assert token_texts(_WordPiece(), [2, 3, 4, 6]) == {2: ("the", True), 3: ("walk", True), 4: ("ing", False),
                                                       6: ("dog", True)}
    assert token_texts(_ByteBPE(), [1, 2, 3]) == {1: ("the", True), 2: ("walk", True), 3: ("ing", False)}
    word_level = load_corpus(shared_tiny_run().corpus).tokenizer
    assert token_texts(word_level, [5]) == {5: (word_level.vocab[5], True)}
    with pytest.raises(SpadeLensError, match="tokenizer: a object has no vocab"):
        token_texts(object(), [1])


def test_activations_from_another_corpus_or_split_are_refused():
    run = shared_tiny_run()
    cache = ActivationCache(run.acts)
    corpus = load_corpus(run.corpus)
    assert matching_split(corpus, cache) == "validation"
    with pytest.raises(SpadeLensError, match="'train' differs at sequence"):
        matching_split(corpus, cache, "train")
    with pytest.raises(SpadeLensError, match=r"split: the corpus has no split 'test'; it has \['train', 'validation'\]"):
        matching_split(corpus, cache, "test")
    other = build_corpus(load_grammar("english"), n=500, seed=7, max_length=12, progress=False)
    with pytest.raises(SpadeLensError, match="were not harvested from this corpus"):
        matching_split(other, cache)


def test_out_folder_must_be_new_empty_or_a_dashboard(tmp_path):
    run = shared_tiny_run()
    (tmp_path / "file").write_text("x")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(SpadeLensError, match="is a file"):
        check_out_dir(tmp_path / "file", [])
    with pytest.raises(SpadeLensError, match="non-empty folder that is not a dashboard"):
        build_dashboard(run.saes, run.acts, run.corpus, tmp_path / "notes", progress=False)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    for out in (run.acts / "dashboard", run.acts, run.root):
        with pytest.raises(SpadeLensError, match="is, holds or lies inside the input"):
            check_out_dir(out, [run.acts])


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("top_k", 0, "expected an integer >= 1"), ("window", -1, "expected an integer >= 0"),
    ("bins", 12, "expected a power of two"), ("max_tokens", 0, "expected an integer >= 1"),
    ("block_size", 2.5, "expected an integer >= 1"), ("label", "", "expected a label column name"),
])
def test_bad_dashboard_config_is_a_clear_error(field, value, expected):
    with pytest.raises(SpadeLensError, match=f"DashboardConfig.{field}: received .*; {expected}"):
        DashboardConfig(**{field: value})


def test_without_chromium_the_browser_is_reported_missing_not_started(monkeypatch):
    from spade_lens.dashboard import browser

    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    monkeypatch.setattr(browser.os.path, "exists", lambda path: False)
    assert browser.chromium_paths() is None
    reason = browser.browser_missing()
    assert reason is not None and ("chromium" in reason or "selenium" in reason)
    with pytest.raises(SpadeLensError, match="browser: "), browser.headless_chromium():
        pass
