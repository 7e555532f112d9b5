"""The small language model: a TransformerLens HookedTransformer trained on a pcfg corpus.

::

    from pcfg import load_corpus
    from spade_lens.lm import LMConfig, LMTrainConfig, train_lm, load_lm, sample_lm, judge_lm, load_lm_grammar

    model = train_lm(load_corpus("runs/corpus"), LMConfig(), LMTrainConfig(steps=2000), "runs/lm")
    model = load_lm("runs/lm")                       # config.json, model.safetensors, tokenizer.json, grammar.pcfg
    sentences = sample_lm(model, n=10, seed=0)       # list of word lists
    verdict = judge_lm(model, load_lm_grammar("runs/lm"), n=1000)   # grammaticality, loss vs entropy

Names are imported on first use, so ``spade_lens.lm.config`` (used by the command line to build its options)
does not pull in TransformerLens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spade_lens._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "LMConfig": "config",
    "LMTrainConfig": "config",
    "resolve_config": "config",
    "build_model": "model",
    "fit": "train",
    "train_lm": "train",
    "save_lm": "io",
    "load_lm": "io",
    "load_lm_grammar": "io",
    "sample_lm": "sample",
    "judge_lm": "sample",
    "LMJudgement": "sample",
}
__all__ = [
    "LMConfig",
    "LMJudgement",
    "LMTrainConfig",
    "build_model",
    "fit",
    "judge_lm",
    "load_lm",
    "load_lm_grammar",
    "resolve_config",
    "sample_lm",
    "save_lm",
    "train_lm",
]

if TYPE_CHECKING:
    from spade_lens.lm.config import LMConfig, LMTrainConfig, resolve_config
    from spade_lens.lm.io import load_lm, load_lm_grammar, save_lm
    from spade_lens.lm.model import build_model
    from spade_lens.lm.sample import LMJudgement, judge_lm, sample_lm
    from spade_lens.lm.train import fit, train_lm


__getattr__, __dir__ = lazy_exports(__name__, {name: f"{__name__}.{module}" for name, module in _EXPORTS.items()})
