"""The ``spade-lens`` command line: one subcommand per pipeline stage, plus ``run`` for all of them.

Each subcommand lives in its own module of this package, exposing ``register(subparsers)`` which adds its
parser and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code) and,
optionally, ``interrupted`` (what Ctrl-C leaves behind and how to continue, printed after it).
Errors of the project's own types are printed as one line and give exit code 2, as do operating-system errors
(a full disk, a permission denied: the line names the file); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand modules, in the order ``spade-lens --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "corpus",
    "grammar",
    "train_lm",
    "sample",
    "harvest",
    "train_sae",
    "probe",
    "sweep",
    "dashboard",
    "run",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spade-lens",
        description="Sparse autoencoders on TransformerLens models: PCFG corpora, LM training, activation "
        "harvesting, SAE training (relu, topk, jumprelu, spade) and concept probing.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from spade_lens.errors import USER_ERRORS

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        print(f"spade-lens {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the machine, not the code: disk full, permission denied, a file vanished
        where = f": {err.filename!r}" if err.filename else ""
        print(f"spade-lens {args.command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "interrupted", None)
        print(f"spade-lens {args.command}: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
