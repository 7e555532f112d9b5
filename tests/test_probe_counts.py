"""The streaming probe equals a brute-force dense computation; F1 / no-label / bad-input behaviour."""

from __future__ import annotations

import math

import pytest
import torch
from _probe_helpers import LinearReluSAE, random_stream

from spade_lens.errors import SpadeLensError
from spade_lens.probe import ProbeResult, cross_concept_mass, latent_order, probe_saes


def _dense_reference(z: torch.Tensor, labels: torch.Tensor, n_c: int):
    """Plain per-(concept, latent) loops over the full dense (tokens, latents) matrix."""
    active = z > 1e-6
    lab = labels >= 0
    f1 = torch.zeros(n_c, z.shape[1], dtype=torch.float64)
    prec = torch.zeros_like(f1)
    rec = torch.zeros_like(f1)
    for c in range(n_c):
        for i in range(z.shape[1]):
            tp = int((active[:, i] & (labels == c)).sum())
            n_act = int((active[:, i] & lab).sum())
            n_c_tok = int((labels == c).sum())
            p = tp / n_act if n_act else 0.0
            r = tp / n_c_tok if n_c_tok else 0.0
            prec[c, i], rec[c, i] = p, r
            f1[c, i] = 2 * p * r / (p + r) if p + r else 0.0
    l0_tok = active.sum(1).double()
    concept_l0 = torch.tensor([float(l0_tok[labels == c].mean()) for c in range(n_c)], dtype=torch.float64)
    return prec, rec, f1, concept_l0, float(l0_tok.mean()), float((active.sum(0) == 0).double().mean())


def test_streaming_counts_equal_dense_reference():
    x, labels, batches = random_stream(n=700, d=5, n_concepts=4, batch=64, seed=1)
    sae = LinearReluSAE(5, 12, seed=2)
    res = probe_saes({"a": sae}, batches, label="pos", progress=False)["a"]
    with torch.no_grad():
        z = sae.encode(x).double()
        x_hat = sae.decode(sae.encode(x)).double()
    prec, rec, f1, concept_l0, l0, dead = _dense_reference(z, labels, 4)
    assert res.concept_names == ["0", "1", "2", "3"]
    assert res.n_tokens == 700 and res.n_labelled == int((labels >= 0).sum())
    torch.testing.assert_close(res.precision.double(), prec, atol=1e-6, rtol=0)
    torch.testing.assert_close(res.recall.double(), rec, atol=1e-6, rtol=0)
    torch.testing.assert_close(res.f1.double(), f1, atol=1e-6, rtol=0)
    torch.testing.assert_close(res.concept_l0.double(), concept_l0, atol=1e-5, rtol=0)
    assert res.l0 == pytest.approx(l0) and res.dead_fraction == pytest.approx(dead)
    assert torch.equal(res.best_latent, f1.argmax(dim=1))
    torch.testing.assert_close(res.best_f1.double(), f1.max(dim=1).values, atol=1e-6, rtol=0)
    torch.testing.assert_close(res.top5_f1.double(), f1.topk(5, dim=1).values.mean(1), atol=1e-6, rtol=0)
    xd = x.double()
    total_var = float(xd.var(dim=0, unbiased=False).sum())
    nmse = float(((xd - x_hat) ** 2).sum(1).mean()) / total_var
    assert res.nmse == pytest.approx(nmse, rel=1e-6)
    for c in range(4):
        m = labels == c
        c_nmse = float(((xd[m] - x_hat[m]) ** 2).sum(1).mean()) / float(xd[m].var(0, unbiased=False).sum())
        assert float(res.concept_nmse[c]) == pytest.approx(c_nmse, rel=1e-4)
    gram = z.T @ z
    d = gram.diagonal().sqrt()
    cos = torch.where(torch.outer(d, d) > 0, gram / torch.outer(d, d).clamp(min=1e-300), torch.zeros_like(gram))
    assert res.cooccurrence is not None
    torch.testing.assert_close(res.cooccurrence.double(), cos, atol=1e-5, rtol=0)


def test_several_saes_one_pass_and_generator_stream():
    x, labels, batches = random_stream(n=300, d=4, n_concepts=3, batch=50, seed=3)
    saes = {"small": LinearReluSAE(4, 6, seed=0), "big": LinearReluSAE(4, 10, seed=1)}
    consumed = []

    def gen():
        for b in batches:
            consumed.append(1)
            yield b

    res = probe_saes(saes, gen(), progress=False)
    assert list(res) == ["small", "big"] and len(consumed) == len(batches)
    assert res["small"].width == 6 and res["big"].width == 10 and res["big"].architecture == "relu"
    alone = probe_saes({"big": saes["big"]}, batches, progress=False)["big"]
    torch.testing.assert_close(alone.f1, res["big"].f1)


def test_f1_is_one_for_a_latent_firing_exactly_on_its_concept():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (200,), generator=gen)

    class Indicator:
        def encode(self, x):
            z = torch.rand(x.shape[0], 4, generator=gen) * (torch.rand(x.shape[0], 4, generator=gen) < 0.3)
            z[:, 2] = (x[:, 0] == 1).float() * 2.5  # fires exactly on concept 1
            return z

    x = torch.stack([labels.float(), torch.zeros(200)], dim=1)
    res = probe_saes(Indicator(), [(x[:100], labels[:100]), (x[100:], labels[100:])], progress=False)["sae"]
    assert int(res.best_latent[1]) == 2
    assert float(res.best_f1[1]) == pytest.approx(1.0)
    assert float(res.precision[1, 2]) == 1.0 and float(res.recall[1, 2]) == 1.0
    assert math.isnan(res.nmse)  # no decode -> no reconstruction statistics


def test_no_label_tokens_are_ignored_for_concept_stats():
    x, labels, _ = random_stream(n=400, d=5, n_concepts=3, batch=400, seed=4, no_label_share=0.0)
    sae = LinearReluSAE(5, 8, seed=5)
    base = probe_saes(sae, [(x, labels)], label_names=["a", "b", "c"], progress=False)["sae"]
    extra_x = torch.randn(300, 5, generator=torch.Generator().manual_seed(9)) * 5
    both = probe_saes(
        sae,
        [(x, labels), (extra_x, torch.full((300,), -1))],
        label_names=["a", "b", "c"],
        progress=False,
    )["sae"]
    for field in ("precision", "recall", "f1", "best_f1", "top5_f1", "concept_l0", "concept_tokens"):
        torch.testing.assert_close(getattr(both, field), getattr(base, field))
    assert both.n_tokens == 700 and both.n_labelled == 400
    assert both.l0 != pytest.approx(base.l0)  # the unlabelled tokens still count for L0


def test_label_names_fix_concepts_and_unseen_concept():
    x, labels, batches = random_stream(n=100, d=3, n_concepts=2, batch=40, seed=6)
    res = probe_saes(LinearReluSAE(3, 5), batches, label_names=["N", "V", "Adj"], progress=False)["sae"]
    assert res.concept_names == ["N", "V", "Adj"] and res.f1.shape == (3, 5)
    assert int(res.best_latent[2]) == -1 and float(res.best_f1[2]) == 0.0 and math.isnan(float(res.concept_l0[2]))
    m = res.metrics()
    assert set(m) == {"architecture", "width", "l0", "nmse", "dead_fraction", "concepts"}
    assert set(m["concepts"]["N"]) == {"best_f1", "top5_f1", "best_latent", "l0"}
    assert m["concepts"]["Adj"]["l0"] is None


def test_max_tokens_cuts_the_stream():
    x, labels, batches = random_stream(n=300, d=3, n_concepts=2, batch=64, seed=7)
    sae = LinearReluSAE(3, 5)
    res = probe_saes(sae, batches, max_tokens=100, progress=False)["sae"]
    ref = probe_saes(sae, [(x[:100], {"pos": labels[:100]})], progress=False)["sae"]
    assert res.n_tokens == 100
    torch.testing.assert_close(res.f1, ref.f1)


def test_cooccurrence_grouping_and_cross_concept_mass():
    # latents 0,1 fire on concept 0; latent 2 on concept 1; latent 3 never fires.
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    z = torch.zeros(6, 4)
    z[labels == 0, 0] = 1.0
    z[labels == 0, 1] = 2.0
    z[labels == 1, 2] = 1.0
    z[0, 2] = 1.0  # one cross-concept co-firing

    class Fixed:
        def encode(self, x):
            return z

    res = probe_saes(Fixed(), [(torch.zeros(6, 1), labels)], progress=False)["sae"]
    assert res.latent_concept.tolist() == [0, 0, 1, -1]
    assert res.latent_order.tolist()[-1] == 3 and set(res.latent_order.tolist()[:2]) == {0, 1}
    cos = res.cooccurrence
    assert cos is not None and float(cos[0, 1]) == pytest.approx(1.0)
    cross = 2 * (float(cos[0, 2]) + float(cos[1, 2]))
    total = cross + 2 * float(cos[0, 1])
    assert res.cross_concept_mass == pytest.approx(cross / total)
    assert cross_concept_mass(torch.eye(2), torch.tensor([0, 1])) != cross_concept_mass(torch.eye(2), torch.tensor([0, 1]))  # NaN
    assert latent_order(torch.zeros(0, 3)).tolist() == [0, 1, 2]


def test_cooccurrence_skipped_for_wide_saes():
    _, _, batches = random_stream(n=50, d=3, n_concepts=2, batch=50)
    res = probe_saes(LinearReluSAE(3, 9), batches, max_cooccurrence_latents=8, progress=False)["sae"]
    assert res.cooccurrence is None and math.isnan(res.cross_concept_mass)
    assert isinstance(res, ProbeResult)


@pytest.mark.parametrize(
    ("kwargs", "batches", "match"),
    [
        ({}, [], "batches: received no tokens"),
        ({}, [torch.zeros(3, 2)], "expected a LabelledBatch or an"),
        ({"label": "phrase"}, [(torch.zeros(3, 2), {"pos": torch.zeros(3, dtype=torch.long)})], r"label: 'phrase'.*\['pos'\]"),
        ({}, [(torch.zeros(3), torch.zeros(3, dtype=torch.long))], r"acts of batch 0 have shape \(3,\)"),
        ({}, [(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))], r"labels of batch 0 have shape \(4,\); expected \(3,\)"),
        ({}, [(torch.zeros(3, 2), torch.zeros(3))], "expected integers"),
        ({"label_names": ["a"]}, [(torch.zeros(3, 2), torch.tensor([0, 1, 0]))], "label id 1"),
        ({"max_tokens": 0}, [(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))], "max_tokens: received 0"),
    ],
)
def test_bad_inputs_raise(kwargs, batches, match):
    with pytest.raises(SpadeLensError, match=match):
        probe_saes(LinearReluSAE(2, 3), batches, progress=False, **kwargs)


def test_bad_saes_raise():
    with pytest.raises(SpadeLensError, match="saes: received an empty mapping"):
        probe_saes({}, [], progress=False)
    with pytest.raises(SpadeLensError, match=r"saes\['x'\]: a int has no encode"):
        probe_saes({"x": 3}, [], progress=False)

    class Bad:
        def encode(self, x):
            return x[0]

    with pytest.raises(SpadeLensError, match=r"encode returned shape \(2,\)"):
        probe_saes(Bad(), [(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))], progress=False)


@pytest.mark.parametrize(("n", "k", "chunk"), [(200, 3, 2**22), (200, 3, 50), (8, 6, 2**22), (40, 0, 2**22)])
def test_accumulate_gram_sparse_and_dense_paths_equal_matmul(monkeypatch, n, k, chunk):
    import spade_lens.probe.cooccurrence as cooc

    monkeypatch.setattr(cooc, "PAIR_CHUNK", chunk)
    gen = torch.Generator().manual_seed(n + k)
    z = torch.zeros(37, n)
    if k:
        idx = torch.rand(37, n, generator=gen).topk(k, dim=1).indices
        z.scatter_(1, idx, torch.randn(37, k, generator=gen))
        z[5] = 0.0  # a row with no active latent
        z[6, idx[6, 0]] = 0.0  # a row with fewer non-zeros than the others
    gram = torch.full((n, n), 0.5, dtype=torch.float64)
    cooc.accumulate_gram(gram, z)
    torch.testing.assert_close(gram, 0.5 + z.double().T @ z.double(), atol=1e-5, rtol=1e-6)
