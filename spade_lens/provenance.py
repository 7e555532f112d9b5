"""What made each folder, and the checks every command runs before it trusts or overwrites one.

Every stage folder holds a ``provenance.json`` (shape and identities: :mod:`hooks.provenance`; pcfg writes the
same shape with its own copy): its ``kind``, the identities of its inputs, its settings. Other stages (a sweep,
a dashboard, a new model path) adopt it with three calls::

    from spade_lens.provenance import check_target, provenance_record, write_provenance
    out = check_target(args.out, "sweep", inputs=[args.activations])   # before any work
    ...                                                                   # write the folder (atomically)
    write_provenance(out, provenance_record("sweep", inputs={"activations": folder_input(args.activations)},
                                            settings={...}))

- :func:`check_target`: a folder may be written only when it is new, empty, or already a folder of that kind,
  never when it is a file, another kind of folder, or one of the command's inputs (or holds one).
- :func:`check_reuse`: a stage folder is reused only when its recorded settings equal the requested ones;
  otherwise :class:`SpadeLensError` says which settings differ and how to proceed.
- :func:`folder_kind`: the kind of a folder, also for folders written before provenance existed (recognised by
  their files), which load as they are, with a note.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from hooks.folders import check_writable, user_entries, writing
from hooks.provenance import (
    PROVENANCE_FILE,
    json_identity,
    provenance_record,
    tokenizer_identity,
    vocab_identity,
    write_provenance,
)
from hooks.provenance import read_provenance as _read_provenance
from spade_lens.errors import SpadeLensError

__all__ = [
    "PROVENANCE_FILE",
    "check_reuse",
    "check_target",
    "differences",
    "folder_input",
    "folder_kind",
    "json_identity",
    "provenance_record",
    "read_provenance",
    "tokenizer_identity",
    "vocab_identity",
    "weights_identity",
    "write_provenance",
    "writing",
]

KIND_NAMES: dict[str, str] = {
    "corpus": "a corpus (`spade-lens corpus`)",
    "lm": "a language model (`spade-lens train-lm`)",
    "activations": "an activation cache (`spade-lens harvest`)",
    "saes": "an SAE training run (`spade-lens train-sae`)",
    "sae": "an SAE (cfg.json + sae_weights.safetensors)",
    "report": "a probe report (`spade-lens probe`)",
    "run": "a pipeline run folder (`spade-lens run`)",
    "sweep": "a sweep (`spade-lens sweep`)",
}
"""How messages name each kind of folder; kinds added later are named by their own name."""

_RUN_STAGES = ("corpus", "lm", "activations", "saes", "report")


def read_provenance(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance record of ``folder``, None when it has none (SpadeLensError when it is unreadable)."""
    return _read_provenance(folder, error=SpadeLensError)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _legacy_kind(folder: Path, entries: list[str]) -> str | None:
    """The kind of a folder without provenance, recognised by the files each stage has always written."""
    names = set(entries)
    if "corpus.json" in names and "dataset_dict.json" in names:
        return "corpus"
    config = _json(folder / "config.json") if "config.json" in names else None
    if (isinstance(config, dict) and config.get("format") == "spade-lens-lm") or names == {"checkpoint"}:
        return "lm"
    if "manifest.json" in names:
        return "activations"
    if "cfg.json" in names and ("sae_weights.safetensors" in names or "spade_lens_state.safetensors" in names):
        return "sae"
    if names & {"checkpoint.pt", "log.jsonl", "summary.json"} or any(
            (folder / n / "cfg.json").is_file() for n in names):
        return "saes"
    if {"report.md", "metrics.json"} <= names:
        return "report"
    if names & set(_RUN_STAGES):
        return "run"
    return None


def folder_kind(folder: str | os.PathLike) -> str | None:
    """``"empty"`` for an empty folder, the kind recorded in its provenance (or recognised by its files for
    folders written before provenance existed), or None for anything else (a file, a folder of other things)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    entries = user_entries(folder)
    if not entries:
        return "empty"
    record = read_provenance(folder)
    if record is not None:
        return str(record["kind"])
    return _legacy_kind(folder, entries)


def _describe(kind: str | None, folder: Path) -> str:
    if kind is None:
        shown = user_entries(folder)
        more = f" and {len(shown) - 4} more" if len(shown) > 4 else ""
        return f"other files ({', '.join(shown[:4])}{more})"
    return KIND_NAMES.get(kind, f"a {kind!r} folder")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_target(out: str | os.PathLike, kind: str, *, arg: str = "--out",
                 inputs: Iterable[str | os.PathLike | None] = (), also: Iterable[str] = ()) -> Path:
    """``out`` as a Path when a ``kind`` folder may be written there; else SpadeLensError naming ``arg``.

    Allowed: a new path whose nearest existing parent is a writable folder, an empty folder, or a folder of
    kind ``kind`` (or of a kind in ``also``). Refused, before any work: a file, a folder of another kind or of
    unknown files, an unwritable place, and any of ``inputs`` or a folder holding one (replacing it would
    delete the input).
    """
    out = Path(out)
    resolved = out.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if _inside(source, resolved):
            same = "is" if source == resolved else "holds"
            raise SpadeLensError(f"{arg}: {str(out)!r} {same} the input {str(given)!r} of this command; writing "
                                 "there would replace it; expected another folder")
    if out.exists() and not out.is_dir():
        raise SpadeLensError(f"{arg}: {str(out)!r} is a file; expected a folder (new, empty, or holding "
                             f"{KIND_NAMES.get(kind, repr(kind))} to replace); nothing was changed")
    check_writable(out, what=arg, error=SpadeLensError)
    if out.is_dir():
        found = folder_kind(out)
        if found not in ("empty", kind, *also):
            raise SpadeLensError(f"{arg}: {str(out)!r} holds {_describe(found, out)}, not "
                                 f"{KIND_NAMES.get(kind, repr(kind))}; expected a new or empty folder, or one of "
                                 "that kind to replace; nothing was changed")
    return out


def folder_input(folder: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """An ``inputs`` entry for a folder: its recorded kind and id (None for folders without provenance) and
    its path (informative only)."""
    record = read_provenance(folder) if Path(folder).is_dir() else None
    return {"kind": (record or {}).get("kind", kind), "id": (record or {}).get("id"), "path": str(folder)}


def weights_identity(module_or_state: Any) -> str:
    """16 hex digits of a SHA-256 over a module's (or state dict's) tensors: names, shapes, dtypes and bytes."""
    import hashlib

    import torch

    state = module_or_state.state_dict() if hasattr(module_or_state, "state_dict") else dict(module_or_state)
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name} {tuple(t.shape)} {t.dtype}\n".encode())
        h.update(t.view(-1).view(dtype=torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def differences(recorded: Any, requested: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``[(dotted key, recorded value, requested value), ...]`` where two settings trees differ."""
    if isinstance(recorded, Mapping) and isinstance(requested, Mapping):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(set(recorded) | set(requested), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in recorded:
                out.append((name, "(not recorded)", requested[key]))
            elif key not in requested:
                out.append((name, recorded[key], "(not requested)"))
            else:
                out.extend(differences(recorded[key], requested[key], name))
        return out
    norm = json.loads(json.dumps([recorded, requested], default=str))  # tuples == lists, as stored
    return [] if norm[0] == norm[1] else [(prefix or "value", recorded, requested)]


def _show(diffs: list[tuple[str, Any, Any]], limit: int = 3) -> str:
    shown = "; ".join(f"{k}: recorded {v_old!r}, requested {v_new!r}" for k, v_old, v_new in diffs[:limit])
    return shown + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "")


def check_reuse(folder: str | os.PathLike, kind: str, settings: Mapping[str, Any], *,
                inputs: Mapping[str, str | None] | None = None,
                how: str = "use another folder, or remove it to redo it",
                recorded: Mapping[str, Any] | None = None) -> Literal["new", "same", "legacy"]:
    """Whether the stage folder ``folder`` may be reused for ``settings``.

    Returns ``"new"`` (absent or empty: make it), ``"same"`` (its provenance records these settings and these
    input ids: reuse it) or ``"legacy"`` (a ``kind`` folder without provenance, from an earlier version: the
    caller decides, with a note). Raises SpadeLensError naming the settings or inputs that differ and ``how``
    to proceed, or when the folder is of another kind. ``inputs``: input name -> id that the recorded inputs
    must have (None: not checked). ``recorded``: use this record instead of reading ``folder``'s.
    """
    folder = Path(folder)
    found = folder_kind(folder) if folder.exists() else "empty"
    if found == "empty":
        return "new"
    if found != kind:
        raise SpadeLensError(f"{str(folder)!r} holds {_describe(found, folder)}, not "
                             f"{KIND_NAMES.get(kind, repr(kind))}; {how}")
    record = recorded if recorded is not None else read_provenance(folder)
    if record is None:
        return "legacy"
    diffs = differences(record.get("settings", {}), dict(settings))
    for name, want in (inputs or {}).items():
        got = (record.get("inputs", {}).get(name) or {}).get("id")
        if want is not None and got != want:
            diffs.append((f"input {name}", got, want))
    if diffs:
        raise SpadeLensError(f"{str(folder)!r} was made with other settings than requested ({_show(diffs)}); "
                             f"{how}")
    return "same"

