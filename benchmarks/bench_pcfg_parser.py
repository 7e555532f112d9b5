"""Grammaticality-check throughput at sentence lengths 10, 20, 40: ``pcfg.is_grammatical`` (Earley recogniser).

Peers measured in the same run on the same sentences: nltk's ``ChartParser`` (stopping at the first parse)
and nltk's ``ViterbiParser`` (best parse), each limited by ``--peer-budget`` seconds per length.
Sentences of exactly each length are drawn from the grammar; half of them get one word replaced, so both
grammatical and ungrammatical inputs are timed. Run: ``python benchmarks/bench_pcfg_parser.py``.
"""

from __future__ import annotations

import argparse
import random
import time

import nltk

from pcfg import BUILTIN_GRAMMARS, Grammar, is_grammatical, iter_sentences, load_grammar


def sentences_of_length(g: Grammar, length: int, k: int, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for s in iter_sentences(g, seed=seed, max_length=length):
        if len(s) == length:
            words = list(s.words)
            if len(out) % 2:
                words[rng.randrange(length)] = rng.choice(g.terminals)
            out.append(words)
            if len(out) == k:
                return out
    raise AssertionError("unreachable")


def rate(check, sentences: list[list[str]], budget: float) -> tuple[float, int]:
    t0 = time.perf_counter()
    done = 0
    for words in sentences:
        check(words)
        done += 1
        if time.perf_counter() - t0 > budget:
            break
    return done / (time.perf_counter() - t0), done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=200, help="sentences per length")
    ap.add_argument("--peer-budget", type=float, default=10.0, help="seconds per nltk parser and length")
    args = ap.parse_args()
    for name in BUILTIN_GRAMMARS:
        g = load_grammar(name)
        chart = nltk.ChartParser(g.nltk)
        viterbi = nltk.ViterbiParser(g.nltk)
        for length in (10, 20, 40):
            sents = sentences_of_length(g, length, args.k)
            ours, _ = rate(lambda w, g=g: is_grammatical(g, w), sents, budget=1e9)
            ok = [is_grammatical(g, w) for w in sents]

            def nltk_chart(w, chart=chart):
                try:
                    return next(iter(chart.parse(w)), None) is not None
                except ValueError:  # nltk raises on words outside the grammar
                    return False

            ch, ch_n = rate(nltk_chart, sents, args.peer_budget)
            vi, vi_n = rate(lambda w, v=viterbi: next(iter(v.parse(w)), None) is not None, sents, args.peer_budget)
            print(f"{name:8s} length {length:2d}: is_grammatical {ours:9,.1f} sent/s "
                  f"({sum(ok)}/{len(ok)} grammatical) | nltk ChartParser {ch:8,.2f} sent/s over {ch_n} "
                  f"({ours / ch:,.0f}x) | nltk ViterbiParser {vi:8,.2f} sent/s over {vi_n} ({ours / vi:,.0f}x)")


if __name__ == "__main__":
    main()
