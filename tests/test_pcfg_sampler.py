"""The seeded sampler: determinism, gold labels consistent with the tree, length cap, rule frequencies."""

import math
import random
from collections import Counter

import nltk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcfg import BUILTIN_GRAMMARS, PCFGError, Sentence, is_grammatical, load_grammar, sample_sentences
from pcfg.grammar import Grammar

GRAMMARS = {name: load_grammar(name) for name in BUILTIN_GRAMMARS}


def labels_from_tree(tree: nltk.Tree, depth: int = 0, parent: str | None = None):
    """(word, pos, phrase, depth) per leaf, read off the tree: the obvious slow reference."""
    out = []
    for child in tree:
        if isinstance(child, str):
            out.append((child, tree.label(), parent if parent is not None else tree.label(), depth))
        else:
            out.extend(labels_from_tree(child, depth + 1, tree.label()))
    return out


@pytest.mark.parametrize("name", BUILTIN_GRAMMARS)
def test_same_seed_same_sentences_and_global_state_untouched(name):
    g = GRAMMARS[name]
    random.seed(123)
    before = random.getstate()
    a = sample_sentences(g, 200, seed=7)
    assert random.getstate() == before
    b = sample_sentences(g, 200, seed=7)
    assert a == b
    assert sample_sentences(g, 50, seed=7) == a[:50]
    assert sample_sentences(g, 200, seed=8) != a


@pytest.mark.parametrize("name", BUILTIN_GRAMMARS)
def test_labels_agree_with_the_tree_and_sentences_parse(name):
    g = GRAMMARS[name]
    for s in sample_sentences(g, 300, seed=1, max_length=30):
        assert isinstance(s, Sentence)
        assert len(s.words) == len(s.pos) == len(s.phrase) == len(s.depth) == len(s) >= 1
        assert tuple(s.tree.leaves()) == s.words
        assert s.tree.label() == g.start
        assert labels_from_tree(s.tree) == list(zip(s.words, s.pos, s.phrase, s.depth, strict=True))
        assert set(s.pos) <= set(g.parts_of_speech) and set(s.phrase) <= set(g.phrase_labels)
        assert is_grammatical(g, s.words)


def test_ambiguous_word_gets_its_tag_from_the_derivation():
    tags = Counter()
    for s in sample_sentences(GRAMMARS["rich"], 2000, seed=0):
        tags.update((w, p) for w, p in zip(s.words, s.pos, strict=True) if w in ("saw", "that"))
    assert tags[("saw", "N")] > 0 and tags[("saw", "V")] > 0
    assert tags[("that", "Det")] > 0 and tags[("that", "Rel")] > 0


@pytest.mark.parametrize("name", BUILTIN_GRAMMARS)
def test_production_frequencies_match_probabilities(name):
    """Per-rule z-test: |observed - n p| < 4.5 sqrt(n p (1 - p)) for every rule of every nonterminal.

    Fixed seed, so deterministic. max_length is so large that rejection (which would condition the
    distribution) essentially never happens; the draws of one nonterminal are i.i.d. given its visit count.
    """
    g = GRAMMARS[name]
    sents = sample_sentences(g, 6000, seed=11, max_length=100_000)
    uses = Counter(i for s in sents for i in s.derivation)
    visits = Counter()
    for i, c in uses.items():
        visits[g.rules[i].lhs] += c
    worst = 0.0
    for i, r in enumerate(g.rules):
        n = visits[r.lhs]
        assert n > 500, r.lhs
        if r.prob in (0.0, 1.0):
            assert uses[i] == n * r.prob
            continue
        z = abs(uses[i] - n * r.prob) / math.sqrt(n * r.prob * (1 - r.prob))
        worst = max(worst, z)
    assert worst < 4.5


def test_max_length_by_rejection_and_errors():
    g = GRAMMARS["english"]
    sents = sample_sentences(g, 500, seed=2, max_length=5)
    assert max(map(len, sents)) <= 5 and min(map(len, sents)) >= 2
    with pytest.raises(PCFGError, match=r"max_length=1: only 0 sentences accepted after \d+ draws"):
        sample_sentences(g, 1, seed=0, max_length=1)
    for kwargs, msg in [
        ({"n": -1}, r"n: expected an int >= 0, got -1"),
        ({"seed": 1.5}, r"seed: expected an int >= 0, got 1\.5"),
        ({"max_length": 0}, r"max_length: expected an int >= 1, got 0"),
    ]:
        args = {"n": 1, "seed": 0} | kwargs
        with pytest.raises(PCFGError, match=msg):
            sample_sentences(g, **args)
    with pytest.raises(PCFGError, match="grammar: expected a pcfg.Grammar, got str"):
        sample_sentences("english", 1, 0)


def test_max_depth_guard():
    g = Grammar.from_string("S -> 'a' [0.5] | A [0.5]\nA -> S [1.0]")
    sents = sample_sentences(g, 200, seed=0, max_depth=4)
    assert all(s.depth[0] <= 4 for s in sents)
    assert all(s.phrase == (("S",) if s.depth[0] == 0 else ("A",)) for s in sents)


def test_zero_probability_rules_are_never_drawn():
    g = Grammar.from_string("S -> 'a' [0.3] | 'b' [0.7] | 'c' [0.0]")
    words = {s.words for s in sample_sentences(g, 2000, seed=0)}
    assert words == {("a",), ("b",)}


def test_mixed_rules_label_words_by_their_rule():
    g = Grammar.from_string("S -> 'the' N [1.0]\nN -> 'cat' [0.5] | 'dog' [0.5]")
    s = sample_sentences(g, 1, seed=0)[0]
    assert s.words[0] == "the" and s.pos == ("S", "N") and s.phrase == ("S", "S") and s.depth == (0, 1)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), name=st.sampled_from(BUILTIN_GRAMMARS), max_length=st.integers(3, 40))
def test_property_any_seed_gives_valid_aligned_sentences(seed, name, max_length):
    g = GRAMMARS[name]
    for s in sample_sentences(g, 5, seed=seed, max_length=max_length):
        assert 1 <= len(s.words) <= max_length
        assert len(s.pos) == len(s.phrase) == len(s.depth) == len(s.words)
        assert set(s.pos) <= set(g.parts_of_speech) and set(s.phrase) <= set(g.phrase_labels)
        assert all(d >= 1 for d in s.depth)
        assert is_grammatical(g, s.words)
