"""Concept groups: several label classes probed as one concept (the SpaDE paper counts pronouns as nouns)."""

import pytest
import torch
from _probe_helpers import LinearReluSAE, random_stream

from spade_lens.errors import SpadeLensError
from spade_lens.probe import probe_saes
from spade_lens.probe.counts import ProbeCounts
from spade_lens.probe.groups import group_concepts, parse_group

NAMES = ["Adj", "N", "V", "Pro"]


def test_grouped_probe_equals_a_probe_of_merged_labels():
    x, labels, batches = random_stream(300, 6, 4, batch=70)
    sae = LinearReluSAE(6, 10)
    grouped = probe_saes(sae, batches, label_names=NAMES, groups={"N+Pro": ["N", "Pro"]}, progress=False)["sae"]
    merged = labels.clone()
    merged[merged == 3] = 1
    by_hand = probe_saes(sae, [(x, merged)], label_names=["Adj", "N+Pro", "V", "Pro"], progress=False)["sae"]
    assert grouped.concept_names == ["Adj", "N+Pro", "V"]
    assert torch.equal(grouped.concept_tokens, by_hand.concept_tokens[:3])
    assert torch.allclose(grouped.f1, by_hand.f1[:3])
    assert int(grouped.concept_tokens[1]) == int(((labels == 1) | (labels == 3)).sum())
    assert grouped.n_labelled == int((labels >= 0).sum())  # "no label" rows stay unlabelled


def test_a_latent_firing_on_either_member_is_the_group_s_perfect_latent():
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 4, (400,), generator=gen)

    class OnNounsAndPronouns:
        def encode(self, x):
            z = torch.rand(x.shape[0], 3, generator=gen) * (torch.rand(x.shape[0], 3, generator=gen) < 0.3)
            z[:, 1] = ((x[:, 0] == 1) | (x[:, 0] == 3)).float()
            return z

    x = torch.stack([labels.float(), torch.zeros(400)], dim=1)
    six = probe_saes(OnNounsAndPronouns(), [(x, labels)], label_names=NAMES, progress=False)["sae"]
    five = probe_saes(OnNounsAndPronouns(), [(x, labels)], label_names=NAMES, groups={"NP": ["Pro", "N"]},
                      progress=False)["sae"]
    assert float(six.best_f1[1]) < 0.9  # alone, nouns share that latent with pronouns
    assert five.concept_names == ["Adj", "NP", "V"]
    assert float(five.best_f1[1]) == pytest.approx(1.0) and int(five.best_latent[1]) == 1


def test_group_lookup_and_unlabelled_rows():
    lookup, names = group_concepts(NAMES, {"N": ["N", "Pro"]})  # a group may keep a member's name
    assert names == ["Adj", "N", "V"] and lookup.tolist() == [0, 1, 2, 1]
    counts = ProbeCounts(2, n_concepts=4)
    counts.update(torch.ones(4, 2), torch.tensor([3, -1, 2, 0]))
    merged = counts.regrouped(lookup, len(names))
    assert merged.concept_tokens.tolist() == [1.0, 1.0, 1.0] and merged.n_labelled == 3  # Pro -> N; -1 stays out


@pytest.mark.parametrize("names, groups, match", [
    (None, {"NP": ["N", "Pro"]}, "need label_names"),
    (NAMES, {"NP": ["N", "Det"]}, "'Det' is not a concept"),
    (NAMES, {"NP": ["N"]}, "at least two concepts"),
    (NAMES, {"NP": "N,Pro"}, "at least two concepts"),
    (NAMES, {"NP": ["N", "Pro"], "X": ["Pro", "V"]}, "in both 'NP' and 'X'"),
    (NAMES, {"V": ["N", "Pro"]}, "'V' is already a concept name"),
])
def test_bad_groups_are_refused(names, groups, match):
    with pytest.raises(SpadeLensError, match=match):
        group_concepts(names, groups)


def test_parse_group():
    assert parse_group("NP=N, Pro") == ("NP", ["N", "Pro"])
    assert parse_group("N,Pro") == ("N+Pro", ["N", "Pro"])
    with pytest.raises(SpadeLensError, match="expected NAME=A,B"):
        parse_group("NP=N")
