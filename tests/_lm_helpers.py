"""Shared pieces of the LM tests: a tiny corpus, a tiny model config, a one-thread guard and a trained model."""

from __future__ import annotations

import functools
from pathlib import Path

from _threads import torch_threads

from pcfg import Corpus, build_corpus, load_grammar, save_corpus
from spade_lens.lm.config import LMConfig, LMTrainConfig

TINY = LMConfig(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64)
"""A model small enough to train in a second or two."""


def tiny_train(steps: int = 40, **kwargs) -> LMTrainConfig:
    """A short training schedule for :data:`TINY`."""
    base = dict(steps=steps, batch_size=16, lr=1e-2, warmup_steps=5, eval_every=10, checkpoint_every=0)
    return LMTrainConfig(**{**base, **kwargs})


@functools.cache
def tiny_corpus(n: int = 300, seed: int = 0) -> Corpus:
    """An ``english`` corpus of ``n`` sentences of at most 12 words (built once per test session)."""
    return build_corpus(load_grammar("english"), n=n, seed=seed, max_length=12, progress=False)


def saved_corpus(folder: Path) -> Path:
    """:func:`tiny_corpus` saved under ``folder/corpus``."""
    return save_corpus(tiny_corpus(), folder / "corpus")


def one_thread():
    """Run torch on one thread inside the block (the test machine is small and shared); restore after."""
    return torch_threads(1)


@functools.cache
def _trained(steps: int):
    from spade_lens.lm import train_lm

    with one_thread():
        return train_lm(tiny_corpus(), TINY, tiny_train(steps), None, progress=False)


def trained_model(steps: int = 150):
    """:data:`TINY` trained on :func:`tiny_corpus` (cached; do not modify it)."""
    return _trained(steps)
