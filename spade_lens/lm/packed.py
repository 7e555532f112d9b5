"""The training loss of the small HookedTransformer on a batch's real tokens only, with fused operations.

TransformerLens' forward pass is written for reading, not for speed: a LayerNorm of six element-wise operations,
einsums that copy their operands, hook points, and every position of a right-padded batch. :func:`packed_loss`
computes the same function from the model's own parameters (so the trained weights are an ordinary
HookedTransformer's) with ``F.layer_norm``, one fused Q/K/V matmul per block and ``F.linear``, and it runs the
embeddings, LayerNorms, projections, MLPs and unembedding on the real tokens of the batch only, packed into one
``(N, d_model)`` matrix; only the attention scores need the padded ``(b, L)`` layout, and the queries, keys and
values are scattered into it and gathered back. The loss is the mean next-token cross-entropy over predicted
tokens, the number :func:`spade_lens.lm.data.lm_loss` gives on the padded logits (tests check both the loss and
the gradients against TransformerLens' forward in float32).

Under ``torch.autocast(..., dtype=torch.bfloat16)`` the matmuls run in bfloat16 (the residual stream, LayerNorms,
softmax and loss stay float32): on a CPU with AVX512-BF16 the model's matmuls ran about 3 times faster than in
float32. :func:`spade_lens.training.precision.bf16_is_fast` says where that pays.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer

from spade_lens.lm.data import IGNORE_INDEX

_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}

# HookedTransformerConfig fields that change the forward pass, with the values packed_loss implements (those of
# the models spade_lens.lm.build_model makes); any other value makes the trainer use TransformerLens' forward.
_EXPECTED_CONFIG: dict[str, object] = {
    "normalization_type": "LN", "positional_embedding_type": "standard", "attn_only": False, "gated_mlp": False,
    "n_key_value_heads": None, "attention_dir": "causal", "final_rms": False, "parallel_attn_mlp": False,
    "use_local_attn": False, "scale_attn_by_inverse_layer_idx": False, "use_qk_norm": False, "clip_qkv": None,
    "post_embedding_ln": False, "use_attention_sinks": False, "num_experts": None, "dtype": torch.float32,
    "use_normalization_before_and_after": False, "load_in_4bit": False, "use_logn_attn": False,
    "original_architecture": None, "use_attn_scale": True,
}


def packed_supported(model: HookedTransformer) -> bool:
    """Whether :func:`packed_loss` computes ``model``'s own function: a model of the kind
    :func:`spade_lens.lm.build_model` makes (LayerNorm, learned positions, causal attention, a plain MLP with one
    of gelu, gelu_new, relu, silu), without hooks attached."""
    cfg = model.cfg
    if any(getattr(cfg, name, None) != value for name, value in _EXPECTED_CONFIG.items()):
        return False
    if cfg.act_fn not in _ACTIVATIONS or cfg.attn_scores_soft_cap > 0 or cfg.output_logits_soft_cap > 0:
        return False
    if any(not math.isclose(block.attn.attn_scale, math.sqrt(cfg.d_head)) for block in model.blocks):
        return False
    return not any(hp._forward_hooks or hp._backward_hooks for hp in model.hook_dict.values())


def _layer_norm(x: torch.Tensor, ln: torch.nn.Module) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), ln.w, ln.b, ln.eps)


def _attention(block: torch.nn.Module, h: torch.Tensor, flat: torch.Tensor, b: int, L: int) -> torch.Tensor:
    """Causal self-attention of one block on packed rows ``h`` (N, d_model); returns (N, d_model)."""
    attn = block.attn
    n_heads, d_head = attn.W_Q.shape[0], attn.W_Q.shape[2]
    weight = torch.cat([attn.W_Q, attn.W_K, attn.W_V]).transpose(1, 2).reshape(3 * n_heads * d_head, -1)
    bias = torch.cat([attn.b_Q, attn.b_K, attn.b_V]).reshape(-1)
    qkv = F.linear(h, weight, bias)  # (N, 3 * n_heads * d_head)
    padded = qkv.new_zeros(b * L, qkv.shape[1]).index_copy(0, flat, qkv)
    q, k, v = padded.view(b, L, 3, n_heads, d_head).permute(2, 0, 3, 1, 4)  # each (b, n_heads, L, d_head)
    scores = (q @ k.transpose(-1, -2)).float() / attn.attn_scale  # (b, n_heads, L, L)
    future = torch.ones(L, L, dtype=torch.bool, device=h.device).triu_(1)
    pattern = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    z = (pattern.to(v.dtype) @ v).transpose(1, 2).reshape(b * L, n_heads * d_head)  # (b * L, n_heads * d_head)
    return F.linear(z.index_select(0, flat), attn.W_O.reshape(n_heads * d_head, -1).t(), attn.b_O)


def packed_loss(model: HookedTransformer, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats per predicted token) of ``model`` on right-padded ``tokens`` (b, L)
    whose sequences have ``lengths`` (b,) tokens: equal, to float rounding, to
    ``lm_loss(model(tokens), lm_targets(tokens, lengths))``. Requires :func:`packed_supported`."""
    b, L = tokens.shape
    lengths = lengths.to(tokens.device)
    positions = torch.arange(L, device=tokens.device)
    real = positions[None, :] < lengths[:, None]  # (b, L)
    flat = real.reshape(-1).nonzero().squeeze(1)  # (N,) indices of the real tokens in the flattened batch
    targets = torch.full_like(tokens, IGNORE_INDEX)
    targets[:, :-1] = tokens[:, 1:]
    targets[positions[None, :] >= lengths[:, None] - 1] = IGNORE_INDEX  # (b, L): nothing after EOS
    x = F.embedding(tokens.reshape(-1)[flat], model.W_E) + F.embedding(flat % L, model.W_pos)  # (N, d_model)
    for block in model.blocks:
        x = x + _attention(block, _layer_norm(x, block.ln1), flat, b, L)
        mlp = block.mlp
        hidden = _ACTIVATIONS[model.cfg.act_fn](F.linear(_layer_norm(x, block.ln2), mlp.W_in.t(), mlp.b_in))
        x = x + F.linear(hidden, mlp.W_out.t(), mlp.b_out)
    targets = targets.reshape(-1)[flat]  # (N,)
    predicted = (targets != IGNORE_INDEX).nonzero().squeeze(1)
    h = _layer_norm(x.index_select(0, predicted), model.ln_final)  # (P, d_model)
    logits = F.linear(h, model.W_U.t(), model.b_U)  # (P, d_vocab)
    return F.cross_entropy(logits.float(), targets[predicted])
