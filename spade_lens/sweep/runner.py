"""``run_sweep``: train every setting of a grid on one activation set, probe each, and report mean and sd over seeds.

Layout of a sweep folder::

    saes/<setting>/          the trained SAE (SAELens layout)
    results/<setting>.json   what made it (``recipe``) and its probe records per evaluation set and view
    train/seed-<s>/          checkpoint and log of the training pass of seed s (the checkpoint is removed at its end)
    sweep.json               every result, the mean and sd over seeds per setting, the L0-band leaders
    report/                  report.md and the Pareto figures

The settings of one seed train side by side on the same batches (shuffled with that seed) in one pass over the
data, so a sweep of S seeds takes S passes. A setting whose ``results/<setting>.json`` exists with the same recipe
is never trained again (a different recipe stops the sweep and says which field differs); an interrupted pass
resumes from its checkpoint; an SAE saved but not yet probed is probed without training.

Under ``torchrun --nproc-per-node N`` every pass trains on the N ranks together (each reads its own share of the
training cache, ``batch_size`` stays the combined batch; see :mod:`spade_lens.training.distributed`); rank 0 plans
the sweep, saves the SAEs, probes them and writes results and report, the other ranks train and return.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spade_lens.errors import SpadeLensError
from spade_lens.sweep.config import SweepConfig
from spade_lens.sweep.grid import SweepSetting
from spade_lens.sweep.summary import aggregate_points, band_leaders, summarize

FORMAT = "spade-lens-sweep"
VERSION = 1
EVAL_BATCH = 4096
"""Rows per batch when the evaluation activations are probed."""

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


@dataclass
class SweepResult:
    """What :func:`run_sweep` produced."""

    out: Path
    """The sweep folder."""
    results: list[dict[str, Any]]
    """One result per setting of the grid (``results/<name>.json``), in grid order."""
    points: list[dict[str, Any]]
    """Per setting without seed: mean and sd over seeds (see :mod:`spade_lens.sweep.summary`)."""
    bands: dict[str, dict[str, list[dict[str, Any]]]]
    """Evaluation set -> view -> the L0-band leaders table (mean best-latent F1)."""
    trained: list[str]
    """Names of the settings trained by this call (the others were already done)."""
    report_dir: Path
    """``out/report``."""
    group_bands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """View -> the L0-band leaders by mean group F1 on the balanced set (empty without it)."""


def _cache(value: Any, what: str) -> Any:
    from hooks import ActivationCache

    if isinstance(value, ActivationCache):
        return value
    try:
        return ActivationCache(value)
    except (TypeError, ValueError) as err:
        raise SpadeLensError(f"{what}: {err}") from err


def resolve_caches(activations: Any, eval_activations: Any = None) -> tuple[Any, Any]:
    """(training cache, evaluation cache). ``activations`` is a cache folder, or a run's ``activations`` folder
    holding ``train/`` and ``validation/`` caches (then the evaluation cache defaults to ``validation/``)."""
    from hooks import ActivationCache

    if not isinstance(activations, ActivationCache):
        root = Path(activations)
        if (root / "train").is_dir() and (root / "validation").is_dir() and not (root / "manifest.json").exists():
            if eval_activations is None:
                eval_activations = root / "validation"
            activations = root / "train"
    if eval_activations is None:
        raise SpadeLensError(f"eval_activations: received None and {str(activations)!r} has no validation/ beside "
                             "train/; expected held-out activations to probe on (--eval-activations DIR)")
    train, evaluation = _cache(activations, "activations"), _cache(eval_activations, "eval_activations")
    if Path(train.path).resolve() == Path(evaluation.path).resolve():
        raise SpadeLensError(f"eval_activations: received the training cache {str(train.path)!r}; expected "
                             "held-out activations (probing on training data overstates every SAE)")
    return train, evaluation


def _pick_hook(train: Any, evaluation: Any, hook: str | None) -> str:
    if hook is None:
        if len(train.hook_names) != 1:
            raise SpadeLensError(f"hook: the training cache holds hooks {train.hook_names}; expected hook=NAME")
        hook = train.hook_names[0]
    for cache, what in ((train, "activations"), (evaluation, "eval_activations")):
        if hook not in cache.hook_names:
            raise SpadeLensError(f"hook: {hook!r} is not in the {what} cache {str(cache.path)!r} (hooks: "
                                 f"{cache.hook_names})")
    if train.dims[hook] != evaluation.dims[hook]:
        raise SpadeLensError(f"eval_activations: width {evaluation.dims[hook]} at {hook!r}; the training cache has "
                             f"{train.dims[hook]}")
    return hook


def _views(cfg: SweepConfig, names: list[str] | None) -> dict[str, Any]:
    views = {}
    for view, groups in cfg.resolved_views.items():
        if groups and (names is None or not all(m in names for ms in groups.values() for m in ms)):
            continue  # e.g. the paper's N+Pro view on a grammar without pronouns
        views[view] = groups
    if not views:
        raise SpadeLensError(f"views: none of {sorted(cfg.resolved_views)} fits the labels {names}; expected at "
                             "least one")
    return views


def recipe(setting: SweepSetting, cfg: SweepConfig, hook: str, train: Any, evaluation: Any,
           views: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that decides a setting's result: its config fields, training, data and evaluation."""
    return {
        "arch": setting.arch,
        "seed": setting.seed,
        "sae": {**cfg.defaults.get(setting.arch, {}), **setting.sae_kwargs()},
        "lr_scale": float(setting.train_value("lr_scale", cfg.lr_scale.get(setting.arch, 1.0))),
        "width": cfg.width, "steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
        "hook": hook,
        "train": {"n_tokens": train.n_tokens, "model": train.metadata.get("model")},
        "eval": {"n_tokens": evaluation.n_tokens, "model": evaluation.metadata.get("model"),
                 "probe_tokens": cfg.probe_tokens, "balanced_per_concept": cfg.balanced_per_concept,
                 "balanced_seed": cfg.balanced_seed, "label": cfg.label, "views": dict(views)},
    }


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _read_result(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SpadeLensError(f"out: {path} is not a readable sweep result ({err}); remove it to retrain that "
                             "setting") from err
    if not isinstance(data, dict) or "recipe" not in data or "evals" not in data:
        raise SpadeLensError(f"out: {path} is not a sweep result (no recipe/evals); remove it to retrain that setting")
    return data


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    diffs = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            diffs.append(f"{prefix}{k}: {a!r} there, {b!r} asked")
    return diffs


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _evaluation_sets(evaluation: Any, hook: str, cfg: SweepConfig, names: list[str] | None) -> dict[str, Any]:
    """Evaluation set name -> (callable giving batches, max_tokens, the tokens when held in memory or None)."""
    from spade_lens.probe import balanced_sample

    sets: dict[str, Any] = {
        "full": (lambda: evaluation.batches(hook, EVAL_BATCH, shuffle=False), cfg.probe_tokens, None)}
    if cfg.balanced_per_concept:
        sample = balanced_sample(evaluation.batches(hook, EVAL_BATCH, shuffle=False), label=cfg.label,
                                 per_concept=cfg.balanced_per_concept, seed=cfg.balanced_seed, label_names=names)
        sets["balanced"] = (lambda: [sample], None, sample)
    return sets


@torch.no_grad()
def _add_group_f1(record: dict[str, Any], sae: Any, sample: Any, labels: Any, result: Any) -> None:
    """Add each concept's group F1 and group size (see :mod:`spade_lens.probe.coverage`) to a record."""
    from spade_lens.probe.coverage import group_f1, group_sizes

    z = torch.cat([sae.encode(chunk) for chunk in sample.acts.split(EVAL_BATCH)])
    n_concepts = len(result.concept_names)
    f1 = group_f1(z, labels, result.latent_concept, n_concepts)
    sizes = group_sizes(result.latent_concept, n_concepts)
    for c, concept in enumerate(result.concept_names):
        record["concepts"][concept].update(group_f1=float(f1[c]), group_size=sizes[c])
    record["mean_group_f1"] = float(f1.mean()) if n_concepts else None


def _probe(saes: Mapping[str, Any], sets: Mapping[str, Any], views: Mapping[str, Any], cfg: SweepConfig,
           names: list[str] | None, progress: bool) -> dict[str, dict[str, dict[str, Any]]]:
    """SAE name -> evaluation set -> view -> record (with group F1 on sets held in memory)."""
    from spade_lens.probe import probe_views
    from spade_lens.probe.coverage import remap_labels
    from spade_lens.probe.groups import group_concepts

    out: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in saes}
    for ev, (batches, max_tokens, sample) in sets.items():
        found = probe_views(dict(saes), batches(), views, label=cfg.label, label_names=names, max_tokens=max_tokens,
                            progress=progress)
        for name, sae in saes.items():
            out[name][ev] = {view: summarize(found[view][name]) for view in views}
            if sample is None:
                continue
            for view, groups in views.items():
                lookup = group_concepts(names, groups)[0] if groups else None
                labels = remap_labels(sample.labels[cfg.label], lookup)
                _add_group_f1(out[name][ev][view], sae, sample, labels, found[view][name])
    return out


def _train_pass(group: list[SweepSetting], cfg: SweepConfig, train: Any, hook: str, folder: Path, device: Any,
                progress: bool, say: Say) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Train the settings of one seed side by side; returns (name -> trained SAE, name -> training metrics)."""
    from hooks.distributed import from_main, ranks
    from spade_lens.saes import create_sae
    from spade_lens.training import SAETrainConfig, load_checkpoint, train_saes
    from spade_lens.training.checkpoint import checkpoint_path
    from spade_lens.training.distributed import per_rank_batch

    seed = group[0].seed
    model_name = str((train.metadata.get("model") or {}).get("name", ""))
    saes = {s.name: create_sae(s.arch, d_in=train.dims[hook], d_sae=cfg.width, seed=seed, hook_name=hook,
                               model_name=model_name, device=device,
                               **{**cfg.defaults.get(s.arch, {}), **s.sae_kwargs()})
            for s in group}
    lr_scale = {s.name: float(s.train_value("lr_scale", cfg.lr_scale.get(s.arch, 1.0))) for s in group}
    train_cfg = SAETrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, lr_scale=lr_scale,
                               checkpoint_every=cfg.checkpoint_every, save_saes=False)

    def resumable() -> bool:  # decided on rank 0, which holds the folder
        if checkpoint_path(folder).is_file():
            state = load_checkpoint(folder)
            if sorted(state["saes"]) == sorted(saes) and state.get("config") == train_cfg.to_dict():
                return True
            say(f"      {folder}: its checkpoint holds other settings; starting this pass afresh")
            checkpoint_path(folder).unlink()
        return False

    resume = from_main(resumable, SpadeLensError)
    say(f"      seed {seed}: {len(group)} settings side by side, {cfg.steps} steps"
        f"{' (resumed)' if resume else ''}")
    rank, world_size = ranks()
    batch = per_rank_batch(cfg.batch_size, rank, world_size)  # this rank's share of each combined batch
    metrics = train_saes(saes, lambda: train.batches(hook, batch, shuffle=True, seed=seed, rank=rank,
                                                     world_size=world_size),
                         train_cfg, out_dir=folder, progress=progress, resume=resume)
    for sae in saes.values():
        sae.eval()
    return saes, metrics


def train_pass_job(group: list[SweepSetting], cfg: SweepConfig, train: Any, hook: str, root: Any, device: Any,
                   threads: int | None, progress: bool = False, say: Say | None = None,
                   part: int | None = None) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Train settings of one seed side by side (all of them, or ``part`` of them with ``jobs > 1``), save each SAE
    into ``root/saes/<name>`` and drop the pass's checkpoint. Returns (name -> training metrics, the lines said).
    Runs in the caller's process or in a worker process (then ``train`` and ``root`` are paths and ``threads`` its
    torch threads)."""
    from hooks import ActivationCache
    from hooks.distributed import ranks

    if threads is not None:
        torch.set_num_threads(threads)
    lines: list[str] = []

    def tell(line: str) -> None:
        lines.append(line)
        if say is not None:
            say(line)

    cache = train if not isinstance(train, (str, os.PathLike)) else ActivationCache(train)
    root = Path(root)
    seed = group[0].seed
    folder = root / "train" / (f"seed-{seed}" if part is None else f"seed-{seed}-part{part}")
    start = time.perf_counter()
    saes, metrics = _train_pass(group, cfg, cache, hook, folder, device, progress, tell)
    if ranks()[0] == 0:  # under torchrun, rank 0 writes
        for name, sae in saes.items():
            sae.save(root / "saes" / name)
        (folder / "checkpoint.pt").unlink(missing_ok=True)
    tell(f"      seed {seed}{'' if part is None else f' part {part}'}: trained {len(saes)} SAEs in "
         f"{time.perf_counter() - start:.0f} s")
    return metrics, lines


def run_sweep(
    activations: Any,
    settings: Sequence[SweepSetting],
    cfg: SweepConfig | None = None,
    *,
    out: str | os.PathLike[str],
    eval_activations: Any = None,
    hook: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    plots: bool = True,
    jobs: int = 1,
    say: Say = _quiet,
) -> SweepResult:
    """Train and probe every setting of ``settings`` (see :func:`~spade_lens.sweep.grid.expand_grid`) into ``out``.

    ``activations``: a training activation cache (folder or :class:`hooks.ActivationCache`), or a run's
    ``activations`` folder with ``train/`` and ``validation/``. ``eval_activations``: held-out activations to
    probe on (default: the run's ``validation/``). Each setting is probed on the first ``cfg.probe_tokens``
    evaluation tokens (``full``) and on a balanced draw of ``cfg.balanced_per_concept`` tokens per concept
    (``balanced``), in every view of ``cfg.views``. ``jobs``: training processes at once, each with its share of
    the CPU threads; each seed's settings are then dealt into ``jobs`` parts, each part one pass over the data (the
    same SAEs as one pass per seed: every SAE sees the same batches either way). ``say`` gets one line per pass and
    per finished setting. Under ``torchrun`` (see the module doc) call it on every rank; ranks other than 0 return
    a result without probes (``results``, ``points`` and ``bands`` empty).
    """
    from hooks.distributed import from_main, ranks
    from hooks.folders import writing
    from spade_lens.devices import check_device
    from spade_lens.provenance import check_target

    cfg = cfg or SweepConfig()
    if not isinstance(cfg, SweepConfig):
        raise SpadeLensError(f"cfg: received a {type(cfg).__name__}; expected a SweepConfig")
    settings = list(settings)
    if not settings or not all(isinstance(s, SweepSetting) for s in settings):
        raise SpadeLensError("settings: expected a non-empty list of SweepSetting (see spade_lens.sweep.expand_grid)")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise SpadeLensError(f"jobs: received {jobs!r}; expected a positive integer")
    rank, world_size = ranks()
    if world_size > 1 and jobs > 1:
        raise SpadeLensError(f"jobs: received {jobs} under torchrun ({world_size} ranks); expected 1 (the ranks "
                             "train each pass together)")
    train, evaluation = resolve_caches(activations, eval_activations)
    hook = _pick_hook(train, evaluation, hook)
    names = evaluation.label_names.get(cfg.label)
    if cfg.label not in evaluation.label_columns:
        raise SpadeLensError(f"label: {cfg.label!r} is not a label column of {str(evaluation.path)!r}; it has "
                             f"{evaluation.label_columns}")
    views = _views(cfg, names)
    device = check_device(device) or ("cuda" if torch.cuda.is_available() else "cpu")
    root = from_main(lambda: check_target(out, "sweep", arg="out", inputs=[train.path, evaluation.path]),
                     SpadeLensError)
    if rank != 0:  # trains its share of every pass; rank 0 holds the folder
        return _sweep(train, evaluation, settings, cfg, root, hook, names, views, device, False, plots, 1, _quiet)
    with writing(root, what=f"out {str(root)!r}", error=SpadeLensError):
        return _sweep(train, evaluation, settings, cfg, root, hook, names, views, device, progress, plots, jobs,
                      say)


def _plan(train: Any, evaluation: Any, settings: list[SweepSetting], cfg: SweepConfig, root: Path, hook: str,
          recipes: dict[str, Any], jobs: int, say: Say) -> tuple[dict[str, Any], list[SweepSetting], list[Any]]:
    """(name -> result of the settings already done, the settings to probe, the training passes (seed, part,
    settings)); writes the sweep's provenance first (an interrupted sweep is still a sweep folder)."""
    from spade_lens.provenance import folder_input, provenance_record, write_provenance

    root.mkdir(parents=True, exist_ok=True)
    write_provenance(root, provenance_record(
        "sweep", inputs={"activations": folder_input(train.path, "activations"),
                         "eval_activations": folder_input(evaluation.path, "activations")},
        settings={"config": cfg.to_dict(), "hook": hook}))
    done: dict[str, dict[str, Any]] = {}
    for s in settings:
        old = _read_result(root / "results" / f"{s.name}.json")
        if old is None:
            continue
        diffs = _differences(old["recipe"], recipes[s.name])
        if diffs:
            raise SpadeLensError(f"out: {str(root)!r} already holds {s.name} made differently ({'; '.join(diffs)}); "
                                 "choose another --out, or remove that result to retrain it")
        done[s.name] = old
    pending = [s for s in settings if s.name not in done]
    say(f"sweep: {len(settings)} settings ({len(done)} done, {len(pending)} to train) -> {root}")
    by_seed = {seed: [s for s in pending if s.seed == seed and not (root / "saes" / s.name / "cfg.json").is_file()]
               for seed in sorted({s.seed for s in pending})}
    # With jobs > 1, each seed's settings are dealt round-robin into `jobs` parts (balanced across architectures),
    # so the workers stay busy even when the seeds do not divide evenly among them.
    passes = [(seed, part if jobs > 1 else None, group[part::jobs] if jobs > 1 else group)
              for seed, group in by_seed.items() for part in range(min(jobs, len(group)))]
    return done, pending, passes


def _sweep(train: Any, evaluation: Any, settings: list[SweepSetting], cfg: SweepConfig, root: Path, hook: str,
           names: list[str] | None, views: dict[str, Any], device: Any, progress: bool, plots: bool, jobs: int,
           say: Say) -> SweepResult:
    """The body of :func:`run_sweep`, inside its one-writer lock on ``root`` (on rank 0 under torchrun)."""
    from hooks.distributed import from_main, ranks
    from spade_lens.saes import load_sae

    recipes = {s.name: _json_safe(recipe(s, cfg, hook, train, evaluation, views)) for s in settings}
    done, pending, passes = from_main(lambda: _plan(train, evaluation, settings, cfg, root, hook, recipes, jobs, say),
                                      SpadeLensError)
    metrics: dict[str, dict[str, float]] = {}
    workers = min(jobs, len(passes))
    if workers > 1:  # one pass per process, each on its share of the CPU threads
        threads = max(1, (os.cpu_count() or 1) // workers)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(train_pass_job, group, cfg, str(train.path), hook, str(root), str(device), threads,
                                   part=part) for _, part, group in passes]
            for future in as_completed(futures):
                found, lines = future.result()
                metrics.update(found)
                for line in lines:
                    say(line)
    else:
        for _, part, group in passes:
            found, lines = train_pass_job(group, cfg, train, hook, root, device, None, progress, say, part=part)
            metrics.update(found)
    trained = [s.name for _, _, group in passes for s in group]
    if ranks()[0] != 0:
        return SweepResult(out=root, results=[], points=[], bands={}, trained=trained, report_dir=root / "report")

    sets = None
    for seed in sorted({s.seed for s in pending}):
        group = [s for s in pending if s.seed == seed]
        saes = {s.name: load_sae(root / "saes" / s.name, device=device) for s in group}
        if sets is None:
            sets = _evaluation_sets(evaluation, hook, cfg, names)
        say(f"      seed {seed}: probing {len(group)} SAEs")
        probed = _probe(saes, sets, views, cfg, names, progress)
        for s in group:
            m = metrics.get(s.name, {})
            result = {"name": s.name, "arch": s.arch, "params": dict(s.params), "label": s.label, "seed": s.seed,
                      "recipe": recipes[s.name],
                      "train": {"tokens": m.get("tokens"), "tokens_per_s": m.get("tokens_per_s")},
                      "evals": probed[s.name]}
            _write_json(root / "results" / f"{s.name}.json", _json_safe(result))
            done[s.name] = result
            head = result["evals"]["full"][next(iter(views))]
            say(f"      done {s.name}: L0 {_fmt(head['l0'], 2)}, dead {_fmt(head['dead_fraction'], 2)}, "
                f"mean best F1 {_fmt(head['mean_best_f1'], 3)}")

    results = [done[s.name] for s in settings]
    points = aggregate_points(results)
    bands = {ev: {view: band_leaders(points, ev, view) for view in views} for ev in results[0]["evals"]}
    group_bands = ({view: band_leaders(points, "balanced", view, metric="mean_group_f1") for view in views}
                   if "balanced" in results[0]["evals"] else {})
    summary = {"format": FORMAT, "version": VERSION, "config": cfg.to_dict(), "hook": hook,
               "activations": str(train.path), "eval_activations": str(evaluation.path),
               "settings": [s.name for s in settings], "results": results, "points": points, "bands": bands,
               "group_bands": group_bands}
    _write_json(root / "sweep.json", _json_safe(summary))
    from spade_lens.sweep.report import write_sweep_report

    report = write_sweep_report(summary, root / "report", plots=plots)
    return SweepResult(out=root, results=results, points=points, bands=bands, trained=trained, report_dir=report,
                       group_bands=group_bands)
