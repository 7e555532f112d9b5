"""The balanced evaluation view (exactly N tokens per concept, reproducible) and the stable ranks of the
data-data and latent-latent co-occurrence matrices."""

import pytest
import torch
from _probe_helpers import LinearReluSAE, random_stream

from spade_lens.errors import SpadeLensError
from spade_lens.probe import balanced_sample, probe_saes, stable_rank


def _stream(n=3000, d=4, concepts=3, batch=128, seed=0):
    x, labels, batches = random_stream(n, d, concepts, batch, seed=seed)
    return x, labels, batches


def test_exactly_n_tokens_of_each_concept_drawn_from_the_stream():
    x, labels, batches = _stream()
    sample = balanced_sample(batches, label="pos", per_concept=200, seed=3)
    got = sample.labels["pos"]
    assert sample.acts.shape == (600, 4)
    assert torch.equal(torch.bincount(got), torch.tensor([200, 200, 200]))
    assert torch.equal(got, torch.sort(got).values)  # grouped by concept
    # every drawn row is a row of the stream with its own label, drawn at most once
    match = (sample.acts.unsqueeze(1) == x.unsqueeze(0)).all(-1)  # (600, n)
    assert bool((match.sum(1) == 1).all())
    rows = match.float().argmax(1)
    assert torch.equal(labels[rows], got) and rows.unique().numel() == 600


def test_same_seed_same_sample_other_seed_other_sample():
    _, _, batches = _stream()
    a = balanced_sample(batches, per_concept=100, seed=1)
    b = balanced_sample(batches, per_concept=100, seed=1)
    c = balanced_sample(batches, per_concept=100, seed=2)
    assert torch.equal(a.acts, b.acts) and torch.equal(a.labels["pos"], b.labels["pos"])
    assert not torch.equal(a.acts, c.acts)


def test_draw_is_uniform_over_a_concepts_tokens():
    # 1000 tokens of one concept, 100 drawn: over 200 seeds each token is drawn about 20 times (binomial)
    x = torch.arange(1000, dtype=torch.float32).unsqueeze(1)
    batches = [(x[i:i + 64], {"pos": torch.zeros(len(x[i:i + 64]), dtype=torch.long)}) for i in range(0, 1000, 64)]
    hits = torch.zeros(1000)
    for seed in range(200):
        hits[balanced_sample(batches, per_concept=100, seed=seed).acts[:, 0].long()] += 1
    assert hits.sum() == 200 * 100
    assert hits[:500].sum() / hits.sum() == pytest.approx(0.5, abs=0.03)  # early and late tokens alike
    assert int(hits.min()) > 3 and int(hits.max()) < 45


def test_too_few_tokens_and_unlabelled_rows():
    _, labels, batches = _stream(n=400)
    n_unlabelled = int((labels < 0).sum())
    assert n_unlabelled > 0
    sample = balanced_sample(batches, per_concept=50)
    assert bool((sample.labels["pos"] >= 0).all())
    with pytest.raises(SpadeLensError, match=r"fewer tokens of some concepts \('a': \d+, 'b': \d+"):
        balanced_sample(batches, per_concept=400, label_names=["a", "b", "c"])
    with pytest.raises(SpadeLensError, match="'d': 0"):
        balanced_sample(batches, per_concept=50, label_names=["a", "b", "c", "d"])
    with pytest.raises(SpadeLensError, match="per_concept: received 0"):
        balanced_sample(batches, per_concept=0)


def test_stable_rank():
    assert stable_rank(torch.eye(5)) == pytest.approx(5.0)
    v = torch.tensor([1.0, 2.0, 3.0])
    assert stable_rank(torch.outer(v, v)) == pytest.approx(1.0)
    m = torch.diag(torch.tensor([4.0, 2.0, 1.0, 0.0]))
    assert stable_rank(m) == pytest.approx(7.0 / 4.0)


def test_probe_stable_ranks_equal_the_dense_matrices():
    x, labels, batches = _stream(n=500, d=6, batch=64)
    sae = LinearReluSAE(6, 12, seed=1)
    res = probe_saes({"s": sae}, batches, label="pos", progress=False)["s"]
    z = sae.encode(x).detach().double()
    zn = z / z.norm(dim=1, keepdim=True).clamp(min=1e-300)
    data = zn @ zn.T  # (tokens, tokens) cosine of codes
    assert res.stable_rank_data == pytest.approx(float(data.trace() / torch.linalg.matrix_norm(data, ord=2)),
                                                 rel=1e-6)
    cols = z / z.norm(dim=0, keepdim=True).clamp(min=1e-300)
    lat = cols.T @ cols  # (latents, latents) cosine of activation profiles
    assert res.stable_rank_latents == pytest.approx(float(lat.trace() / torch.linalg.matrix_norm(lat, ord=2)),
                                                    rel=1e-5)
