"""Probabilistic context-free grammars: parsing nltk's PCFG syntax, validation, expected length and entropy.

The text format is nltk's (``nltk.PCFG.fromstring``)::

    # a comment
    S -> NP VP [1.0]
    NP -> Adj N [0.5] | NP Conj NP [0.25] | Pro [0.25]
    N -> 'cat' [0.5] | "dog" [0.5]

Unquoted symbols are nonterminals, quoted ones are terminals (words), ``[p]`` is the probability of the
alternative before it, a line ending in ``\\`` continues on the next one, ``%start X`` names the start symbol
(otherwise the left-hand side of the first rule). Empty right-hand sides are not supported.

:meth:`Grammar.from_string` validates everything a sampler or a parser relies on and raises
:class:`~pcfg.errors.PCFGError` naming the offending line, rule or symbol.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import nltk
import numpy as np

from pcfg.errors import PCFGError

PROB_TOLERANCE = 1e-6
"""Largest accepted distance between 1 and the sum of one left-hand side's probabilities."""

POS_FULL_NAMES: dict[str, str] = {
    "N": "noun",
    "Pro": "pronoun",
    "V": "verb",
    "Adv": "adverb",
    "Adj": "adjective",
    "Conj": "conjunction",
    "Det": "determiner",
    "P": "preposition",
    "Rel": "relative pronoun",
}
"""Human names of the built-in grammars' preterminals (parts of speech)."""

_NONTERM_RE = re.compile(r"[\w/][\w/^<>-]*")
_TERMINAL_RE = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_PROB_RE = re.compile(r"\[([^\]]*)\]")
_ARROW_RE = re.compile(r"\s*->\s*")


class Rule(NamedTuple):
    """One production ``lhs -> rhs [prob]``; ``terminal[i]`` says whether ``rhs[i]`` is a word."""

    lhs: str
    rhs: tuple[str, ...]
    terminal: tuple[bool, ...]
    prob: float
    line: int
    """1-based line of the grammar text the rule comes from."""

    def __str__(self) -> str:
        items = " ".join(repr(s) if t else s for s, t in zip(self.rhs, self.terminal, strict=True))
        return f"{self.lhs} -> {items} [{self.prob:g}]"


def _parse_rhs(lhs: str, body: str, line_no: int, line: str) -> list[Rule]:
    """Parse ``A B 'w' [0.5] | C [0.5]`` into rules of ``lhs``."""
    rules: list[Rule] = []
    items: list[tuple[str, bool]] = []
    prob: float | None = None
    pos = 0

    def close() -> None:
        if prob is None:
            raise PCFGError(f"line {line_no}: alternative {len(rules) + 1} of {lhs!r} has no probability "
                            f"'[p]' in {line!r}; expected e.g. \"{lhs} -> A B [0.5]\"")
        if not items:
            raise PCFGError(f"line {line_no}: alternative {len(rules) + 1} of {lhs!r} has an empty right-hand "
                            f"side in {line!r}; expected at least one symbol (empty rules are not supported)")
        rules.append(Rule(lhs, tuple(s for s, _ in items), tuple(t for _, t in items), prob, line_no))

    while pos < len(body):
        ch = body[pos]
        if ch.isspace():
            pos += 1
        elif ch == "|":
            close()
            items, prob = [], None
            pos += 1
        elif ch == "[":
            m = _PROB_RE.match(body, pos)
            if m is None:
                raise PCFGError(f"line {line_no}: unclosed '[' in {line!r}; expected a probability like [0.5]")
            if prob is not None:
                raise PCFGError(f"line {line_no}: two probabilities for one alternative of {lhs!r} in {line!r}")
            raw = m.group(1).strip()
            try:
                prob = float(raw)
            except ValueError:
                raise PCFGError(f"line {line_no}: probability [{raw}] of {lhs!r} is not a number; "
                                f"expected a number in [0, 1] in {line!r}") from None
            if not math.isfinite(prob) or prob < 0 or prob > 1:
                kind = "negative" if prob < 0 else "out of range"
                raise PCFGError(f"line {line_no}: probability [{raw}] of a rule of {lhs!r} is {kind}; "
                                f"expected a number in [0, 1] in {line!r}")
            pos = m.end()
        elif prob is not None:
            raise PCFGError(f"line {line_no}: unexpected {body[pos:]!r} after a probability in {line!r}; "
                            f"expected '|' or the end of the line")
        elif ch in "'\"":
            m = _TERMINAL_RE.match(body, pos)
            if m is None:
                raise PCFGError(f"line {line_no}: unterminated string {body[pos:]!r} in {line!r}")
            word = m.group(1) if m.group(1) is not None else m.group(2)
            if not word:
                raise PCFGError(f"line {line_no}: empty terminal '' in {line!r}; expected a word")
            items.append((word, True))
            pos = m.end()
        else:
            m = _NONTERM_RE.match(body, pos)
            if m is None:
                raise PCFGError(f"line {line_no}: unexpected character {ch!r} in {line!r}; expected a symbol, "
                                f"a quoted word, '[p]' or '|'")
            items.append((m.group(0), False))
            pos = m.end()
    close()
    return rules


def parse_rules(text: str) -> tuple[str | None, list[Rule]]:
    """Read ``(start or None, rules)`` from grammar text; syntax errors name the line."""
    start: str | None = None
    rules: list[Rule] = []
    pending = ""
    pending_line = 0
    for i, raw in enumerate(text.split("\n"), start=1):
        line = pending + raw.strip()
        if not pending:
            pending_line = i
        if line.startswith("#") or line == "":
            pending = ""
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if line.startswith("%"):
            parts = line[1:].split()
            if len(parts) != 2 or parts[0] != "start" or not _NONTERM_RE.fullmatch(parts[1]):
                raise PCFGError(f"line {pending_line}: bad directive {line!r}; expected '%start SYMBOL'")
            start = parts[1]
            continue
        m = _NONTERM_RE.match(line)
        if m is None:
            raise PCFGError(f"line {pending_line}: expected a nonterminal at the start of {line!r}")
        arrow = _ARROW_RE.match(line, m.end())
        if arrow is None:
            raise PCFGError(f"line {pending_line}: expected '->' after {m.group(0)!r} in {line!r}")
        rules.extend(_parse_rhs(m.group(0), line[arrow.end():], pending_line, line))
    if pending:
        raise PCFGError(f"line {pending_line}: the grammar ends inside a continued line (trailing '\\')")
    return start, rules


def _spectral_radius(m: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(m)))) if m.size else 0.0


class Grammar:
    """A validated PCFG. Build with :meth:`from_string`, :meth:`from_file` or :func:`pcfg.load_grammar`.

    Attributes: ``text`` (the source), ``name``, ``start``, ``rules`` (in source order), ``nonterminals``,
    ``terminals`` and ``parts_of_speech`` (sorted), ``phrase_labels`` (sorted labels of the parents of
    preterminals, the per-token ``phrase`` labels).
    """

    def __init__(self, text: str, name: str = "custom") -> None:
        self.text = text
        self.name = name
        start, rules = parse_rules(text)
        if not rules:
            raise PCFGError(f"grammar {name!r} is empty: no rules found; expected lines like 'S -> NP VP [1.0]'")
        self.start: str = start if start is not None else rules[0].lhs
        self.rules: tuple[Rule, ...] = tuple(rules)
        by_lhs: dict[str, list[Rule]] = defaultdict(list)
        for r in rules:
            by_lhs[r.lhs].append(r)
        self._by_lhs = {k: tuple(v) for k, v in by_lhs.items()}
        self._validate()
        self.nonterminals: list[str] = sorted(self._by_lhs)
        self.terminals: list[str] = sorted({s for r in rules for s, t in zip(r.rhs, r.terminal, strict=True) if t})
        self.parts_of_speech: list[str] = sorted({r.lhs for r in rules if any(r.terminal)})
        pos = set(self.parts_of_speech)
        phrases = {r.lhs for r in rules for s, t in zip(r.rhs, r.terminal, strict=True) if not t and s in pos}
        if self.start in pos:
            phrases.add(self.start)
        self.phrase_labels: list[str] = sorted(phrases)

    # ----------------------------------------------------------------------------------------------- building
    @classmethod
    def from_string(cls, text: str, name: str = "custom") -> Grammar:
        """Parse and validate grammar ``text`` (nltk PCFG syntax); :class:`PCFGError` names the problem."""
        if not isinstance(text, str):
            raise PCFGError(f"text: expected the grammar as a str, got {type(text).__name__}")
        return cls(text, name=name)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Grammar:
        """Read a ``.pcfg`` file; the grammar's name is the file's stem."""
        p = Path(path)
        if not p.is_file():
            raise PCFGError(f"grammar path {str(p)!r} is not a file; expected a .pcfg file or a built-in name")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise PCFGError(f"grammar file {str(p)!r} is not UTF-8 text (byte {err.object[err.start]:#04x} at "
                            f"offset {err.start}); expected a .pcfg text file in nltk's PCFG syntax") from None
        except OSError as err:
            raise PCFGError(f"grammar file {str(p)!r} cannot be read ({err.strerror})") from None
        if "\x00" in text:
            raise PCFGError(f"grammar file {str(p)!r} holds NUL bytes (a binary file?); expected a .pcfg text "
                            "file in nltk's PCFG syntax")
        try:
            return cls(text, name=p.stem)
        except PCFGError as err:
            raise PCFGError(f"{p}: {err}") from None

    # ----------------------------------------------------------------------------------------------- checks
    def _validate(self) -> None:
        by_lhs = self._by_lhs
        if self.start not in by_lhs:
            raise PCFGError(f"start symbol {self.start!r} has no rules; expected a rule '{self.start} -> ...'")
        seen: dict[tuple[str, tuple[str, ...], tuple[bool, ...]], int] = {}
        for r in self.rules:
            key = (r.lhs, r.rhs, r.terminal)
            if key in seen:
                raise PCFGError(f"line {r.line}: duplicate rule {r} (first at line {seen[key]}); "
                                f"expected each alternative once")
            seen[key] = r.line
        for lhs, rules in by_lhs.items():
            total = math.fsum(r.prob for r in rules)
            if abs(total - 1.0) > PROB_TOLERANCE:
                lines = sorted({r.line for r in rules})
                raise PCFGError(f"probabilities of the rules of {lhs!r} sum to {total:.6g}; expected 1 "
                                f"(tolerance {PROB_TOLERANCE:g}); rules at line(s) {', '.join(map(str, lines))}")
        for r in self.rules:
            for s, t in zip(r.rhs, r.terminal, strict=True):
                if not t and s not in by_lhs:
                    raise PCFGError(f"line {r.line}: nonterminal {s!r} in rule {r} has no rules; expected a "
                                    f"rule '{s} -> ...' or a quoted terminal '{s}'")
        reachable = {self.start}
        stack = [self.start]
        while stack:
            for r in by_lhs[stack.pop()]:
                for s, t in zip(r.rhs, r.terminal, strict=True):
                    if not t and s not in reachable:
                        reachable.add(s)
                        stack.append(s)
        unreachable = [lhs for lhs in by_lhs if lhs not in reachable]
        if unreachable:
            where = ", ".join(f"{s!r} (line {by_lhs[s][0].line})" for s in unreachable)
            raise PCFGError(f"rules unreachable from the start symbol {self.start!r}: {where}; "
                            f"expected every nonterminal to be used")
        self._check_termination()

    def _check_termination(self) -> None:
        productive: set[str] = set()
        changed = True
        while changed:
            changed = False
            for r in self.rules:
                if r.lhs not in productive and all(t or s in productive for s, t in zip(r.rhs, r.terminal, strict=True)):
                    productive.add(r.lhs)
                    changed = True
        stuck = sorted(set(self._by_lhs) - productive)
        if stuck:
            raise PCFGError(f"nonterminal(s) {', '.join(map(repr, stuck))} never terminate: every rule of them "
                            f"contains a nonterminal that cannot derive a string of words")
        m = self.expected_children()
        rho = _spectral_radius(m)
        if rho >= 1.0 - 1e-9:
            # name the recursive nonterminals whose strongly connected component is (super)critical
            idx = {s: i for i, s in enumerate(self._symbols)}
            reach = (m > 0).astype(np.int64)
            closure = reach.copy()
            for _ in range(len(idx)):
                closure = np.minimum(closure + closure @ reach, 1)
            bad = []
            for s, i in idx.items():
                comp = [j for j in range(len(idx)) if closure[i, j] and closure[j, i]]
                if comp and _spectral_radius(m[np.ix_(comp, comp)]) >= 1.0 - 1e-9:
                    bad.append(s)
            rules = "; ".join(str(r) for r in self.rules if r.lhs in bad and any(
                not t and s in bad for s, t in zip(r.rhs, r.terminal, strict=True)))
            raise PCFGError(f"the grammar does not terminate with probability 1 or has infinite expected "
                            f"length: spectral radius {rho:.4g} >= 1 of the expected-children matrix; "
                            f"recursive nonterminal(s) {', '.join(map(repr, bad))} via {rules}; expected the "
                            f"recursive rules to have less total weight")

    # ----------------------------------------------------------------------------------------------- numbers
    @cached_property
    def _symbols(self) -> list[str]:
        return sorted(self._by_lhs)

    def rules_of(self, lhs: str) -> tuple[Rule, ...]:
        """The rules of nonterminal ``lhs`` in source order."""
        if lhs not in self._by_lhs:
            raise PCFGError(f"lhs: {lhs!r} is not a nonterminal of grammar {self.name!r}; "
                            f"expected one of {sorted(self._by_lhs)}")
        return self._by_lhs[lhs]

    def expected_children(self) -> np.ndarray:
        """Matrix ``M[a, b]`` = expected number of ``b`` children of one ``a`` node, symbols sorted. (k, k)"""
        idx = {s: i for i, s in enumerate(self._symbols)}
        m = np.zeros((len(idx), len(idx)))
        for r in self.rules:
            for s, t in zip(r.rhs, r.terminal, strict=True):
                if not t:
                    m[idx[r.lhs], idx[s]] += r.prob
        return m

    def _solve(self, per_node: np.ndarray) -> np.ndarray:
        """Solve ``(I - M) x = per_node``: the expectation of an additive quantity over a subtree."""
        m = self.expected_children()
        return np.linalg.solve(np.eye(len(m)) - m, per_node)

    def expected_length(self) -> float:
        """Expected number of words of a sentence (no BOS/EOS) under the grammar (no length cap)."""
        idx = {s: i for i, s in enumerate(self._symbols)}
        words = np.zeros(len(idx))
        for r in self.rules:
            words[idx[r.lhs]] += r.prob * sum(r.terminal)
        return float(self._solve(words)[idx[self.start]])

    def entropy(self) -> float:
        """Derivation entropy in nats per sentence (the string entropy's upper bound if ambiguous)."""
        idx = {s: i for i, s in enumerate(self._symbols)}
        local = np.zeros(len(idx))
        for r in self.rules:
            if r.prob > 0:
                local[idx[r.lhs]] -= r.prob * math.log(r.prob)
        return float(self._solve(local)[idx[self.start]])

    def entropy_per_token(self) -> float:
        """``entropy() / (expected_length() + 1)``: nats per predicted token, EOS included."""
        return self.entropy() / (self.expected_length() + 1.0)

    # ----------------------------------------------------------------------------------------------- interop
    @cached_property
    def nltk(self) -> nltk.PCFG:
        """The same grammar as an ``nltk.PCFG`` (for nltk's parsers)."""
        prods = [
            nltk.ProbabilisticProduction(
                nltk.Nonterminal(r.lhs),
                [s if t else nltk.Nonterminal(s) for s, t in zip(r.rhs, r.terminal, strict=True)],
                prob=r.prob,
            )
            for r in self.rules
        ]
        return nltk.PCFG(nltk.Nonterminal(self.start), prods)

    def __repr__(self) -> str:
        return (f"Grammar(name={self.name!r}, start={self.start!r}, rules={len(self.rules)}, "
                f"nonterminals={len(self.nonterminals)}, terminals={len(self.terminals)})")
