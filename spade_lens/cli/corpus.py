"""``spade-lens corpus``: sample a corpus from a grammar and save it (a datasets folder)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from pcfg import (
    BUILTIN_GRAMMARS,
    NO_LABEL,
    POS_FULL_NAMES,
    Grammar,
    build_corpus,
    build_subtoken_corpus,
    load_grammar,
    save_corpus,
)
from pcfg.corpus import corpus_size_estimate


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "corpus",
        help="sample a PCFG corpus (token ids + per-token gold labels) and save it",
        description="Sample N sentences from a grammar with a seed and save them as a datasets DatasetDict "
        "folder (train/validation) with tokenizer.json, grammar.pcfg and corpus.json; "
        "datasets.load_from_disk(OUT) reads it.",
    )
    p.add_argument("--grammar", default="english",
                   help="built-in grammar name (english, rich) or path to a .pcfg file (default: english)")
    p.add_argument("--n", type=int, required=True, help="number of sentences")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", required=True,
                   help="output folder: new, empty, or a corpus to replace (anything else is refused)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="fraction for validation (default: 0.1)")
    p.add_argument("--max-length", type=int, default=64, help="max words per sentence (default: 64)")
    p.add_argument("--tokenizer", default=None, metavar="DIR",
                   help="a Hugging Face model (or tokenizer) folder: split the words into its sub-tokens, for "
                   "harvesting that model (default: the grammar's word-level tokenizer)")
    p.add_argument("--labels", choices=("first", "all"), default="first",
                   help="with --tokenizer: gold labels on each word's first sub-token only (default) or on all")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run, interrupted="nothing was written (the corpus is saved only when complete)")


def _check_disk(grammar: Grammar, args: argparse.Namespace, out: Path) -> None:
    from spade_lens.errors import SpadeLensError

    if isinstance(args.n, int) and args.n > 0 and isinstance(args.max_length, int) and args.max_length > 0:
        _, disk = corpus_size_estimate(grammar, args.n, args.max_length)
        where = next(p for p in (out, *out.parents) if p.exists())
        free = shutil.disk_usage(where).free
        if disk > free:
            raise SpadeLensError(f"--n: {args.n} sentences need about {disk / 2**30:.3g} GiB on disk and "
                                 f"{str(where)!r} has {free / 2**30:.3g} GiB free; expected a smaller --n")


def run(args: argparse.Namespace) -> int:
    from hooks.folders import writing
    from spade_lens.errors import SpadeLensError
    from spade_lens.provenance import check_target

    grammar_file = None if args.grammar in BUILTIN_GRAMMARS else args.grammar
    out = check_target(args.out, "corpus", inputs=[grammar_file, args.tokenizer])
    grammar = load_grammar(args.grammar)
    _check_disk(grammar, args, out)
    with writing(out, what=f"--out {str(out)!r}", error=SpadeLensError):
        if args.tokenizer is None:
            corpus = build_corpus(grammar, n=args.n, seed=args.seed, val_fraction=args.val_fraction,
                                  max_length=args.max_length, progress=not args.no_progress)
        else:
            from hooks.hf_model import load_tokenizer

            corpus = build_subtoken_corpus(grammar, load_tokenizer(args.tokenizer), n=args.n, seed=args.seed,
                                           labels=args.labels, val_fraction=args.val_fraction,
                                           max_length=args.max_length, progress=not args.no_progress)
        out = save_corpus(corpus, out)
    meta = corpus.metadata
    print(f"corpus of grammar {grammar.name!r}: {meta['n']} sentences (train {meta['splits']['train']}, "
          f"validation {meta['splits']['validation']}), seed {meta['seed']}, vocab {meta['vocab_size']} -> {out}")
    framing = 2 if "subtokens" not in meta else len(meta["subtokens"]["prefix"]) + len(meta["subtokens"]["suffix"])
    lengths = np.concatenate([np.diff(np.asarray(split.data.column("input_ids").combine_chunks().offsets)) - framing
                              for split in corpus.dataset.values() if split.num_rows])
    unit = "words" if "subtokens" not in meta else f"sub-tokens ({meta['tokenizer']['class']})"
    print(f"{unit} per sentence: min {lengths.min()}, mean {lengths.mean():.2f}, max {lengths.max()}")
    if "subtokens" not in meta:
        print(f"grammar's expected length without a cap: {grammar.expected_length():.2f} words")
    total = int(lengths.sum())
    for col, names in corpus.label_names.items():
        labels = np.concatenate([np.asarray(split.data.column(col).combine_chunks().flatten())
                                 for split in corpus.dataset.values() if split.num_rows])
        counts = np.bincount(labels[labels != NO_LABEL], minlength=len(names))
        print(f"{col} label counts:")
        for name, count in zip(names, counts, strict=True):
            full = f" ({POS_FULL_NAMES[name]})" if col == "pos" and name in POS_FULL_NAMES else ""
            print(f"  {name + full:<24} {count:>9}  {100 * count / total:5.1f}%")
    for split, rows in meta["splits"].items():
        if rows == 0:
            print(f"note: the {split} split is empty (--n {args.n}, --val-fraction {args.val_fraction}); harvesting "
                  f"it is refused, and `spade-lens run` probes held-out sentences from a validation split")
    return 0
