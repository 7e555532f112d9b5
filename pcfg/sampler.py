"""Seeded sampling of sentences from a :class:`~pcfg.grammar.Grammar`, with gold labels per word.

Each sentence is a leftmost derivation drawn top-down: at each nonterminal one rule is chosen with its
probability. Per word the sampler records the preterminal that produced it (``pos``), the label of that
preterminal's parent (``phrase``, e.g. ``NP``/``VP``; the start symbol when the preterminal is the root) and
the preterminal's depth in the tree (the root is depth 0). The derivation itself (rule indices in preorder)
is kept so the ``nltk.Tree`` can be rebuilt on demand.
"""

from __future__ import annotations

import random
import weakref
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice

import nltk

from pcfg.errors import PCFGError
from pcfg.grammar import Grammar, Rule


@dataclass(frozen=True)
class Sentence:
    """One sampled sentence; ``words``, ``pos``, ``phrase`` and ``depth`` have one entry per word."""

    words: tuple[str, ...]
    """The words, in order."""
    pos: tuple[str, ...]
    """Gold part of speech: the preterminal (left-hand side) of the rule that emitted each word."""
    phrase: tuple[str, ...]
    """Label of the preterminal's parent node (the phrase the word sits in)."""
    depth: tuple[int, ...]
    """Depth of the preterminal in the derivation tree (root = 0)."""
    derivation: tuple[int, ...]
    """Indices into ``grammar.rules`` of the rules used, in preorder (leftmost derivation)."""
    rules: tuple[Rule, ...] = field(repr=False, compare=False)
    """The grammar's rules (to rebuild the tree)."""

    @cached_property
    def tree(self) -> nltk.Tree:
        """The derivation tree (built on first access)."""
        it = iter(self.derivation)

        def build() -> nltk.Tree:
            rule = self.rules[next(it)]
            return nltk.Tree(rule.lhs, [s if t else build() for s, t in zip(rule.rhs, rule.terminal, strict=True)])

        return build()

    def __len__(self) -> int:
        return len(self.words)


class _Tables:
    """A grammar compiled for sampling: integer symbols, cumulative probabilities, expansion templates."""

    def __init__(self, grammar: Grammar) -> None:
        nts = grammar.nonterminals
        nt_id = {s: i for i, s in enumerate(nts)}
        self.start = nt_id[grammar.start]
        self.labels = nts
        rule_index = {id(r): i for i, r in enumerate(grammar.rules)}
        # per nonterminal: (cumulative probs, rule ids, templates); template item: word (str) or child id (int)
        self.table: list[tuple[list[float], list[int], list[tuple[str | int, ...]], list[bool]]] = []
        for s in nts:
            rules = [r for r in grammar.rules_of(s) if r.prob > 0]  # zero-probability rules are never drawn
            cum, acc = [], 0.0
            for r in rules:
                acc += r.prob
                cum.append(acc)
            cum[-1] = 2.0  # random() < 1 always lands in range despite rounding
            templates = [tuple(w if t else nt_id[w] for w, t in zip(r.rhs, r.terminal, strict=True)) for r in rules]
            all_words = [all(r.terminal) for r in rules]
            self.table.append((cum, [rule_index[id(r)] for r in rules], templates, all_words))


_TABLES: weakref.WeakKeyDictionary[Grammar, _Tables] = weakref.WeakKeyDictionary()


def _tables(grammar: Grammar) -> _Tables:
    t = _TABLES.get(grammar)
    if t is None:
        t = _TABLES[grammar] = _Tables(grammar)
    return t


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PCFGError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


def sample_sentences(
    grammar: Grammar,
    n: int,
    seed: int,
    max_length: int = 64,
    max_depth: int = 256,
) -> list[Sentence]:
    """Draw ``n`` sentences from ``grammar`` with ``random.Random(seed)`` (global random state is untouched).

    Maximum length by rejection: a derivation is abandoned as soon as it is sure to exceed ``max_length``
    words (every pending nonterminal yields at least one word), or when a node would be deeper than
    ``max_depth``, and a fresh one is drawn from the same stream. The result therefore follows the grammar's
    distribution conditioned on ``length <= max_length`` and ``depth <= max_depth``; the same ``(grammar, n,
    seed, max_length, max_depth)`` always gives the same sentences, and the first ``k`` of ``n`` sentences
    are those of ``n = k``. :class:`PCFGError` if fewer than one draw in a thousand is accepted
    (``max_length`` far below the grammar's typical length).
    """
    n = _check_int("n", n, 0)
    return list(islice(iter_sentences(grammar, seed, max_length, max_depth), n))


def iter_sentences(
    grammar: Grammar,
    seed: int,
    max_length: int = 64,
    max_depth: int = 256,
) -> Iterator[Sentence]:
    """The endless stream of sentences behind :func:`sample_sentences` (same seed, same sentences)."""
    if not isinstance(grammar, Grammar):
        raise PCFGError(f"grammar: expected a pcfg.Grammar, got {type(grammar).__name__}")
    seed = _check_int("seed", seed, 0)
    max_length = _check_int("max_length", max_length, 1)
    max_depth = _check_int("max_depth", max_depth, 0)
    return _stream(grammar, seed, max_length, max_depth)


def _stream(grammar: Grammar, seed: int, max_length: int, max_depth: int) -> Iterator[Sentence]:
    tables = _tables(grammar)
    table, labels, start = tables.table, tables.labels, tables.start
    u = random.Random(seed).random
    rules = grammar.rules
    accepted = rejected = 0
    while True:
        if rejected > 1000 * (accepted + 1):
            raise PCFGError(f"max_length={max_length}: only {accepted} sentences accepted after "
                            f"{accepted + rejected} draws (grammar {grammar.name!r} has expected length "
                            f"{grammar.expected_length():.3g}); expected a larger max_length or max_depth")
        words: list[str] = []
        pos: list[int] = []
        phrase: list[int] = []
        depth: list[int] = []
        deriv: list[int] = []
        # stack entries: (symbol, depth, parent) for a nonterminal; (word, depth, emitter, parent) for a word
        stack: list[tuple] = [(start, 0, start)]
        ok = True
        while stack:
            entry = stack.pop()
            if len(entry) == 4:
                w, d, emitter, parent = entry
                words.append(w)
                pos.append(emitter)
                phrase.append(parent)
                depth.append(d)
                continue
            sym, d, parent = entry
            if d > max_depth:
                ok = False
                break
            cum, rule_ids, templates, all_words = table[sym]
            k = bisect_right(cum, u()) if len(cum) > 1 else 0
            deriv.append(rule_ids[k])
            template = templates[k]
            if all_words[k]:
                for w in template:
                    words.append(w)
                    pos.append(sym)
                    phrase.append(parent)
                    depth.append(d)
            else:
                d1 = d + 1
                for item in reversed(template):
                    if item.__class__ is int:
                        stack.append((item, d1, sym))
                    else:
                        stack.append((item, d, sym, parent))
            if len(words) + len(stack) > max_length:
                ok = False
                break
        if not ok:
            rejected += 1
            continue
        accepted += 1
        yield Sentence(
            tuple(words),
            tuple([labels[i] for i in pos]),
            tuple([labels[i] for i in phrase]),
            tuple(depth),
            tuple(deriv),
            rules,
        )
