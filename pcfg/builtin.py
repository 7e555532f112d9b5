"""Built-in grammars (package data ``pcfg/grammars/*.pcfg``) and :func:`load_grammar`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pcfg.errors import PCFGError
from pcfg.grammar import Grammar

BUILTIN_GRAMMARS: tuple[str, ...] = ("english", "rich", "real")
"""Names accepted by :func:`load_grammar`: ``english`` is DESIGN.md section 5's grammar (six parts of speech,
ten words each); ``rich`` adds determiners, prepositions, relative clauses and words of two parts of speech;
``real`` is grammatical English in the past tense for pretrained models, many of its words split into several
WordPieces (see :mod:`pcfg.subtokens`)."""


def builtin_text(name: str) -> str:
    """The source text of built-in grammar ``name``."""
    if name not in BUILTIN_GRAMMARS:
        raise PCFGError(f"name: {name!r} is not a built-in grammar; expected one of {list(BUILTIN_GRAMMARS)}")
    return resources.files("pcfg").joinpath("grammars", f"{name}.pcfg").read_text(encoding="utf-8")


def load_grammar(name_or_path: str | Path) -> Grammar:
    """Load a built-in grammar by name (see :data:`BUILTIN_GRAMMARS`) or a ``.pcfg`` file by path."""
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_GRAMMARS:
        return Grammar.from_string(builtin_text(name_or_path), name=name_or_path)
    if not isinstance(name_or_path, (str, Path)):
        raise PCFGError(f"name_or_path: expected a built-in name or a path, got {type(name_or_path).__name__}")
    path = Path(name_or_path)
    if not path.is_file():
        raise PCFGError(f"grammar {str(name_or_path)!r} is neither a built-in grammar "
                        f"{list(BUILTIN_GRAMMARS)} nor an existing file")
    return Grammar.from_file(path)
