"""Group F1: the latents whose best concept is c, taken together, against the tokens of c."""

import pytest
import torch

from spade_lens.probe.coverage import group_f1, group_sizes, remap_labels


def test_group_f1_equals_a_hand_computation():
    # 6 tokens, 4 latents; latents 0, 1 -> concept 0, latent 2 -> concept 1, latent 3 -> none
    z = torch.tensor([[1.0, 0, 0, 0],   # concept 0, predicted 0
                      [0, 0.5, 0, 0],   # concept 0, predicted 0 (the other latent of the group)
                      [0, 0, 0, 1.0],   # concept 0, predicted nothing
                      [0, 0, 1.0, 0],   # concept 1, predicted 1
                      [0.2, 0, 0, 0],   # concept 1, predicted 0 (a false positive of group 0)
                      [0, 0, 1.0, 0]])  # unlabelled: left out
    labels = torch.tensor([0, 0, 0, 1, 1, -1])
    f1 = group_f1(z, labels, torch.tensor([0, 0, 1, -1]), 2)
    p0, r0 = 2 / 3, 2 / 3
    p1, r1 = 1 / 1, 1 / 2
    assert f1.tolist() == pytest.approx([2 * p0 * r0 / (p0 + r0), 2 * p1 * r1 / (p1 + r1)])
    assert group_sizes(torch.tensor([0, 0, 1, -1]), 3) == [2, 1, 0]


def test_a_tiled_concept_scores_one_as_a_group_and_low_per_latent():
    # concept 0 tiled by 10 latents, each firing on its own tenth of the tokens
    t = 100
    z = torch.zeros(t, 10)
    z[torch.arange(t), torch.arange(t) % 10] = 1.0
    f1 = group_f1(z, torch.zeros(t, dtype=torch.long), torch.zeros(10, dtype=torch.long), 1)
    assert float(f1[0]) == pytest.approx(1.0)


def test_remap_labels_for_a_grouped_view():
    labels = torch.tensor([0, 1, 2, -1, 1])
    assert remap_labels(labels, torch.tensor([0, 0, 1])).tolist() == [0, 0, 1, -1, 0]
    assert remap_labels(labels, None) is labels
