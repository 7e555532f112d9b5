"""Grammaticality: the Earley recogniser agrees with nltk's chart parser and accepts every sample."""

import itertools
import random

import nltk
import pytest

from pcfg import (
    BUILTIN_GRAMMARS,
    Grammar,
    PCFGError,
    grammaticality_rate,
    is_grammatical,
    load_grammar,
    sample_sentences,
)

GRAMMARS = {name: load_grammar(name) for name in BUILTIN_GRAMMARS}


def nltk_accepts(g: Grammar, words) -> bool:
    return next(iter(nltk.ChartParser(g.nltk).parse(list(words))), None) is not None


@pytest.mark.parametrize("name", BUILTIN_GRAMMARS)
def test_every_sampled_sentence_is_grammatical(name):
    g = GRAMMARS[name]
    sents = sample_sentences(g, 1000, seed=4, max_length=40)
    assert grammaticality_rate(g, [s.words for s in sents]) == 1.0


@pytest.mark.parametrize("name", BUILTIN_GRAMMARS)
def test_agrees_with_nltk_chart_parser_on_small_cases(name):
    g = GRAMMARS[name]
    rng = random.Random(0)
    samples = [s.words for s in sample_sentences(g, 200, seed=9, max_length=8)]
    cases = []
    for words in samples[:60]:
        cases.append(list(words))
        broken = list(words)  # one word replaced, dropped or duplicated: often ungrammatical
        i = rng.randrange(len(broken))
        op = rng.randrange(3)
        if op == 0:
            broken[i] = rng.choice(g.terminals)
        elif op == 1 and len(broken) > 1:
            del broken[i]
        else:
            broken.insert(i, broken[i])
        cases.append(broken)
    cases += [[rng.choice(g.terminals) for _ in range(rng.randint(1, 6))] for _ in range(60)]
    results = [(is_grammatical(g, c), nltk_accepts(g, c)) for c in cases]
    assert all(a == b for a, b in results)
    assert 0 < sum(a for a, _ in results) < len(results)  # both kinds were tested


def test_exhaustive_small_grammar_against_nltk():
    # unary chain, mixed terminal/nonterminal rules, a ternary rule, left and right recursion
    g = Grammar.from_string(
        "S -> A [0.4] | S 'x' S [0.2] | 'x' B [0.4]\nA -> B [0.5] | 'y' [0.5]\nB -> 'z' [0.6] | B 'y' [0.4]"
    )
    for n in range(1, 6):
        for words in itertools.product(["x", "y", "z"], repeat=n):
            assert is_grammatical(g, words) == nltk_accepts(g, words), words


def test_english_examples():
    g = GRAMMARS["english"]
    assert is_grammatical(g, "she sees")
    assert is_grammatical(g, "big cat and she sees small dog quickly")
    assert not is_grammatical(g, "sees she")
    assert not is_grammatical(g, "cat sees")  # a noun needs its adjective
    assert not is_grammatical(g, "she sees zebra")
    assert not is_grammatical(g, [])
    assert not is_grammatical(g, ["<bos>", "she", "sees", "<eos>"])
    assert grammaticality_rate(g, ["she sees", "sees she", ["he", "eats"], "she"]) == 0.5


def test_argument_errors():
    g = GRAMMARS["english"]
    with pytest.raises(PCFGError, match="sentences: expected at least one word sequence"):
        grammaticality_rate(g, [])
    with pytest.raises(PCFGError, match="words: expected a sequence of words"):
        is_grammatical(g, [1, 2])
    with pytest.raises(PCFGError, match="grammar: expected a pcfg.Grammar, got str"):
        is_grammatical("english", "she sees")
