"""``spade-lens run``: the whole pipeline on defaults, one stage after another.

Stages and their folders under ``out``::

    corpus/        pcfg corpus of the grammar (datasets folder + tokenizer + grammar)
    lm/            the small HookedTransformer trained on it (checkpoints in lm/checkpoint while training)
    activations/   activations at ``hook`` on sentence tokens only, with their labels (hooks cache)
    saes/<arch>/   one SAE folder per architecture (SAELens layout)
    report/        report.md, metrics.json and figures of the concept probe (six parts of speech)
    report/paper_concepts/   the same probe with nouns and pronouns as one concept, as the SpaDE paper counts them
    report/dashboard/        the latent browser: open index.html (see :mod:`spade_lens.dashboard`)

Every stage writes its folder atomically or resumes from its own checkpoint, and a stage whose output already
exists is skipped when the settings recorded with it (its ``provenance.json``, :mod:`spade_lens.provenance`)
equal the requested ones and it was made from the current inputs; otherwise the run stops and says which
setting differs. So an interrupted run continues where it stopped when started again with the same ``out``,
and a run with other settings never prints old results. Folders of earlier versions (no provenance) are
checked on what they recorded (corpus.json, checkpoints, the SAEs' cfg.json) and reused with a note.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spade_lens.errors import SpadeLensError

ARCHITECTURES: tuple[str, ...] = ("relu", "topk", "jumprelu", "spade")


@dataclass(frozen=True)
class RunConfig:
    """Sizes of one pipeline run; :meth:`default` and :meth:`quick` are the two presets of the CLI."""

    grammar: str = "english"
    """Built-in grammar name or path to a .pcfg file."""
    n_sentences: int = 100_000
    """Sentences in the corpus (train + validation)."""
    lm_steps: int = 6_000
    """Training steps of the language model."""
    lm_batch_size: int = 128
    """Sequences per LM training batch."""
    hook: str = "blocks.0.hook_resid_post"
    """Hook point whose activations the SAEs read."""
    max_tokens: int = 200_000
    """Tokens of activations harvested (sentence tokens only)."""
    width: int = 256
    """Latents per SAE."""
    sae_steps: int = 2_000
    """Training steps of the SAEs (all trained side by side on the same batches)."""
    sae_batch_size: int = 1024
    """Activations per SAE training batch."""
    sae_lr: float = 1e-3
    """Peak Adam learning rate of the SAEs (cosine decay to a hundredth)."""
    sae_lr_scale: dict[str, float] = field(default_factory=lambda: dict(SAE_LR_SCALE))
    """Per-architecture factor on ``sae_lr`` (default :data:`SAE_LR_SCALE`: SpaDE at 1e-2)."""
    probe_tokens: int = 50_000
    """Tokens of held-out (validation-split) activations the probe reads."""
    judge_samples: int = 1_000
    """Samples of the trained model checked by the grammar's parser."""
    sae_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-architecture keyword arguments (sparsity coefficients, k), merged over :data:`SAE_DEFAULTS`."""
    seed: int = 0
    """Seed of every stage."""
    sae_seed: int | None = None
    """Seed of the SAE stage alone (initialisation and batch order); None: ``seed``. Lets several SAE seeds
    share one corpus, model and activations."""

    def __post_init__(self) -> None:
        for name in ("n_sentences", "lm_steps", "lm_batch_size", "max_tokens", "width", "sae_steps",
                     "sae_batch_size", "probe_tokens", "judge_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise SpadeLensError(f"RunConfig.{name}: expected a positive integer, got {value!r}")
        for name in ("seed", "sae_seed"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise SpadeLensError(f"RunConfig.{name}: expected a non-negative integer, got {value!r}")
        for name in ("sae_kwargs", "sae_lr_scale"):
            unknown = set(getattr(self, name)) - set(ARCHITECTURES)
            if unknown:
                raise SpadeLensError(f"RunConfig.{name}: unknown architectures {sorted(unknown)}, "
                                     f"expected some of {list(ARCHITECTURES)}")

    @property
    def sae_stage_seed(self) -> int:
        """The seed of the SAE stage: ``sae_seed``, or ``seed`` when that is None."""
        return self.seed if self.sae_seed is None else self.sae_seed

    @classmethod
    def quick(cls, **overrides: Any) -> RunConfig:
        """A tiny run (about 20-40 s on 2 CPU cores) for smoke tests; its numbers mean little (its 60-step
        language model writes few grammatical sentences)."""
        sizes = dict(n_sentences=600, lm_steps=60, lm_batch_size=32, max_tokens=6_000, width=64,
                     sae_steps=60, sae_batch_size=256, probe_tokens=2_000, judge_samples=50)
        return cls(**{**sizes, **overrides})


# Sparsity settings of the four SAEs on the default run, chosen from the sweep in the README (`spade-lens sweep`,
# 4 architectures x 5 settings x 3 seeds on the default run's activations) as each architecture's setting with L0
# 11-16: ReLU L1 1.0, TopK k=16, JumpReLU thresholds starting at 0.2 (normalised units: in 2,000 steps its L0
# penalty hardly moves them, so the start sets the L0), SpaDE KDS 0.03. SpaDE also gets the dead-prototype
# auxiliary loss (spade_lens.saes.spade): with random N(0, I) prototypes, the ones that are farther from every input
# than the others never enter a sparsemax support, receive no gradient and stay where they started (74-90% of the
# 256 dead over the sweep's KDS settings, 3 seeds); the auxiliary loss pulls them to the inputs nearest to them,
# which leaves 20-45% dead and raises the best-latent F1 at matched L0 (README). Resampling dead prototypes onto
# badly reconstructed inputs and k-means++ initialisation keep all of them alive too but split every part of speech
# over many latents (mean best-latent F1 0.25-0.71), so they are options, not defaults. RunConfig.sae_kwargs
# overrides these per architecture.
SAE_DEFAULTS: dict[str, dict[str, Any]] = {
    "relu": {"l1_coefficient": 1.0},
    "topk": {"k": 16},
    "jumprelu": {"l0_coefficient": 1.0, "init_threshold": 0.2},
    "spade": {"kds_coefficient": 0.03, "dead_aux_coefficient": 30.0, "dead_aux_lambda_scale": 0.1},
}

# SpaDE trains at the reference recipe's learning rate, 1e-2 (DESIGN.md section 3), ten times the baselines' 1e-3
# (at which their sparsity settings above were chosen): at 1e-3 its NMSE stayed near 0.11 after 2,000 steps on the
# default run (0.002 at 1e-2, with KDS 0.02 for a similar L0).
SAE_LR_SCALE: dict[str, float] = {"spade": 10.0}

# The SpaDE paper's own evaluation adds pronoun tokens to the noun concept (five concepts). In the default grammar
# nouns and pronouns have the same right contexts, so a language model has no reason to tell them apart; the run
# reports both views.
PAPER_GROUPS: dict[str, list[str]] = {"N+Pro": ["N", "Pro"]}

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class RunResult:
    """What :func:`run_pipeline` produced: the folders of each stage and the probe results."""

    out: Path
    lm_grammaticality: float | None
    probe: dict[str, Any]
    report_dir: Path
    paper_probe: dict[str, Any] | None = None
    """The probe with :data:`PAPER_GROUPS` merged (None when the grammar lacks N or Pro)."""
    dashboard: Path | None = None
    """The latent browser's ``index.html``."""


def _redo(folder: Path) -> str:
    return (f"to redo this stage with the requested settings, remove {str(folder)!r} (and the later stages), or run "
            "into another --out (a --quick run and a full run need separate folders)")


def _corpus_stage(cfg: RunConfig, folder: Path, say: Say, progress: bool) -> Any:
    from pcfg import build_corpus, load_corpus, load_grammar, save_corpus
    from spade_lens.provenance import check_reuse, json_identity

    grammar = load_grammar(cfg.grammar)

    def settings(name: str, text: str, n: Any, seed: Any, val: Any, max_length: Any) -> dict[str, Any]:
        return {"grammar": f"{name} ({json_identity(text)})", "n": n, "seed": seed, "val_fraction": val,
                "max_length": max_length}

    wanted = settings(grammar.name, grammar.text, cfg.n_sentences, cfg.seed, 0.1, 64)
    recorded = None
    if (folder / "corpus.json").is_file():  # every version wrote its settings there
        meta = load_corpus(folder).metadata
        recorded = {"settings": settings(meta.get("grammar"), meta.get("grammar_text", ""), meta.get("n"),
                                         meta.get("seed"), meta.get("val_fraction"), meta.get("max_length"))}
    if check_reuse(folder, "corpus", wanted, recorded=recorded, how=_redo(folder)) == "same":
        say(f"[1/5] corpus: {folder} exists with these settings, skipped")
        return load_corpus(folder)
    say(f"[1/5] corpus: {cfg.n_sentences} sentences of grammar {cfg.grammar!r} -> {folder}")
    corpus = build_corpus(grammar, n=cfg.n_sentences, seed=cfg.seed, progress=progress)
    save_corpus(corpus, folder)
    return load_corpus(folder)


def _lm_stage(cfg: RunConfig, corpus: Any, folder: Path, say: Say, progress: bool,
              device: str) -> tuple[Any, float | None]:
    from spade_lens.lm import LMConfig, LMTrainConfig, judge_lm, load_lm, train_lm
    from spade_lens.lm.checkpoint import CHECKPOINT_DIR, load_checkpoint
    from spade_lens.lm.config import LEGACY_RESULT_VALUES, RESULT_FIELDS
    from spade_lens.lm.io import CONFIG_FILE
    from spade_lens.provenance import check_reuse, read_provenance
    from spade_lens.training.precision import resolve_precision

    lm_cfg = LMConfig(init_seed=cfg.seed)
    train_cfg = LMTrainConfig(steps=cfg.lm_steps, batch_size=cfg.lm_batch_size, seed=cfg.seed,
                              warmup_steps=min(100, cfg.lm_steps // 10), precision=resolve_precision("auto", device))
    wanted = {"lm_config": {k: v for k, v in lm_cfg.to_dict().items() if v is not None},
              "train_config": {k: getattr(train_cfg, k) for k in RESULT_FIELDS}}
    if (folder / CONFIG_FILE).is_file():
        record = read_provenance(folder)
        if record is None and (folder / CHECKPOINT_DIR).is_dir():  # earlier versions: the checkpoint's configs
            state = load_checkpoint(folder / CHECKPOINT_DIR) or {}
            record = {"settings": {"lm_config": state.get("lm_config", {}), "train_config": state.get("train_config", {})}}
        if record is not None:
            rec = record.get("settings", {})
            record = {"inputs": record.get("inputs", {}), "settings": {
                "lm_config": {k: rec.get("lm_config", {}).get(k) for k in wanted["lm_config"]},
                "train_config": {k: rec.get("train_config", {}).get(k, LEGACY_RESULT_VALUES.get(k))
                                 for k in RESULT_FIELDS}}}
        state = check_reuse(folder, "lm", wanted, recorded=record, how=_redo(folder),
                            inputs={"corpus": corpus.identity} if record and record.get("inputs") else None)
        note = " (made by an earlier version that recorded no settings: not checked)" if state == "legacy" else ""
        say(f"[2/5] language model: {folder} exists with these settings, skipped{note}")
        return load_lm(folder, device=device), None
    say(f"[2/5] language model: {cfg.lm_steps} steps -> {folder}")
    model = train_lm(corpus, lm_cfg, train_cfg, folder, progress=progress, resume=True, device=device)
    verdict = judge_lm(model, corpus.grammar, n=cfg.judge_samples, seed=cfg.seed)
    say(f"      grammatical samples: {verdict.grammaticality:.1%} of {cfg.judge_samples}")
    return model, verdict.grammaticality


def _harvest_stage(model: Any, split: Any, folder: Path, cfg: RunConfig, max_tokens: int | None, step: str,
                   say: Say, progress: bool) -> Any:
    from hooks import ActivationCache, HooksError, harvest
    from hooks.harvest import MISMATCH_HINT

    try:
        done = ActivationCache(folder).complete
    except HooksError:  # missing, or an interrupted harvest that harvest() resumes
        done = False
    if not done:
        limit = f"up to {max_tokens} sentence tokens" if max_tokens else "every sentence token"
        say(f"[{step}] activations at {cfg.hook} ({limit}) -> {folder}")
    try:  # harvest() checks the model, the source (corpus and split) and the settings of an existing cache
        cache = harvest(model, split, [cfg.hook], folder, max_tokens=max_tokens, progress=progress)
    except HooksError as err:
        raise SpadeLensError(str(err).replace(MISMATCH_HINT, _redo(folder))) from None
    if done:
        say(f"[{step}] activations: {folder} exists with these settings, skipped")
    return cache


def _sae_stage(cfg: RunConfig, cache: Any, folder: Path, say: Say, progress: bool,
               device: str) -> dict[str, Any]:
    from spade_lens.provenance import check_reuse, differences, folder_input, read_provenance
    from spade_lens.saes import create_sae, load_sae
    from spade_lens.saes.io import CFG_FILENAME
    from spade_lens.training import SAETrainConfig, train_saes
    from spade_lens.training.checkpoint import checkpoint_path, load_checkpoint

    seed = cfg.sae_stage_seed
    model_name = str(cache.metadata.get("model", {}).get("name", ""))
    saes = {
        arch: create_sae(arch, d_in=cache.dims[cfg.hook], d_sae=cfg.width, seed=seed, hook_name=cfg.hook,
                         model_name=model_name, device=device, **{**SAE_DEFAULTS[arch], **cfg.sae_kwargs.get(arch, {})})
        for arch in ARCHITECTURES
    }
    train_cfg = SAETrainConfig(steps=cfg.sae_steps, batch_size=cfg.sae_batch_size, lr=cfg.sae_lr,
                               lr_scale=dict(cfg.sae_lr_scale), checkpoint_every=max(1, cfg.sae_steps // 10))
    wanted = {"train_config": train_cfg.to_dict(), "saes": {a: s.cfg.to_dict() for a, s in saes.items()},
              "seed": seed, "hook": cfg.hook}
    acts = (read_provenance(cache.path) or {}).get("id")
    if all((folder / arch / CFG_FILENAME).is_file() for arch in ARCHITECTURES):
        state = check_reuse(folder, "saes", wanted, inputs={"activations": acts}, how=_redo(folder))
        loaded = {arch: load_sae(folder / arch, device=device) for arch in ARCHITECTURES}
        if state == "legacy":  # earlier versions: compare the SAEs' own configs
            diffs = differences({a: s.cfg.to_dict() for a, s in loaded.items()}, wanted["saes"])
            if diffs:
                raise SpadeLensError(f"{str(folder)!r} holds SAEs of other settings ({diffs[0][0]}: recorded "
                                     f"{diffs[0][1]!r}, requested {diffs[0][2]!r}); {_redo(folder)}")
        note = " (made by an earlier version: training settings not recorded, not checked)" if state == "legacy" else ""
        say(f"[4/5] SAEs: {folder} holds all of {', '.join(ARCHITECTURES)} with these settings, skipped{note}")
        return loaded
    resume = checkpoint_path(folder).is_file()
    if resume:
        saved = load_checkpoint(folder).get("config", {})
        diffs = differences(saved, train_cfg.to_dict())
        if diffs:
            raise SpadeLensError(f"{str(checkpoint_path(folder))!r} was trained with other settings "
                                 f"({diffs[0][0]}: recorded {diffs[0][1]!r}, requested {diffs[0][2]!r}); "
                                 f"{_redo(folder)}")
    say(f"[4/5] SAEs: {', '.join(ARCHITECTURES)} with {cfg.width} latents, {cfg.sae_steps} steps"
        f"{' (resumed)' if resume else ''} -> {folder}")

    def batches() -> Any:
        return cache.batches(cfg.hook, cfg.sae_batch_size, shuffle=True, seed=seed)

    train_saes(saes, batches, train_cfg, out_dir=folder, progress=progress, resume=resume,
               inputs={"activations": folder_input(cache.path, "activations")},
               settings={"seed": seed, "hook": cfg.hook})
    for sae in saes.values():  # trained in place; the same weights are saved in folder/<arch>
        sae.eval()
    return saes


def _probe_stage(saes: dict[str, Any], cache: Any, folder: Path, cfg: RunConfig, say: Say,
                 progress: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    from spade_lens.probe import probe_views
    from spade_lens.provenance import folder_input, weights_identity
    from spade_lens.report import write_report

    say(f"[5/5] probe: part-of-speech F1, per-concept L0, co-occurrence on held-out tokens -> {folder}")
    names = cache.label_names["pos"]
    views: dict[str, Any] = {"pos": None}
    if all(member in names for members in PAPER_GROUPS.values() for member in members):
        views["paper"] = PAPER_GROUPS
    found = probe_views(saes, cache.batches(cfg.hook, 4096, shuffle=False), views, label="pos", label_names=names,
                        progress=progress)
    results, paper = found["pos"], found.get("paper")
    inputs = {"activations": folder_input(cache.path, "activations"),
              **{f"sae {name}": {"kind": "sae", "id": weights_identity(sae)} for name, sae in saes.items()}}
    files = write_report(results, folder, title="spade-lens run: parts of speech", label="pos", inputs=inputs)
    if files.message:
        say(files.message)
    if paper is not None:
        write_report(paper, folder / "paper_concepts", label="pos", inputs=inputs,
                     title="spade-lens run: parts of speech, nouns and pronouns as one concept (the SpaDE paper's count)")
    return results, paper


def _dashboard_stage(saes: dict[str, Any], cache: Any, corpus: Any, model: Any, report: Path, say: Say,
                     progress: bool) -> Path:
    from spade_lens.dashboard import build_dashboard

    folder = report / "dashboard"
    say(f"      dashboard: every latent's top tokens, histogram and concept scores -> {folder / 'index.html'}")
    files = build_dashboard(saes, cache, corpus, folder, model=model, split="validation", report_dir=report,
                            title="spade-lens run: latent browser", progress=progress)
    return files.index_html


def run_pipeline(out: str | Path, cfg: RunConfig | None = None, *, say: Say = _quiet,
                 progress: bool = True, device: str | None = None, threads: int | None = None) -> RunResult:
    """Run every stage of the pipeline into ``out``, skipping the stages whose outputs exist with these settings.

    ``device``: where the model and SAEs run (default: ``cuda`` when available, else ``cpu``); results are
    bit-reproducible on CPU. ``out`` must be new, empty or a run folder; a stage folder made with other
    settings stops the run with a :class:`SpadeLensError` naming them (see the module docstring).
    ``say`` receives one line per stage (the CLI prints them). ``threads``: torch's CPU threads for every stage;
    None: each stage by :func:`spade_lens.threads.default_threads` (the language model on torch's own count, the
    run's small SAEs on one thread); torch's count is restored at the end. Returns the probe results of the SAEs
    on the validation sentences' activations (never seen in training), whose report is in ``out/report``.
    """
    from dataclasses import asdict

    from hooks.folders import writing
    from spade_lens.devices import check_device
    from spade_lens.provenance import check_target, provenance_record, write_provenance
    from spade_lens.threads import apply_threads, check_threads

    cfg = cfg or RunConfig()
    if not isinstance(cfg, RunConfig):
        raise SpadeLensError(f"cfg: expected a RunConfig, got {type(cfg).__name__}")
    device = check_device(device) or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = check_threads(threads, "threads")
    out = check_target(out, "run", arg="out")
    before = torch.get_num_threads()
    with writing(out, what=f"out {str(out)!r}", error=SpadeLensError):
        out.mkdir(parents=True, exist_ok=True)
        try:
            apply_threads(threads)
            corpus = _corpus_stage(cfg, out / "corpus", say, progress)
            model, rate = _lm_stage(cfg, corpus, out / "lm", say, progress, device)
            train_cache = _harvest_stage(model, corpus.dataset["train"], out / "activations" / "train", cfg,
                                         cfg.max_tokens, "3/5", say, progress)
            val_cache = _harvest_stage(model, corpus.dataset["validation"], out / "activations" / "validation",
                                       cfg, cfg.probe_tokens, "3/5", say, progress)
            apply_threads(threads, work=cfg.sae_batch_size * train_cache.dims[cfg.hook] * cfg.width)
            saes = _sae_stage(cfg, train_cache, out / "saes", say, progress, device)
        finally:
            torch.set_num_threads(before)
        report = out / "report"
        results, paper = _probe_stage(saes, val_cache, report, cfg, say, progress)
        index = _dashboard_stage(saes, val_cache, corpus, model, report, say, progress)
        write_provenance(out, provenance_record("run", settings=asdict(cfg)))
    return RunResult(out=out, lm_grammaticality=rate, probe=results, report_dir=report, paper_probe=paper,
                     dashboard=index)
