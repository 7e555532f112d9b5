"""Capture activations at named hook points of any TransformerLens hooked model.

Works for a ``HookedTransformer`` (including one you built or loaded yourself), a ``HookedEncoder`` (BERT;
padding is masked out of its attention, see :func:`hooks.residual_hook_names` for its residual-stream hooks)
and a ``TransformerBridge`` (e.g. ``TransformerBridge.boot_native(cfg)``): both expose ``hook_dict`` (name ->
``HookPoint``) and ``forward(..., stop_at_layer=...)``. Hook functions are attached to the requested
HookPoints for one forward pass only (TransformerLens' ``HookPoint.add_hook``/``remove_hooks``, the mechanism
of ``model.hooks()``), so none outlives its call. One forward pass serves every requested hook; it stops
after the last block needed. On a bridge ``stop_at_layer=n_layers`` still returns logits, and
``blocks.i.hook_resid_post`` is an alias whose ``hook.name`` reads ``blocks.i.hook_out``: hook functions
here are closures bound to the *requested* name, so aliases never matter.

The forward runs under ``torch.no_grad()`` rather than ``inference_mode()``: inference tensors cannot be
saved for backward, and the rows captured here are the inputs an SAE trains on.

    >>> for batch in capture_activations(model, dataset["train"], ["blocks.0.hook_resid_post"]):
    ...     batch.acts["blocks.0.hook_resid_post"]  # (rows, d_model), rows = kept tokens
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from hooks.batches import ActivationBatch
from hooks.errors import HooksError, check_int
from hooks.hf_model import is_encoder
from hooks.source import TokenChunk, check_source, iter_chunks, n_batches

_LEVELS = itertools.count(1_000_000)  # hook levels of our own, apart from model.hooks()' 1, 2, ...
_BLOCK = re.compile(r"^blocks\.(\d+)\.")
# Hook points computed before block 0 (HookedTransformer names, then bridge-native ones).
_PRE_BLOCK = ("hook_embed", "hook_pos_embed", "hook_tokens", "embed.", "pos_embed.", "rotary_emb.",
              "embed_ln.")


def check_model(model: Any) -> None:
    """HooksError unless ``model`` looks like a TransformerLens hooked model."""
    if not all(hasattr(model, a) for a in ("hook_dict", "hooks", "cfg")):
        raise HooksError(f"model: expected a TransformerLens hooked model (HookedTransformer or "
                         f"TransformerBridge), got {type(model).__name__}")


def check_hook_names(model: Any, hook_names: Sequence[str]) -> list[str]:
    """The requested names as a list; HooksError naming the closest valid names for an unknown one."""
    if isinstance(hook_names, str):
        hook_names = [hook_names]
    names = list(hook_names)
    if not names:
        raise HooksError("hook_names: expected at least one hook name, got none")
    if len(set(names)) != len(names):
        raise HooksError(f"hook_names: each hook may be requested once, got {names}")
    valid = list(model.hook_dict)
    for name in names:
        if name not in model.hook_dict:
            close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
            raise HooksError(f"hook_names: {name!r} is not a hook point of this "
                             f"{type(model).__name__}; closest valid names: {close or sorted(valid)[:10]}")
    return names


def stop_layer(model: Any, hook_names: Sequence[str]) -> int | None:
    """The ``stop_at_layer`` that still runs every requested hook, or None for a full forward pass."""
    n_layers = int(model.cfg.n_layers)
    needed = 0
    for name in hook_names:
        block = _BLOCK.match(name)
        if block:
            needed = max(needed, int(block.group(1)) + 1)
        elif not name.startswith(_PRE_BLOCK):
            return None  # ln_final, unembed...: after the last block
    return needed if needed < n_layers else None


def excluded_ids(model: Any, exclude_token_ids: Sequence[int] | None, pad_token_id: int | None) -> list[int]:
    """Token ids whose positions are dropped: padding always, plus the tokenizer's special tokens by default.

    ``exclude_token_ids`` replaces the special tokens (pass ``[]`` to keep BOS/EOS); padding stays excluded.
    """
    tok = getattr(model, "tokenizer", None)
    pad = pad_token_id if pad_token_id is not None else getattr(tok, "pad_token_id", None)
    if exclude_token_ids is None:
        special = list(getattr(tok, "all_special_ids", None) or [])
        special += [getattr(tok, a, None) for a in ("bos_token_id", "eos_token_id")]
        exclude_token_ids = [i for i in special if i is not None]
    ids = [*exclude_token_ids, *([pad] if pad is not None else [])]
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int):
            raise HooksError(f"exclude_token_ids / pad_token_id: expected integer token ids, got {i!r}")
    return sorted(set(ids))


def model_device(model: Any) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device(getattr(model.cfg, "device", None) or "cpu")


def capture_activations(
    model: Any,
    source: Any,
    hook_names: Sequence[str],
    *,
    batch_size: int = 64,
    exclude_token_ids: Sequence[int] | None = None,
    pad_token_id: int | None = None,
    label_columns: Sequence[str] | None = None,
    start_sequence: int = 0,
    progress: bool = False,
) -> Iterator[ActivationBatch]:
    """Yield one :class:`ActivationBatch` per forward pass over ``source`` (see :mod:`hooks.source`).

    Every argument is checked before the first forward pass. Rows are the kept tokens: not padding, not an
    excluded id (:func:`excluded_ids`). ``start_sequence`` skips the first sequences of the source (used to
    resume a harvest). Tensors come back on the model's device, activations in the model's dtype.
    """
    check_model(model)
    names = check_hook_names(model, hook_names)
    check_int("batch_size", batch_size)
    check_int("start_sequence", start_sequence, minimum=0)
    check_source(source)
    excluded = torch.tensor(excluded_ids(model, exclude_token_ids, pad_token_id), dtype=torch.long)
    chunks = iter_chunks(source, batch_size=batch_size, label_columns=label_columns,
                         start_sequence=start_sequence, pad_value=0)  # any in-vocabulary id: masked out
    total = n_batches(source, batch_size, start_sequence)
    bar = tqdm(chunks, total=total, disable=not progress, desc="capture", unit="batch")
    return _capture(model, names, bar, excluded)


def _capture(model: Any, names: list[str], chunks: Any, excluded: Tensor) -> Iterator[ActivationBatch]:
    device = model_device(model)
    stop = stop_layer(model, names)
    points = {name: model.hook_dict[name] for name in names}  # aliases resolve to their HookPoint
    excluded = excluded.to(device)
    for index, chunk in enumerate(chunks):
        _check_tokens(model, chunk)
        ids = chunk.input_ids.to(device)
        keep = (chunk.valid.to(device) & ~torch.isin(ids, excluded)).reshape(-1)  # (batch * pos,)
        flat = keep.nonzero().squeeze(1)  # (rows,) row-major index of each kept token
        raw = _forward(model, points, ids, stop, _attention_mask(model, chunk))
        acts = {name: _rows(raw[name], ids.shape, flat, name, index, chunk.seq_start) for name in names}
        b, s = ids.shape
        yield ActivationBatch(
            acts=acts,
            token_ids=ids.reshape(-1).index_select(0, flat),
            positions=flat % s,
            seq_index=flat // s + chunk.seq_start,
            labels={k: v.to(device).reshape(-1).index_select(0, flat) for k, v in chunk.labels.items()},
            seq_range=(chunk.seq_start, chunk.seq_start + b),
        )


def _rows(act: Tensor, shape: torch.Size, flat: Tensor, name: str, index: int, seq_start: int) -> Tensor:
    """(batch, pos, ...) hook output -> (rows, d) kept rows, checked finite."""
    if tuple(act.shape[:2]) != tuple(shape):
        raise HooksError(f"hook_names: {name!r} gives activations of shape {tuple(act.shape)}, not "
                         f"(batch, pos, ...) = {tuple(shape)}; only per-token hooks can be captured")
    rows = act.reshape(shape[0] * shape[1], -1).index_select(0, flat)  # (rows, d)
    if not bool(torch.isfinite(rows.sum(dtype=torch.float32))):  # one cheap pass; exact count if it fails
        bad = int((~torch.isfinite(rows)).sum())
        if bad:
            raise HooksError(f"activations at hook {name!r} in batch {index} (sequences from {seq_start}) "
                             f"hold {bad} NaN/inf values")
    return rows


def _check_tokens(model: Any, chunk: TokenChunk) -> None:
    ids = chunk.input_ids
    if ids.numel() == 0:
        return
    d_vocab, n_ctx = int(model.cfg.d_vocab), int(model.cfg.n_ctx)
    if ids.shape[1] > n_ctx:
        row = int(chunk.valid.sum(1).argmax())
        raise HooksError(f"source: sequence {chunk.seq_start + row} has {ids.shape[1]} tokens, longer than the "
                         f"model's context n_ctx={n_ctx}; truncate or split it")
    bad = ((ids < 0) | (ids >= d_vocab)) & chunk.valid
    if bool(bad.any()):
        row, pos = (int(i) for i in bad.nonzero()[0])
        raise HooksError(f"source: token id {int(ids[row, pos])} at sequence {chunk.seq_start + row}, position "
                         f"{pos} is outside the model's vocabulary [0, {d_vocab})")


def _attention_mask(model: Any, chunk: TokenChunk) -> Tensor | None:
    """The (batch, pos) 1/0 mask passed to the model: the source's own, and on an encoder any padding too.

    A causal model never lets a token see the padding to its right; a bidirectional encoder (``HookedEncoder``)
    would, so its padding is always masked out (as Hugging Face's ``attention_mask`` does)."""
    if is_encoder(model) and not bool(chunk.valid.all()):
        return chunk.valid.long()
    return chunk.attention_mask


class _AllCaptured(Exception):
    """Raised by the last hook an encoder's forward pass needs: the blocks after it are not run."""


@contextlib.contextmanager
def _temporary_hooks(points: dict[str, Any], fns: dict[str, Any]) -> Iterator[None]:
    """Attach ``fns[name]`` to the HookPoint ``points[name]`` for the block only (removed even on error).

    This is what ``model.hooks()`` does, limited to the touched hook points: ``hooks()`` resets every hook
    point of the model on exit (and a bridge rebuilds its alias table on entry), about 1 ms per forward pass,
    which is a tenth of a forward of the default model. Hooks are tagged with a level of their own, so other
    temporary hooks on the same points are left alone.
    """
    level = next(_LEVELS)
    try:
        for name, point in points.items():
            point.add_hook(fns[name], dir="fwd", level=level)
        yield
    finally:
        for point in points.values():
            point.remove_hooks("fwd", including_permanent=False, level=level)


def _forward(model: Any, points: dict[str, Any], ids: Tensor, stop: int | None,
             attention_mask: Tensor | None) -> dict[str, Tensor]:
    """One forward pass, returning the (batch, pos, ...) activation at each requested hook point."""
    got: dict[str, Tensor] = {}

    encoder = is_encoder(model)

    def keeper(name: str):
        def hook(act: Tensor, hook: Any) -> None:
            got[name] = act  # a reference: stored hook outputs are not modified in place downstream
            if encoder and len(got) == len(points):
                raise _AllCaptured
        return hook

    mask = None if attention_mask is None else attention_mask.to(ids.device)
    kwargs: dict[str, Any] = {"stop_at_layer": stop} if stop is not None else {"return_type": None}
    if mask is not None:
        kwargs["attention_mask"] = mask
    with _temporary_hooks(points, {name: keeper(name) for name in points}), torch.no_grad():
        if encoder:  # HookedEncoder has no stop_at_layer, and its forward always computes MLM logits
            with contextlib.suppress(_AllCaptured):
                model.encoder_output(ids, None, mask)
        else:
            model(ids, **kwargs)
    missing = [n for n in points if n not in got]
    if missing and encoder:
        raise HooksError(f"hook_names: {missing} did not run: a HookedEncoder is captured through its "
                         f"encoder_output (embeddings and blocks), without the MLM/NSP heads")
    if missing:
        raise HooksError(f"hook_names: {missing} did not run during the forward pass (switched off by the "
                         f"model's config, e.g. use_attn_result / use_hook_tokens?)")
    return got
