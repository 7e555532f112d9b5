"""The synthetic geometry datasets have their stated means, variances and intrinsic dimensions."""

from __future__ import annotations

import math

import pytest
import torch

from spade_lens.errors import SpadeLensError
from spade_lens.synthetic import (
    HETEROGENEITY_DIMS,
    heterogeneity_dataset,
    heterogeneity_means,
    separability_centres,
    separability_dataset,
)


def test_separability_centres_and_variances():
    x, labels, names = separability_dataset(30_000, seed=0)
    assert x.shape == (30_000, 2) and x.dtype == torch.float32 and labels.dtype == torch.int64
    assert names == ["outer_000", "inner_060", "outer_120", "inner_180", "outer_240", "inner_300"]
    centres = separability_centres()
    for c in range(6):
        angle = math.radians(60 * c)
        radius = 1.5 if c % 2 == 0 else 0.5
        assert centres[c].tolist() == pytest.approx([radius * math.cos(angle), radius * math.sin(angle)], abs=1e-6)
        pts = x[labels == c].double()
        assert len(pts) == 5000  # balanced
        assert pts.mean(0).tolist() == pytest.approx(centres[c].tolist(), abs=0.01)
        assert pts.var(0).tolist() == pytest.approx([0.022, 0.022], rel=0.06)
        assert abs(float(torch.corrcoef(pts.T)[0, 1])) < 0.05  # isotropic


def test_separability_inner_clusters_inside_outer_hull():
    centres = separability_centres()
    # Inner centres lie inside the triangle of the outer centres: distance to origin 0.5 < inradius 0.75.
    outer = centres[0::2]
    inradius = float(outer[0].norm()) * math.cos(math.pi / 3)
    assert inradius == pytest.approx(0.75)
    assert all(float(c.norm()) < inradius for c in centres[1::2])


def test_heterogeneity_means_variances_and_intrinsic_dims():
    n = 10_000
    x, labels, names = heterogeneity_dataset(n, seed=3)
    assert x.shape == (n, 128) and names == [f"dim_{k}" for k in HETEROGENEITY_DIMS]
    means = heterogeneity_means(3)
    assert means.norm(dim=1).tolist() == pytest.approx([1.0] * 5, rel=1e-5)
    for c, d_c in enumerate(HETEROGENEITY_DIMS):
        pts = x[labels == c].double()
        assert len(pts) == n // 5
        assert (pts.mean(0) - means[c].double()).norm() < 0.01
        var = pts.var(0)
        assert float(var.sum()) == pytest.approx(0.02, rel=0.05)  # same total variance for every concept
        assert float(var[:d_c].mean()) == pytest.approx(0.02 / d_c, rel=0.05)
        assert float(var[d_c:].sum()) < 1e-10  # nothing outside the first d_c coordinates
        eig = torch.linalg.eigvalsh(torch.cov(pts.T))
        assert int((eig > 1e-3 * eig.max()).sum()) == d_c  # intrinsic dimension = rank of centred covariance


def test_seeded_and_any_size():
    a = heterogeneity_dataset(101, seed=5, dims=(2, 3), d=8)
    b = heterogeneity_dataset(101, seed=5, dims=(2, 3), d=8)
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.x, heterogeneity_dataset(101, seed=6, dims=(2, 3), d=8).x)
    assert torch.bincount(a.labels).tolist() == [51, 50]
    fresh = heterogeneity_dataset(4000, seed=7, means_seed=3)  # other points, same concept means as seed 3
    assert not torch.equal(fresh.x[:101], heterogeneity_dataset(101, seed=3).x)
    for c in range(5):
        assert (fresh.x[fresh.labels == c].double().mean(0) - heterogeneity_means(3)[c].double()).norm() < 0.02
    s1, s2 = separability_dataset(7, seed=1), separability_dataset(7, seed=1)
    assert torch.equal(s1.x, s2.x) and s1.x.shape == (7, 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, r"n: received 0; expected a positive int"),
        ({"n": 10, "seed": 1.5}, r"seed: received 1.5"),
        ({"n": 10, "d": 0}, r"d: received 0"),
        ({"n": 10, "dims": ()}, r"dims: received \(\)"),
        ({"n": 10, "dims": (6, 200)}, r"dims: received \(6, 200\).*d=128"),
        ({"n": 10, "mean_norm": -1.0}, r"mean_norm: received -1.0"),
        ({"n": 10, "means_seed": "a"}, r"means_seed: received 'a'"),
    ],
)
def test_heterogeneity_bad_inputs(kwargs, match):
    with pytest.raises(SpadeLensError, match=match):
        heterogeneity_dataset(**kwargs)


def test_separability_bad_inputs():
    with pytest.raises(SpadeLensError, match=r"n: received -3"):
        separability_dataset(-3)
