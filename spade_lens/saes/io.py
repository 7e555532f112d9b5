"""Saving and loading SAE folders in the SAELens 6 layout.

A folder holds
- ``cfg.json``: the SAELens config (``architecture`` in SAELens' naming: ``standard`` for relu, ``topk``,
  ``jumprelu``, ``spade``; ``d_in``, ``d_sae``, ``dtype``, ``device``, ``apply_b_dec_to_input``,
  ``normalize_activations``, ``reshape_activations``, ``metadata`` {``hook_name``, ``model_name``,
  ``sae_lens_version``}, plus architecture keys such as ``k``), and under the key ``spade_lens`` our own
  config, normalisation statistics and format version;
- ``sae_weights.safetensors``: the weights SAELens reads, with our input normalisation folded in, so SAELens
  (which sees raw activations) encodes and decodes exactly as we do;
- ``spade_lens_state.safetensors``: our exact state dict (unfolded), so that ``load_sae(save(sae))`` is
  bit-identical (checkpoints and resume rely on it). SAELens ignores this file. Folders without it
  (written by SAELens itself) are loaded from ``sae_weights.safetensors`` with mean 0, scale 1.

Loading reads both files and checks that they agree (the SAELens weights are what our state folds to, within
float rounding), so a missing, truncated or edited ``sae_weights.safetensors`` is reported, not ignored; every
tensor must be finite. Every write is atomic: the folder is written beside the target and renamed into place;
an existing folder is replaced only when it is an SAE folder (or empty).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from spade_lens._atomic import atomic_dir
from spade_lens.errors import SpadeLensError
from spade_lens.provenance import check_target
from spade_lens.saes.base import SAE
from spade_lens.saes.registry import get_sae_class, list_architectures

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
STATE_FILENAME = "spade_lens_state.safetensors"
FORMAT_VERSION = 1
MIN_SAELENS_VERSION = "6.0.0"

# SAELens architecture name <-> ours (only where they differ).
_TO_SAELENS = {"relu": "standard"}
_FROM_SAELENS = {v: k for k, v in _TO_SAELENS.items()}

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _saelens_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("sae-lens")
    except PackageNotFoundError:
        return MIN_SAELENS_VERSION


def saelens_cfg(sae: SAE, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``cfg.json`` dict of ``sae`` (SAELens keys plus our ``spade_lens`` block); ``extra``: the config keys
    of ``sae.saelens_state()`` when the caller already has them."""
    if extra is None:
        extra, _ = sae.saelens_state()
    arch = sae.cfg.architecture
    return {
        "architecture": _TO_SAELENS.get(arch, arch),
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "dtype": _dtype_name(sae.W_dec.dtype),
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "hook_name": sae.cfg.hook_name,
            "model_name": sae.cfg.model_name,
            "hook_head_index": None,
            "prepend_bos": True,
            "sae_lens_version": _saelens_version(),
            "sae_lens_training_version": None,
        },
        **extra,
        "spade_lens": {
            "format_version": FORMAT_VERSION,
            "architecture": arch,
            "config": dataclasses.asdict(sae.cfg),
            "norm_mean": [float(v) for v in sae.norm_mean.detach().double().cpu()],
            "norm_scale": float(sae.norm_scale),
        },
    }


def save_sae(sae: SAE, path: str | Path) -> Path:
    """Write ``sae`` into folder ``path`` (replaced atomically if it exists). Returns the folder."""
    path = check_target(path, "sae", arg="path")
    with atomic_dir(path) as tmp:
        extra, weights = sae.saelens_state()
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / WEIGHTS_FILENAME))
        state = {k: v.detach().cpu().contiguous() for k, v in sae.state_dict().items()}
        save_file(state, str(tmp / STATE_FILENAME))
        with open(tmp / CFG_FILENAME, "w") as f:
            json.dump(saelens_cfg(sae, extra), f, indent=2)
    return path


def _read_tensors(file: Path) -> dict[str, Tensor]:
    if not file.is_file():
        raise SpadeLensError(f"missing file {str(file)!r}; an SAE folder needs {CFG_FILENAME} and {WEIGHTS_FILENAME}")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise SpadeLensError(f"cannot read {str(file)!r}: not a valid safetensors file ({err})") from None


def _read_cfg(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise SpadeLensError(f"missing file {str(file)!r}; an SAE folder needs {CFG_FILENAME} and {WEIGHTS_FILENAME}")
    try:
        cfg = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SpadeLensError(f"cannot read {str(file)!r}: not valid JSON ({err})") from None
    if not isinstance(cfg, dict):
        raise SpadeLensError(f"{str(file)!r} must hold a JSON object, got {type(cfg).__name__}")
    return cfg


def _check_finite(file: Path, state: dict[str, Tensor]) -> None:
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise SpadeLensError(f"{str(file)!r}: tensor {name!r} holds {bad} NaN/inf value(s) of {tensor.numel()}; "
                                 "expected finite weights (the SAE diverged or the file was damaged)")


def _check_agree(weights_file: Path, stored: dict[str, Tensor], folded: dict[str, Tensor]) -> None:
    """SpadeLensError unless the SAELens weights on disk are those our exact state folds to (float rounding)."""
    for name, want in folded.items():
        got = stored[name].to(torch.float64)
        want = want.detach().to(torch.float64).cpu()
        tol = 1e-4 * max(1.0, float(want.abs().max()) if want.numel() else 1.0)
        if not torch.allclose(got, want, rtol=1e-4, atol=tol):
            diff = float((got - want).abs().max())
            raise SpadeLensError(
                f"{str(weights_file)!r}: tensor {name!r} differs from the one {STATE_FILENAME} gives (by up to "
                f"{diff:.3g}); the folder was changed after it was saved. Expected the two files of one save: save "
                f"the SAE again, or delete {STATE_FILENAME} to load the SAELens weights alone"
            )


def _check_state(file: Path, state: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise SpadeLensError(
            f"{str(file)!r} does not match the config: missing tensors {missing}, unexpected tensors {unexpected}"
        )
    for name, ref in expected.items():
        if tuple(state[name].shape) != tuple(ref.shape):
            raise SpadeLensError(
                f"{str(file)!r}: tensor {name!r} has shape {tuple(state[name].shape)}, expected "
                f"{tuple(ref.shape)} from cfg.json"
            )


def load_sae(
    path: str | Path, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> SAE:
    """Load an SAE folder written by :func:`save_sae` or by SAELens (``standard``/``topk``/``jumprelu``).

    Raises :class:`SpadeLensError` naming the file and the problem on a missing, truncated or mismatched file.
    """
    path = Path(path)
    if not path.is_dir():
        raise SpadeLensError(f"path {str(path)!r} is not a folder; expected an SAE folder with {CFG_FILENAME}")
    cfg_file = path / CFG_FILENAME
    raw = _read_cfg(cfg_file)
    ours = raw.get("spade_lens")
    if isinstance(ours, dict):
        arch = ours.get("architecture")
        cfg_fields = ours.get("config")
        if not isinstance(cfg_fields, dict):
            raise SpadeLensError(f"{str(cfg_file)!r}: key spade_lens.config must be an object")
    else:
        sl_arch = raw.get("architecture", "standard")
        arch = _FROM_SAELENS.get(sl_arch, sl_arch)
        cfg_fields = None
    try:
        sae_class = get_sae_class(arch)
    except SpadeLensError:
        raise SpadeLensError(
            f"{str(cfg_file)!r}: unknown architecture {arch!r}; registered architectures: "
            f"{', '.join(list_architectures())}"
        ) from None
    file_dtype = _DTYPES.get(str(raw.get("dtype", "float32")).removeprefix("torch."))
    if file_dtype is None:
        raise SpadeLensError(f"{str(cfg_file)!r}: dtype {raw.get('dtype')!r} is not one of {sorted(_DTYPES)}")
    try:
        if cfg_fields is not None:
            cfg = sae_class.config_class(**cfg_fields)
        else:
            cfg = sae_class.config_from_saelens(raw)
    except TypeError as err:
        raise SpadeLensError(f"{str(cfg_file)!r}: config does not fit architecture {arch!r} ({err})") from None
    except SpadeLensError as err:
        raise SpadeLensError(f"{str(cfg_file)!r}: invalid config: {err}") from None
    sae = sae_class(cfg, dtype=file_dtype)
    state_file = path / STATE_FILENAME
    weights_file = path / WEIGHTS_FILENAME
    if cfg_fields is not None and state_file.is_file():
        state = _read_tensors(state_file)
        _check_state(state_file, state, sae.state_dict())
        _check_finite(state_file, state)
        sae.load_state_dict(state)
    weights = _read_tensors(weights_file)
    _check_state(weights_file, weights, sae.saelens_state()[1])
    _check_finite(weights_file, weights)
    if cfg_fields is not None and state_file.is_file():
        _check_agree(weights_file, weights, sae.saelens_state()[1])
    else:
        sae.load_saelens_state(sae.adapt_saelens_state(raw, weights))
    if dtype is not None:
        sae.to(dtype=dtype)
    if device is not None:
        sae.to(device)
    return sae
