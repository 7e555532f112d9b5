"""A tiny run for the dashboard tests: corpus, untrained model, validation activations, four SAEs (a few seconds)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from _lm_helpers import TINY
from _threads import torch_threads

from hooks import ActivationCache, harvest
from pcfg import build_corpus, load_grammar, save_corpus
from spade_lens.lm import build_model, save_lm
from spade_lens.lm.config import resolve_config
from spade_lens.pipeline import ARCHITECTURES
from spade_lens.saes import create_sae

HOOK = "blocks.0.hook_resid_post"
WIDTH = 24
SAE_KWARGS = {"relu": {}, "topk": {"k": 4}, "jumprelu": {"init_threshold": 0.3}, "spade": {}}


@dataclass
class TinyRun:
    root: Path
    corpus: Path
    lm: Path
    acts: Path
    saes: dict[str, Path]


def tiny_run(root: Path, n: int = 500) -> TinyRun:
    """Build every input of a dashboard under ``root`` (validation split, whole-sentence activations)."""
    with torch_threads(1):
        corpus = build_corpus(load_grammar("english"), n=n, seed=0, max_length=12, progress=False)
        save_corpus(corpus, root / "corpus")
        cfg = resolve_config(TINY, longest_sequence=corpus.metadata["max_seq_len"], vocab_size=len(corpus.tokenizer))
        model = build_model(cfg, corpus.tokenizer)
        save_lm(model, root / "lm", grammar=corpus.grammar, tokenizer=corpus.tokenizer)
        cache = harvest(model, corpus.dataset["validation"], [HOOK], root / "acts", shard_tokens=100,
                        batch_size=8, progress=False)
        saes = _saes(cache, root / "saes")
    return TinyRun(root, root / "corpus", root / "lm", root / "acts", saes)


def _saes(cache: ActivationCache, folder: Path) -> dict[str, Path]:
    stats = cache.norm_stats(HOOK)
    x = cache.load(HOOK).acts
    out = {}
    for i, arch in enumerate(ARCHITECTURES):
        sae = create_sae(arch, d_in=cache.dims[HOOK], d_sae=WIDTH, seed=i, hook_name=HOOK, **SAE_KWARGS[arch])
        sae.set_normalization(stats.mean, stats.scale)
        if arch == "spade":
            sae.init_prototypes_from_data(x, seed=1)
            with torch.no_grad():
                sae.lambda_pre.fill_(2.0)
        out[arch] = sae.save(folder / arch)
    return out


@functools.cache
def shared_tiny_run() -> TinyRun:
    """One :func:`tiny_run` per test session (in a temporary folder removed at exit); do not modify it."""
    root = Path(tempfile.mkdtemp(prefix="spade-lens-dashboard-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return tiny_run(root)
