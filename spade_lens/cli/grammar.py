"""``spade-lens grammar check``: validate a grammar and print its symbols, expected length and entropy."""

from __future__ import annotations

import argparse

from pcfg import POS_FULL_NAMES, load_grammar


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("grammar", help="inspect PCFG grammars", description="Inspect PCFG grammars.")
    sub = p.add_subparsers(dest="grammar_command", metavar="ACTION")
    sub.required = True
    check = sub.add_parser(
        "check",
        help="validate a grammar; print its symbols, expected length and entropy",
        description="Validate a grammar (built-in name or .pcfg path). On success print its symbols, "
        "expected sentence length and entropy; on failure print the error and exit with code 2.",
    )
    check.add_argument("grammar", metavar="PATH_OR_NAME", help="built-in grammar name (english, rich) or .pcfg path")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    g = load_grammar(args.grammar)
    pos = ", ".join(f"{p} ({POS_FULL_NAMES[p]})" if p in POS_FULL_NAMES else p for p in g.parts_of_speech)
    print(f"grammar {g.name!r}: OK ({len(g.rules)} rules)")
    print(f"start symbol:     {g.start}")
    print(f"nonterminals:     {len(g.nonterminals)}: {', '.join(g.nonterminals)}")
    print(f"parts of speech:  {len(g.parts_of_speech)}: {pos}")
    print(f"phrase labels:    {', '.join(g.phrase_labels)}")
    print(f"terminals:        {len(g.terminals)}: {' '.join(g.terminals)}")
    print(f"expected length:  {g.expected_length():.4f} words per sentence")
    print(f"entropy:          {g.entropy():.4f} nats per sentence (derivation entropy), "
          f"{g.entropy_per_token():.4f} nats per token incl. EOS")
    return 0
