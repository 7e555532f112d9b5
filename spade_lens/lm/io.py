"""Save and load a trained model as a plain folder, written atomically (temp folder beside, then rename)::

    config.json        {"format": "spade-lens-lm", "version": 1, "lm_config": LMConfig fields}
    model.safetensors  the HookedTransformer's parameters (TransformerLens names)
    tokenizer.json     the pcfg word-level tokenizer (its size must equal d_vocab)
    grammar.pcfg       the grammar the model was trained on, so the folder alone can be sampled and judged
    provenance.json    kind ``lm``: weights fingerprint, tokenizer identity, the corpus and settings it came from

A ``checkpoint/`` folder left there by training is kept when the model is saved over it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer

from hooks.folders import user_entries
from hooks.identity import model_identity
from spade_lens._atomic import atomic_dir
from spade_lens.errors import SpadeLensError
from spade_lens.lm.checkpoint import CHECKPOINT_DIR
from spade_lens.lm.config import LMConfig
from spade_lens.lm.model import build_model, load_parameters

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, GRAMMAR_FILE = (
    "config.json", "model.safetensors", "tokenizer.json", "grammar.pcfg",
)
MODEL_FILES: tuple[str, ...] = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, GRAMMAR_FILE)
_FORMAT = "spade-lens-lm"


def lm_config_of(model: HookedTransformer) -> LMConfig:
    """The :class:`LMConfig` of a HookedTransformer of the kind :func:`build_model` makes."""
    c = model.cfg
    if c.normalization_type != "LN" or c.positional_embedding_type != "standard" or c.attn_only:
        raise SpadeLensError(
            f"model: normalization_type={c.normalization_type!r}, positional_embedding_type="
            f"{c.positional_embedding_type!r}, attn_only={c.attn_only}; expected a model built by "
            "spade_lens.lm.build_model ('LN', 'standard', False)"
        )
    return LMConfig(n_layers=c.n_layers, d_model=c.d_model, n_heads=c.n_heads, d_head=c.d_head, d_mlp=c.d_mlp,
                    act_fn=c.act_fn, positional="standard", n_ctx=c.n_ctx, d_vocab=c.d_vocab,
                    init_seed=c.seed if isinstance(c.seed, int) else 0)


def check_model_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` if a model may be written there: absent, empty, a model folder, or holding only a training
    checkpoint. Anything else raises, so a mistyped ``--out`` never replaces an unrelated folder."""
    from spade_lens.provenance import read_provenance

    out = Path(out_dir)
    if out.exists():
        entries = set(user_entries(out)) if out.is_dir() else None
        record = read_provenance(out) if entries else None
        if entries is None or (record is not None and record["kind"] != "lm") or not (
                CONFIG_FILE in entries or entries <= {CHECKPOINT_DIR}):
            raise SpadeLensError(
                f"out_dir {str(out)!r} exists and is not a model folder; expected a new or empty folder, or a "
                f"model folder to replace (one with {CONFIG_FILE})"
            )
    return out


def save_lm(model: HookedTransformer, out_dir: str | os.PathLike, *, grammar: Any, tokenizer: Any = None,
            inputs: dict[str, Any] | None = None, settings: dict[str, Any] | None = None) -> None:
    """Write ``model`` to the folder ``out_dir`` (replaced atomically; see the module docstring).

    Args:
        grammar: the :class:`pcfg.Grammar` of the training corpus.
        tokenizer: its :class:`pcfg.Tokenizer` (default: ``Tokenizer.from_grammar(grammar)``, which is how
            corpora build theirs). Its size must equal the model's ``d_vocab``.
        inputs, settings: recorded in ``provenance.json`` (``train_lm`` records the corpus and both configs;
            the model config is always recorded).
    """
    from pcfg import Tokenizer
    from spade_lens.provenance import json_identity, provenance_record, tokenizer_identity, write_provenance

    check_model_dir(out_dir)
    cfg = lm_config_of(model)
    tokenizer = Tokenizer.from_grammar(grammar) if tokenizer is None else tokenizer
    if len(tokenizer) != cfg.d_vocab:
        raise SpadeLensError(f"tokenizer: has {len(tokenizer)} tokens, but the model's d_vocab is {cfg.d_vocab}; "
                             "expected the tokenizer of the corpus the model was trained on")
    tensors = {name: p.detach().to("cpu").contiguous() for name, p in model.named_parameters()}
    with atomic_dir(out_dir, keep=(CHECKPOINT_DIR,)) as tmp:
        (tmp / CONFIG_FILE).write_text(
            json.dumps({"format": _FORMAT, "version": 1, "lm_config": cfg.to_dict()}, indent=1) + "\n",
            encoding="utf-8",
        )
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": _FORMAT})
        tokenizer.save(tmp / TOKENIZER_FILE)
        (tmp / GRAMMAR_FILE).write_text(grammar.text, encoding="utf-8")
        write_provenance(tmp, provenance_record(
            "lm", id=model_identity(model)["weights_hash"], tokenizer=tokenizer_identity(tokenizer),
            inputs={"grammar": {"kind": "grammar", "id": json_identity(grammar.text), "name": grammar.name},
                    **(inputs or {})},
            settings={"lm_config": cfg.to_dict(), **(settings or {})}))


def _require(folder: Path, name: str) -> Path:
    if not folder.is_dir():
        raise SpadeLensError(f"model folder {str(folder)!r} does not exist; expected a folder written by "
                             "spade_lens.lm.save_lm or `spade-lens train-lm`")
    path = folder / name
    if not path.is_file():
        raise SpadeLensError(f"model folder {str(folder)!r}: {name} is missing; expected {list(MODEL_FILES)}")
    return path


def read_lm_config(model_dir: str | os.PathLike) -> LMConfig:
    """The :class:`LMConfig` stored in ``model_dir/config.json``."""
    path = _require(Path(model_dir), CONFIG_FILE)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise SpadeLensError(f"format is {data.get('format') if isinstance(data, dict) else data!r}")
        cfg = LMConfig.from_dict(data["lm_config"])
    except (json.JSONDecodeError, KeyError, TypeError, SpadeLensError) as err:
        raise SpadeLensError(f"{path}: not a spade-lens LM config ({err}); expected JSON with "
                             f"format={_FORMAT!r} and an 'lm_config' object") from None
    if cfg.n_ctx is None or cfg.d_vocab is None:
        raise SpadeLensError(f"{path}: n_ctx and d_vocab must be set, got {cfg.n_ctx!r} and {cfg.d_vocab!r}")
    return cfg


def load_lm_grammar(model_dir: str | os.PathLike) -> Any:
    """The :class:`pcfg.Grammar` saved beside the model (``grammar.pcfg``)."""
    from pcfg import PCFGError, load_grammar

    path = _require(Path(model_dir), GRAMMAR_FILE)
    try:
        return load_grammar(path)
    except PCFGError as err:
        raise SpadeLensError(f"{path}: not a valid grammar ({err})") from None


def load_lm(model_dir: str | os.PathLike, *, device: str | torch.device = "cpu") -> HookedTransformer:
    """The model saved in ``model_dir`` (eval mode, tokenizer attached); logits identical to the saved one's.

    Raises SpadeLensError naming the file when one is missing or does not match the others (tokenizer size
    != d_vocab, tensor names or shapes != config.json).
    """
    from pcfg import PCFGError, Tokenizer

    folder = Path(model_dir)
    cfg = read_lm_config(folder)
    tok_path = _require(folder, TOKENIZER_FILE)
    weights_path = _require(folder, WEIGHTS_FILE)
    _require(folder, GRAMMAR_FILE)
    try:
        tokenizer = Tokenizer.load(tok_path)
    except PCFGError as err:
        raise SpadeLensError(f"{tok_path}: not a pcfg tokenizer ({err})") from None
    if len(tokenizer) != cfg.d_vocab:
        raise SpadeLensError(f"{tok_path}: the tokenizer has {len(tokenizer)} tokens but config.json says "
                             f"d_vocab={cfg.d_vocab}; expected the tokenizer the model was trained with")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise SpadeLensError(f"{weights_path}: not a safetensors file ({err})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise SpadeLensError(f"{weights_path}: tensor {name!r} holds {int((~torch.isfinite(tensor)).sum())} "
                                 "NaN/inf value(s); expected finite weights (training diverged or the file was damaged)")
    model = build_model(cfg, tokenizer, device=device)
    load_parameters(model, tensors, source=str(weights_path))
    return model.eval()
