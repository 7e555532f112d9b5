"""Sampler throughput: sentences per second of ``pcfg.sample_sentences`` and of ``build_corpus``.

Peer measured in the same run: a plain recursive sampler that builds ``nltk.Tree`` objects eagerly and picks
rules with ``random.choices`` (the obvious implementation). Run: ``python benchmarks/bench_pcfg_sampler.py``.
Timings on a shared machine are noisy: take the best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import random
import time

import nltk

from pcfg import BUILTIN_GRAMMARS, Grammar, build_corpus, load_grammar, sample_sentences


def naive_sample(grammar: Grammar, n: int, seed: int, max_length: int) -> list[nltk.Tree]:
    rng = random.Random(seed)
    rules = {s: grammar.rules_of(s) for s in grammar.nonterminals}

    def expand(sym: str) -> nltk.Tree:
        rule = rng.choices(rules[sym], weights=[r.prob for r in rules[sym]])[0]
        return nltk.Tree(sym, [w if t else expand(w) for w, t in zip(rule.rhs, rule.terminal, strict=True)])

    out = []
    while len(out) < n:
        tree = expand(grammar.start)
        if len(tree.leaves()) <= max_length:
            out.append(tree)
    return out


def best_rate(fn, n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n = args.n
    for name in BUILTIN_GRAMMARS:
        g = load_grammar(name)
        ours = best_rate(lambda g=g: sample_sentences(g, n, seed=0), n, args.repeats)
        trees = best_rate(lambda g=g: [s.tree for s in sample_sentences(g, n // 5, seed=0)], n // 5, args.repeats)
        naive = best_rate(lambda g=g: naive_sample(g, n // 5, seed=0, max_length=64), n // 5, args.repeats)
        corpus = best_rate(lambda g=g: build_corpus(g, n=n, seed=0, progress=False), n, args.repeats)
        print(f"{name:8s} sample_sentences {ours:10,.0f} sent/s | with .tree built {trees:9,.0f} sent/s | "
              f"naive nltk.Tree sampler {naive:9,.0f} sent/s (ours {ours / naive:.1f}x) | "
              f"build_corpus {corpus:9,.0f} sent/s  (mean length {g.expected_length():.2f})")


if __name__ == "__main__":
    main()
