"""Grammar parsing and validation, expected length and entropy."""

import math

import nltk
import numpy as np
import pytest

from pcfg import BUILTIN_GRAMMARS, Grammar, PCFGError, load_grammar, sample_sentences
from pcfg.builtin import builtin_text

TINY = """
S -> NP VP [1.0]
NP -> 'a' [0.5] | 'b' [0.5]
VP -> 'c' [1.0]
"""


@pytest.mark.parametrize("name", BUILTIN_GRAMMARS)
def test_builtin_grammars_load_and_match_nltk(name):
    g = load_grammar(name)
    assert g.name == name and g.start == "S"
    ref = nltk.PCFG.fromstring(builtin_text(name))  # the files are valid nltk syntax
    ours = {(str(p.lhs()), tuple(map(str, p.rhs())), p.prob()) for p in g.nltk.productions()}
    theirs = {(str(p.lhs()), tuple(map(str, p.rhs())), p.prob()) for p in ref.productions()}
    assert ours == theirs
    assert g.terminals == sorted(g.terminals) and g.parts_of_speech == sorted(g.parts_of_speech)


def test_english_is_design_section_5():
    g = load_grammar("english")
    assert g.parts_of_speech == ["Adj", "Adv", "Conj", "N", "Pro", "V"]
    assert g.phrase_labels == ["NP", "VP"]
    for p in g.parts_of_speech:
        rules = g.rules_of(p)
        assert len(rules) == 10 and all(r.terminal == (True,) for r in rules)
        assert math.fsum(r.prob for r in rules) == pytest.approx(1.0, abs=1e-12)
    structure = {str(r) for r in g.rules if r.lhs in ("S", "NP", "VP")}
    assert structure == {
        "S -> NP VP [1]", "NP -> Adj N [0.5]", "NP -> NP Conj NP [0.25]", "NP -> Pro [0.25]",
        "VP -> V [0.25]", "VP -> V NP [0.35]", "VP -> VP Adv [0.25]", "VP -> VP Conj VP [0.15]",
    }
    # L_NP = 3 and L_VP = 2.05 / 0.45 solve the expectation equations by hand
    assert g.expected_length() == pytest.approx(3 + 2.05 / 0.45)


def test_rich_has_ambiguous_words():
    g = load_grammar("rich")
    by_word: dict[str, set[str]] = {}
    for r in g.rules:
        if r.terminal == (True,):
            by_word.setdefault(r.rhs[0], set()).add(r.lhs)
    assert {w for w, tags in by_word.items() if len(tags) > 1} >= {"saw", "fly", "that"}
    assert {"Det", "P", "Rel"} <= set(g.parts_of_speech)


def test_tiny_grammar_numbers():
    g = Grammar.from_string(TINY)
    assert g.expected_length() == pytest.approx(2.0)
    assert g.entropy() == pytest.approx(math.log(2))
    assert g.entropy_per_token() == pytest.approx(math.log(2) / 3)
    np.testing.assert_allclose(g.expected_children()[g.nonterminals.index("S")],
                               [1.0 if s in ("NP", "VP") else 0.0 for s in g.nonterminals])


def test_recursive_grammar_numbers():
    # S -> S S [0.4] | 'a' [0.6]: L = 0.6 + 0.8 L -> L = 3;  H = h + 0.8 H -> H = h / 0.2
    g = Grammar.from_string("S -> S S [0.4] | 'a' [0.6]")
    assert g.expected_length() == pytest.approx(3.0)
    h = -(0.4 * math.log(0.4) + 0.6 * math.log(0.6))
    assert g.entropy() == pytest.approx(h / 0.2)


@pytest.mark.parametrize("name", BUILTIN_GRAMMARS)
def test_expected_length_and_entropy_match_samples(name):
    g = load_grammar(name)
    sents = sample_sentences(g, 4000, seed=3, max_length=10_000)
    lengths = np.array([len(s) for s in sents], dtype=float)
    logp = np.array([-sum(math.log(g.rules[i].prob) for i in s.derivation) for s in sents])
    # 5 standard errors: a fixed seed, so this is deterministic; it only catches real mistakes
    assert abs(lengths.mean() - g.expected_length()) < 5 * lengths.std() / math.sqrt(len(sents))
    assert abs(logp.mean() - g.entropy()) < 5 * logp.std() / math.sqrt(len(sents))


def test_syntax_extras_continuation_start_and_comments():
    text = "# comment\n%start T\nT -> 'x' U \\\n  [1.0]\nU -> \"y\" [0.5] | 'z' [0.5]\n"
    g = Grammar.from_string(text)
    assert g.start == "T" and g.terminals == ["x", "y", "z"]
    assert g.rules[0].line == 3 and g.rules[1].line == 5
    assert g.parts_of_speech == ["T", "U"]


BAD = [
    ("", r"empty: no rules"),
    ("# only a comment\n\n", r"empty: no rules"),
    ("S -> NP [0.6] | 'b' [0.3]\nNP -> 'a' [1.0]", r"rules of 'S' sum to 0\.9; expected 1"),
    ("S -> 'a' [1.2] | 'b' [-0.2]", r"line 1: probability \[1\.2\] of a rule of 'S' is out of range"),
    ("S -> 'a' [-0.5] | 'b' [1.5]", r"line 1: probability \[-0\.5\] of a rule of 'S' is negative"),
    ("S -> 'a' [abc] | 'b' [0.5]", r"line 1: probability \[abc\] of 'S' is not a number"),
    ("S -> NP VP [1.0]\nNP -> 'a' [1.0]", r"line 1: nonterminal 'VP' in rule S -> NP VP \[1\] has no rules"),
    ("S -> 'a' [1.0]\nX -> 'b' [1.0]", r"unreachable from the start symbol 'S': 'X' \(line 2\)"),
    ("S -> S S [0.6] | 'a' [0.4]", r"spectral radius 1\.2 >= 1.*'S' via S -> S S \[0\.6\]"),
    ("S -> S S [0.5] | 'a' [0.5]", r"infinite expected length: spectral radius 1 >= 1"),
    ("S -> A [1.0]\nA -> A 'x' [1.0]", r"nonterminal\(s\) 'A', 'S' never terminate"),
    ("S -> 'a' [1.0]\nS 'b' [1.0]", r"line 2: expected '->' after 'S'"),
    ("S -> 'a' [0.5] | 'b'", r"line 1: alternative 2 of 'S' has no probability"),
    ("S -> 'a [1.0]", r"line 1: unterminated string"),
    ("S -> [1.0]", r"line 1: alternative 1 of 'S' has an empty right-hand side"),
    ("\n\nS -> 'a' [1.0] 'b'", r"line 3: unexpected \"'b'\" after a probability"),
    ("S -> 'a' [0.5]\nS -> 'a' [0.5]", r"line 2: duplicate rule S -> 'a' \[0\.5\] \(first at line 1\)"),
    ("%begin S\nS -> 'a' [1.0]", r"line 1: bad directive"),
    ("S -> 'a' [1.0] \\", r"ends inside a continued line"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_grammars_raise_with_a_message_naming_the_problem(text, message):
    with pytest.raises(PCFGError, match=message):
        Grammar.from_string(text)


def test_from_string_rejects_non_text():
    with pytest.raises(PCFGError, match="text: expected the grammar as a str, got bytes"):
        Grammar.from_string(b"S -> 'a' [1.0]")


def test_load_grammar_from_file_and_errors(tmp_path):
    path = tmp_path / "tiny.pcfg"
    path.write_text(TINY)
    g = load_grammar(path)
    assert g.name == "tiny" and g.terminals == ["a", "b", "c"]
    assert load_grammar(str(path)).text == TINY
    with pytest.raises(PCFGError, match="'nope' is neither a built-in grammar"):
        load_grammar("nope")
    bad = tmp_path / "bad.pcfg"
    bad.write_text("S -> 'a' [0.5]\n")
    with pytest.raises(PCFGError, match=r"bad\.pcfg: probabilities of the rules of 'S' sum to 0\.5"):
        load_grammar(bad)
    with pytest.raises(PCFGError, match="lhs: 'Q' is not a nonterminal"):
        g.rules_of("Q")
