"""Build the small HookedTransformer from an :class:`~spade_lens.lm.config.LMConfig`.

The model is a plain TransformerLens ``HookedTransformer`` (LayerNorm, learned positions, untied
unembedding), so every TransformerLens tool works on it. It carries the corpus tokenizer (as a Hugging Face
fast tokenizer) so ``model.to_str_tokens`` and ``model.to_tokens`` work.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from spade_lens.errors import SpadeLensError
from spade_lens.lm.config import LMConfig


def hooked_config(cfg: LMConfig, device: str | torch.device = "cpu") -> HookedTransformerConfig:
    """The TransformerLens config of ``cfg``, whose ``n_ctx`` and ``d_vocab`` must be set (see
    :func:`~spade_lens.lm.config.resolve_config`). ``seed`` stays None: TransformerLens would seed the global
    random generators with it; :func:`build_model` seeds a forked generator instead."""
    for name in ("n_ctx", "d_vocab"):
        if getattr(cfg, name) is None:
            raise SpadeLensError(
                f"LMConfig.{name}: got None; expected an integer (resolve the config against a corpus with "
                "spade_lens.lm.resolve_config first)"
            )
    return HookedTransformerConfig(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_ctx=cfg.n_ctx,
        d_head=cfg.d_head,
        n_heads=cfg.n_heads,
        d_mlp=cfg.d_mlp,
        d_vocab=cfg.d_vocab,
        act_fn=cfg.act_fn,
        normalization_type="LN",
        positional_embedding_type=cfg.positional,
        device=str(device),
        seed=None,
    )


def hf_tokenizer(tokenizer: Any) -> Any:
    """A Hugging Face tokenizer from a :class:`pcfg.Tokenizer` (via ``to_hf()``) or one already."""
    if tokenizer is None or not hasattr(tokenizer, "to_hf"):
        return tokenizer
    return tokenizer.to_hf()


def parameter_count(cfg: LMConfig) -> int:
    """Parameters of the model :func:`build_model` makes for a resolved ``cfg`` (biases left out)."""
    attn = 4 * cfg.n_heads * cfg.d_head * cfg.d_model
    return 2 * cfg.d_vocab * cfg.d_model + cfg.n_ctx * cfg.d_model + cfg.n_layers * (attn + 2 * cfg.d_model * cfg.d_mlp)


def build_model(
    cfg: LMConfig, tokenizer: Any = None, *, device: str | torch.device = "cpu"
) -> HookedTransformer:
    """A freshly initialised HookedTransformer for ``cfg`` (weights from ``cfg.init_seed``).

    Args:
        cfg: a resolved config (``n_ctx`` and ``d_vocab`` set).
        tokenizer: a :class:`pcfg.Tokenizer` or a Hugging Face tokenizer to attach, or None. Its size must
            equal ``cfg.d_vocab``.
        device: where the model lives. Weights are always drawn on the CPU first, so a seed gives the same
            model on every device; the global random state is left untouched.
    """
    from spade_lens.devices import check_device, check_fits

    check_device(device)
    if cfg.n_ctx is not None and cfg.d_vocab is not None:  # float32 weights, drawn on the CPU first
        check_fits(f"LMConfig: a model of {parameter_count(cfg):,} parameters", 4 * parameter_count(cfg))
    htcfg = hooked_config(cfg, device="cpu")
    hf = hf_tokenizer(tokenizer)
    if hf is not None and len(hf) != cfg.d_vocab:
        raise SpadeLensError(
            f"tokenizer: has {len(hf)} tokens, but LMConfig.d_vocab is {cfg.d_vocab}; expected the "
            "tokenizer the model was configured for"
        )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # TransformerLens 3.9 deprecates HookedTransformer in favour of TransformerBridge; this project
        # builds its own small model on purpose (DESIGN.md section 2), so only this warning is silenced.
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        torch.manual_seed(cfg.init_seed)
        model = HookedTransformer(htcfg, tokenizer=hf, default_padding_side="right" if hf is not None else None)
    model.cfg.seed = cfg.init_seed  # recorded only (set after construction, so nothing global was seeded)
    if torch.device(device) != torch.device("cpu"):
        model = model.to(device)
    return model.eval()


def load_parameters(model: HookedTransformer, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` (parameter name -> tensor) into ``model``; every parameter must be there with its
    shape, and nothing else (buffers such as the causal mask are rebuilt by TransformerLens).

    Raises SpadeLensError naming ``source`` (the file the tensors came from) on any mismatch.
    """
    expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise SpadeLensError(
            f"{source}: tensors do not match the model config: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}; expected exactly the parameters of the configured HookedTransformer"
        )
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise SpadeLensError(
                f"{source}: tensor {name!r} has shape {tuple(tensors[name].shape)}, expected {shape} "
                "(from config.json)"
            )
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(tensors[name].to(dtype=param.dtype, device=param.device))
