"""hooks: stream labelled activations from any TransformerLens hooked model.

Capture at named hook points (:func:`capture_activations`), shuffle (:class:`ShuffleBuffer`), normalise
(:class:`NormStats`), and cache on disk (:func:`harvest` writes, :class:`ActivationCache` reads). Works with
``HookedTransformer``, ``HookedEncoder`` and ``TransformerBridge`` models; :func:`load_hf_model` reads a Hugging
Face model folder (BERT or GPT-2 family) into one, offline, and :func:`residual_hook_names` names its
residual-stream hooks. Imports nothing from ``spade_lens`` or ``pcfg``.
"""

from hooks.batches import ROW_KEYS, ActivationBatch, LabelledBatch
from hooks.buffer import ShuffleBuffer
from hooks.cache import ActivationCache
from hooks.capture import capture_activations
from hooks.errors import HooksError
from hooks.harvest import harvest
from hooks.hf_model import load_hf_model, residual_hook, residual_hook_names
from hooks.normalize import NormStats, estimate_norm_stats

__all__ = [
    "ROW_KEYS",
    "ActivationBatch",
    "ActivationCache",
    "HooksError",
    "LabelledBatch",
    "NormStats",
    "ShuffleBuffer",
    "capture_activations",
    "estimate_norm_stats",
    "harvest",
    "load_hf_model",
    "residual_hook",
    "residual_hook_names",
]
