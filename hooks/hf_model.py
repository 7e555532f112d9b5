"""Load a Hugging Face model folder from disk into TransformerLens, with its own tokenizer attached.

    model = load_hf_model("models/all-MiniLM-L6-v2")       # a HookedEncoder (BERT family)
    model = load_hf_model("models/gpt2")                    # a HookedTransformer (GPT-2 family)
    residual_hook_names(model)                              # hook i == Hugging Face hidden_states[i]

The folder is what ``save_pretrained`` writes: ``config.json``, the weights (``model.safetensors`` or
``pytorch_model.bin``) and the tokenizer's files. Nothing is fetched from the Hub: every Hugging Face call reads
the folder with ``local_files_only=True``.

- ``model_type`` ``bert`` -> ``HookedEncoder``, its config built from ``config.json`` (bidirectional
  attention), its weights converted by TransformerLens' ``convert_bert_weights``. That converter also reads the
  pretraining heads (MLM and next-sentence); a folder that holds only the encoder (``BertModel``, as
  sentence-transformers ship MiniLM) gets those heads (and a missing pooler) freshly initialised from seed 0,
  with a warning: the residual stream is the folder's, the MLM logits mean nothing.
- ``model_type`` ``gpt2`` -> ``HookedTransformer``, its config built field for field as TransformerLens'
  ``convert_hf_model_config`` does (which, in 3.9, reads a ``n_ctx`` that transformers 5 no longer writes),
  weights converted by TransformerLens' ``convert_gpt2_weights`` and loaded without processing (no LayerNorm folding, no centring, as ``from_pretrained_no_processing``), so
  every hook holds the value Hugging Face computes.
- anything else raises :class:`HooksError` naming the folder's ``model_type`` and the supported ones.

BERT is post-LayerNorm: a block's ``hook_resid_post`` is the sum *before* its last LayerNorm, and the residual
stream that the next block reads (Hugging Face's ``hidden_states[i + 1]``) is
``blocks.{i}.hook_normalized_resid_post``. :func:`residual_hook_names` gives the right name per layer for
either kind of model.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from hooks.errors import HooksError

SUPPORTED_MODEL_TYPES: dict[str, str] = {"bert": "HookedEncoder", "gpt2": "HookedTransformer"}
"""``model_type`` of ``config.json`` -> the TransformerLens class :func:`load_hf_model` builds."""

# Hugging Face activation names -> TransformerLens act_fn (the ones both define the same way).
_ACT_FNS = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_fast": "gelu_fast", "relu": "relu", "silu": "silu",
            "gelu_pytorch_tanh": "gelu_pytorch_tanh"}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                 "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")
_HEAD_SEED = 0


def read_hf_config(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The folder's ``config.json`` as a dict; :class:`HooksError` if the folder is not a model folder."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise HooksError(f"model_dir: {str(folder)!r} is not a folder; expected a Hugging Face model folder "
                         "(config.json, model.safetensors, tokenizer files)")
    path = folder / "config.json"
    if not path.is_file():
        raise HooksError(f"model_dir: {str(folder)!r} has no config.json; expected a Hugging Face model folder "
                         "(what save_pretrained writes)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HooksError(f"model_dir: {str(path)!r} is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise HooksError(f"model_dir: {str(path)!r} holds {type(config).__name__}; expected a JSON object")
    return config


def is_hf_model_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder with a Hugging Face ``config.json`` (one that names a ``model_type``)."""
    try:
        return "model_type" in read_hf_config(path)
    except HooksError:
        return False


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No per-weight progress bar from transformers while a folder loads (restored after)."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _quiet_deprecations() -> Iterator[None]:
    """TransformerLens 3.x warns that HookedEncoder/HookedTransformer go away in 4.0 (this project pins <4)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"transformer_lens\..*")
        warnings.filterwarnings("ignore", message=r"Hooked\w+ is deprecated", category=DeprecationWarning)
        yield


def _act_fn(config: dict[str, Any], key: str, folder: Path) -> str:
    name = config.get(key)
    if name not in _ACT_FNS:
        raise HooksError(f"model_dir: {str(folder)!r} config.json has {key}={name!r}; supported: "
                         f"{sorted(_ACT_FNS)}")
    return _ACT_FNS[name]


def _require(config: dict[str, Any], folder: Path, key: str, expected: Any) -> None:
    if config.get(key, expected) != expected:
        raise HooksError(f"model_dir: {str(folder)!r} config.json has {key}={config.get(key)!r}; TransformerLens' "
                         f"{SUPPORTED_MODEL_TYPES[config['model_type']]} supports only {expected!r}")


def bert_config(config: dict[str, Any], *, model_name: str, device: str, dtype: torch.dtype) -> Any:
    """The ``HookedTransformerConfig`` of a BERT ``config.json`` (as TransformerLens builds it for BERT, plus
    the folder's own activation, epsilon and bidirectional attention)."""
    from transformer_lens import HookedTransformerConfig

    folder = Path(model_name)
    _require(config, folder, "position_embedding_type", "absolute")
    _require(config, folder, "type_vocab_size", 2)  # TransformerLens' TokenTypeEmbed has 2 rows
    act_fn = _act_fn(config, "hidden_act", folder)
    try:
        d_model, n_heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        return HookedTransformerConfig(
            d_model=d_model, d_head=d_model // n_heads, n_heads=n_heads, d_mlp=int(config["intermediate_size"]),
            n_layers=int(config["num_hidden_layers"]), n_ctx=int(config["max_position_embeddings"]),
            eps=float(config.get("layer_norm_eps", 1e-12)), d_vocab=int(config["vocab_size"]),
            act_fn=act_fn, attention_dir="bidirectional",
            normalization_type="LN", original_architecture="BertForMaskedLM", model_name=folder.name,
            device=device, dtype=dtype, init_weights=False,
        )
    except KeyError as err:
        raise HooksError(f"model_dir: {str(folder)!r} config.json lacks {err.args[0]!r}; expected a BERT "
                         "config") from None
    except (TypeError, ValueError) as err:
        raise HooksError(f"model_dir: {str(folder)!r} config.json has a value of the wrong type ({err}); expected "
                         "a BERT config") from None


def gpt2_config(config: dict[str, Any], *, model_name: str, device: str, dtype: torch.dtype) -> Any:
    """The ``HookedTransformerConfig`` of a GPT-2 ``config.json``, field for field as TransformerLens'
    ``convert_hf_model_config`` builds it for ``GPT2LMHeadModel`` (and ``n_inner`` honoured when set)."""
    from transformer_lens import HookedTransformerConfig

    folder = Path(model_name)
    act_fn = _act_fn(config, "activation_function", folder)
    try:
        d_model, n_heads = int(config["n_embd"]), int(config["n_head"])
        n_inner = config.get("n_inner")
        return HookedTransformerConfig(
            d_model=d_model, d_head=d_model // n_heads, n_heads=n_heads,
            d_mlp=int(n_inner) if n_inner else 4 * d_model, n_layers=int(config["n_layer"]),
            n_ctx=int(config["n_positions"] if "n_positions" in config else config["n_ctx"]),
            eps=float(config.get("layer_norm_epsilon", 1e-5)), d_vocab=int(config["vocab_size"]),
            act_fn=act_fn,
            use_attn_scale=bool(config.get("scale_attn_weights", True)), use_local_attn=False,
            scale_attn_by_inverse_layer_idx=bool(config.get("scale_attn_by_inverse_layer_idx", False)),
            normalization_type="LN", original_architecture="GPT2LMHeadModel", model_name=folder.name,
            device=device, dtype=dtype, init_weights=False, default_prepend_bos=True,
        )
    except KeyError as err:
        raise HooksError(f"model_dir: {str(folder)!r} config.json lacks {err.args[0]!r}; expected a GPT-2 "
                         "config") from None
    except (TypeError, ValueError) as err:
        raise HooksError(f"model_dir: {str(folder)!r} config.json has a value of the wrong type ({err}); expected "
                         "a GPT-2 config") from None


def load_tokenizer(model_dir: str | os.PathLike[str]) -> Any:
    """The folder's own Hugging Face tokenizer (``AutoTokenizer``, read from the folder only).

    The folder must hold tokenizer files (transformers would otherwise build an empty vocabulary from the
    config's model type, without complaint)."""
    from transformers import AutoTokenizer

    if not any((Path(model_dir) / name).is_file() for name in _TOKENIZER_FILES):
        raise HooksError(f"model_dir: {str(model_dir)!r} has no tokenizer files; expected one of "
                         f"{list(_TOKENIZER_FILES)} beside config.json")
    try:
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        raise HooksError(f"model_dir: {str(model_dir)!r} has no tokenizer that transformers can read "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); expected "
                         "tokenizer.json or vocab files beside config.json") from None


def _check_weights(folder: Path) -> None:
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise HooksError(f"model_dir: {str(folder)!r} has no weights; expected one of {list(_WEIGHT_FILES)}")


def _load_bert(folder: Path, config: dict[str, Any], device: str, dtype: torch.dtype) -> Any:
    from transformer_lens import HookedEncoder
    from transformer_lens.pretrained.weight_conversions.bert import convert_bert_weights
    from transformers import BertForPreTraining

    cfg = bert_config(config, model_name=str(folder), device=device, dtype=dtype)
    tokenizer = load_tokenizer(folder)
    with torch.random.fork_rng(devices=[]):  # heads missing from the folder: seeded, the global RNG untouched
        torch.manual_seed(_HEAD_SEED)
        hf, info = BertForPreTraining.from_pretrained(str(folder), local_files_only=True, dtype=dtype,
                                                      output_loading_info=True)
    missing = sorted(info.get("missing_keys", []))
    encoder_missing = [k for k in missing if k.startswith("bert.") and ".pooler." not in k]
    if encoder_missing:
        raise HooksError(f"model_dir: {str(folder)!r} lacks encoder weights {encoder_missing[:5]}; expected a "
                         "complete BERT checkpoint")
    if missing:
        heads = sorted({".".join(k.split(".")[:2]) for k in missing})
        warnings.warn(f"{folder}: no weights for {heads} (the folder holds the encoder only); they are "
                      f"initialised from seed {_HEAD_SEED}: the residual stream is the model's, MLM logits are not",
                      stacklevel=3)
    state = convert_bert_weights(hf, cfg)
    with _quiet_deprecations():
        model = HookedEncoder(cfg, tokenizer=tokenizer, move_to_device=False)
    result = model.load_state_dict({k: v.detach().to(dtype) for k, v in state.items()}, strict=False)
    buffers = {name for name, _ in model.named_buffers()}
    if result.unexpected_keys or set(result.missing_keys) - buffers:  # only attention-mask buffers are not weights
        raise HooksError(f"model_dir: {str(folder)!r}: converted weights do not fit the HookedEncoder (missing "
                         f"{sorted(set(result.missing_keys) - buffers)[:5]}, unexpected {result.unexpected_keys[:5]})")
    return model.to(device, print_details=False)


def _load_gpt2(folder: Path, config: dict[str, Any], device: str, dtype: torch.dtype) -> Any:
    from transformer_lens import HookedTransformer
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
    from transformers import GPT2LMHeadModel

    cfg = gpt2_config(config, model_name=str(folder), device=device, dtype=dtype)
    tokenizer = load_tokenizer(folder)
    hf = GPT2LMHeadModel.from_pretrained(str(folder), local_files_only=True, dtype=dtype)
    state = convert_gpt2_weights(hf, cfg)
    with _quiet_deprecations():
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    model.load_and_process_state_dict({k: v.detach() for k, v in state.items()}, fold_ln=False,
                                      center_writing_weights=False, center_unembed=False,
                                      fold_value_biases=False, refactor_factored_attn_matrices=False)
    return model.to(device, print_details=False)


def load_hf_model(model_dir: str | os.PathLike[str], *, device: str | torch.device | None = None,
                  dtype: torch.dtype = torch.float32, model_name: str | None = None) -> Any:
    """A TransformerLens model of the Hugging Face folder ``model_dir`` with its tokenizer as ``model.tokenizer``.

    BERT-family folders give a ``HookedEncoder``, GPT-2-family folders a ``HookedTransformer`` (see the module
    docstring); ``device`` defaults to the CPU. In eval mode, on ``device``, in ``dtype``. ``model_name``
    (default: the folder's name) becomes ``model.cfg.model_name``, which activation caches and SAEs record.
    """
    folder = Path(model_dir)
    config = read_hf_config(folder)
    kind = config.get("model_type")
    if kind not in SUPPORTED_MODEL_TYPES:
        arch = config.get("architectures")
        raise HooksError(f"model_dir: {str(folder)!r} holds a model_type={kind!r} model (architectures {arch}); "
                         f"load_hf_model supports {', '.join(f'{k!r} (-> {v})' for k, v in SUPPORTED_MODEL_TYPES.items())}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise HooksError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    _check_weights(folder)
    device = str(device or "cpu")
    loader = _load_bert if kind == "bert" else _load_gpt2
    with torch.no_grad(), _quiet_loading():
        model = loader(folder, config, device, dtype)
    if len(model.tokenizer) > model.cfg.d_vocab:
        raise HooksError(f"model_dir: {str(folder)!r}: its tokenizer has {len(model.tokenizer)} tokens, more than "
                         f"the model's vocabulary ({model.cfg.d_vocab}); expected the model's own tokenizer")
    if model_name is not None:
        model.cfg.model_name = str(model_name)
    return model.eval()


def is_encoder(model: Any) -> bool:
    """Whether ``model`` is a TransformerLens ``HookedEncoder`` (bidirectional, post-LayerNorm BERT blocks):
    one with ``encoder_output(tokens, token_type_ids, one_zero_attention_mask)`` and bidirectional attention."""
    return callable(getattr(model, "encoder_output", None)) and \
        getattr(getattr(model, "cfg", None), "attention_dir", None) == "bidirectional"


def residual_hook_names(model: Any) -> list[str]:
    """The hook that holds the residual stream after ``i`` blocks, for ``i = 0 .. n_layers``.

    Entry ``i`` equals Hugging Face's ``hidden_states[i]`` (for GPT-2 up to ``n_layers - 1``: Hugging Face's last
    entry is after the final LayerNorm, ours the stream before it). On a ``HookedEncoder`` (BERT, post-LN) that
    is ``hook_full_embed`` then ``blocks.{i}.hook_normalized_resid_post``; on a ``HookedTransformer`` (pre-LN)
    ``blocks.0.hook_resid_pre`` then ``blocks.{i}.hook_resid_post``.
    """
    n = int(model.cfg.n_layers)
    if is_encoder(model):
        return ["hook_full_embed", *(f"blocks.{i}.hook_normalized_resid_post" for i in range(n))]
    return ["blocks.0.hook_resid_pre", *(f"blocks.{i}.hook_resid_post" for i in range(n))]


def residual_hook(model: Any, layer: int) -> str:
    """The hook of the residual stream after ``layer`` blocks (0: the embeddings); see :func:`residual_hook_names`."""
    names = residual_hook_names(model)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(names):
        raise HooksError(f"layer: expected an integer in [0, {len(names) - 1}] (blocks of this model), got {layer!r}")
    return names[layer]
