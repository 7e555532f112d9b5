"""``spade-lens sample``: sample sentences from a trained model and judge them with its grammar."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sample",
        help="sample sentences from a trained model and report how many are grammatical",
        description="Sample N sentences from a model folder (from `spade-lens train-lm`), print a few with the "
        "part-of-speech tags of their most probable parse (word/TAG), and report the fraction the grammar "
        "accepts and the model's loss on fresh grammar sentences beside the grammar's entropy per token.",
    )
    p.add_argument("--model", required=True, help="model folder (from `spade-lens train-lm`)")
    p.add_argument("--n", type=int, default=1000, help="sentences to sample and judge (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--show", type=int, default=5, help="sentences to print (default: 5)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spade_lens.devices import resolve_device
    from spade_lens.lm import judge_lm, load_lm, load_lm_grammar
    from spade_lens.lm.sample import tag_sentence

    args.device = resolve_device(args.device, "--device")
    model = load_lm(args.model, device=args.device)
    grammar = load_lm_grammar(args.model)
    verdict = judge_lm(model, grammar, n=args.n, seed=args.seed, temperature=args.temperature)
    for words, ok in list(zip(verdict.samples, verdict.grammatical, strict=True))[: max(args.show, 0)]:
        tags = tag_sentence(grammar, words) if ok else None
        if tags is None:
            print("  [ungrammatical] " + " ".join(words))
        else:
            print("  " + " ".join(f"{w}/{t}" for w, t in tags))
    print(f"grammatical: {verdict.grammaticality:.1%} of {args.n} samples (seed {args.seed}, temperature "
          f"{args.temperature})")
    print(f"loss on fresh grammar sentences: {verdict.loss:.4f} nats/token; grammar entropy per token: "
          f"{verdict.entropy:.4f}")
    return 0
