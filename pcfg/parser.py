"""Grammaticality: is a word sequence a sentence of the grammar's language?

An exact Earley recogniser (no parse trees, no probabilities: a sequence is grammatical when some derivation
with nonzero probability yields it). It accepts any rule shape the grammar allows (unary rules, long and
mixed right-hand sides; empty rules are rejected by the grammar), runs in O(n^3) at worst and in practice
far faster than enumerating parses with nltk's chart or Viterbi parsers, which the tests compare it with.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

from tqdm.auto import tqdm

from pcfg.errors import PCFGError
from pcfg.grammar import Grammar


class _Compiled:
    """Rules as integer arrays; lexical rules (``A -> 'w'``) indexed by word for one-step scanning."""

    def __init__(self, grammar: Grammar) -> None:
        live = [r for r in grammar.rules if r.prob > 0]
        nt = {s: i for i, s in enumerate(grammar.nonterminals)}
        self.start = nt[grammar.start]
        self.terminals = frozenset(grammar.terminals)
        self.lhs: list[int] = []
        # rhs item: nonterminal id (int) or word (str)
        self.rhs: list[tuple[int | str, ...]] = []
        self.lexical: list[dict[str, list[int]]] = [{} for _ in nt]
        self.other: list[list[int]] = [[] for _ in nt]
        for r in live:
            rid = len(self.lhs)
            self.lhs.append(nt[r.lhs])
            self.rhs.append(tuple(w if t else nt[w] for w, t in zip(r.rhs, r.terminal, strict=True)))
            if len(r.rhs) == 1 and r.terminal[0]:
                self.lexical[nt[r.lhs]].setdefault(r.rhs[0], []).append(rid)
            else:
                self.other[nt[r.lhs]].append(rid)

    def recognise(self, words: Sequence[str]) -> bool:
        n = len(words)
        if n == 0 or any(w not in self.terminals for w in words):
            return False
        lhs, rhs, lexical, other = self.lhs, self.rhs, self.lexical, self.other
        charts: list[set[tuple[int, int, int]]] = [set() for _ in range(n + 1)]
        # waiting[j][A]: items in chart j whose next symbol is nonterminal A
        waiting: list[dict[int, list[tuple[int, int, int]]]] = [{} for _ in range(n + 1)]
        agendas: list[list[tuple[int, int, int]]] = [[] for _ in range(n + 1)]

        def add(i: int, item: tuple[int, int, int]) -> None:
            chart = charts[i]
            if item not in chart:
                chart.add(item)
                agendas[i].append(item)

        for r in other[self.start]:
            add(0, (r, 0, 0))
        for r in lexical[self.start].get(words[0], ()):
            add(1, (r, 1, 0))
        for i in range(n + 1):
            agenda = agendas[i]
            predicted: set[int] = set()
            wait_i = waiting[i]
            word = words[i] if i < n else None
            k = 0
            while k < len(agenda):
                r, dot, origin = item = agenda[k]
                k += 1
                body = rhs[r]
                if dot == len(body):  # complete: advance the items of chart[origin] waiting for lhs[r]
                    for r2, d2, o2 in waiting[origin].get(lhs[r], ()):
                        add(i, (r2, d2 + 1, o2))
                    continue
                sym = body[dot]
                if sym.__class__ is str:  # scan
                    if sym == word:
                        add(i + 1, (r, dot + 1, origin))
                    continue
                lst = wait_i.get(sym)
                if lst is None:
                    wait_i[sym] = [item]
                else:
                    lst.append(item)
                if sym not in predicted:
                    predicted.add(sym)
                    for r2 in other[sym]:
                        add(i, (r2, 0, i))
                    if word is not None:
                        for r2 in lexical[sym].get(word, ()):
                            add(i + 1, (r2, 1, i))
        start = self.start
        return any(o == 0 and lhs[r] == start and d == len(rhs[r]) for r, d, o in charts[n])


_COMPILED: weakref.WeakKeyDictionary[Grammar, _Compiled] = weakref.WeakKeyDictionary()


def _compiled(grammar: Grammar) -> _Compiled:
    if not isinstance(grammar, Grammar):
        raise PCFGError(f"grammar: expected a pcfg.Grammar, got {type(grammar).__name__}")
    c = _COMPILED.get(grammar)
    if c is None:
        c = _COMPILED[grammar] = _Compiled(grammar)
    return c


def _words(words: Sequence[str] | str, name: str = "words") -> Sequence[str]:
    if isinstance(words, str):
        return words.split()
    if not isinstance(words, Sequence) or not all(isinstance(w, str) for w in words):
        raise PCFGError(f"{name}: expected a sequence of words (str) or one space-separated str, "
                        f"got {type(words).__name__}")
    return words


def is_grammatical(grammar: Grammar, words: Sequence[str] | str) -> bool:
    """Whether ``words`` (a list of words or one space-separated string) is a sentence of ``grammar``.

    Special tokens are not words: strip BOS/EOS/PAD first (``Tokenizer.decode`` does). The empty sequence
    and sequences with unknown words are not grammatical.
    """
    return _compiled(grammar).recognise(_words(words))


def grammaticality_rate(
    grammar: Grammar,
    sentences: Iterable[Sequence[str] | str],
    progress: bool = False,
) -> float:
    """Fraction of ``sentences`` that are grammatical (:func:`is_grammatical`); PCFGError if there are none."""
    c = _compiled(grammar)
    sentences = list(sentences)
    if not sentences:
        raise PCFGError("sentences: expected at least one word sequence, got an empty collection")
    ok = sum(c.recognise(_words(s, "sentences[i]")) for s in tqdm(sentences, disable=not progress,
                                                                   desc="parsing", unit="sent"))
    return ok / len(sentences)
