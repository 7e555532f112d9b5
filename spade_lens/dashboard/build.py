"""``build_dashboard``: a static latent browser for one or several SAEs on an activation cache."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from spade_lens._atomic import atomic_dir
from spade_lens.dashboard.collect import LatentData, collect
from spade_lens.dashboard.logit_lens import decoder_logits, unembedding
from spade_lens.dashboard.payload import block_payloads, index_payload, sae_summary
from spade_lens.dashboard.site import block_file, check_out_dir, copy_assets, write_data, write_marker
from spade_lens.dashboard.tokens import matching_split, token_texts
from spade_lens.dashboard.topk import NO_TOKEN
from spade_lens.errors import SpadeLensError
from spade_lens.probe import ProbeResult
from spade_lens.report.figures import safe_name


@dataclass(frozen=True)
class DashboardConfig:
    """What the dashboard keeps per latent and how it reads the activations."""

    label: str = "pos"
    """Label column of the cache that names the concepts (as ``probe_saes``' ``label``)."""
    top_k: int = 20
    """Top-activating tokens shown per latent."""
    window: int = 8
    """Tokens of context shown on each side of an example token (same sequence only)."""
    bins: int = 32
    """Histogram bins per latent (a power of two; bins double in width as larger activations arrive)."""
    block_size: int = 64
    """Latents per data file (the page loads one file when a latent of it is opened)."""
    logit_k: int = 10
    """Promoted and suppressed tokens shown per latent by the logit lens."""
    batch_size: int = 4096
    """Activation rows per batch (``spade-lens run`` and ``probe`` use 4096 too)."""
    max_tokens: int | None = None
    """Read at most this many rows of the cache (None: all)."""

    def __post_init__(self) -> None:
        for name in ("top_k", "window", "bins", "block_size", "logit_k", "batch_size", "max_tokens"):
            value = getattr(self, name)
            if value is None and name == "max_tokens":
                continue
            low = 0 if name == "window" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SpadeLensError(f"DashboardConfig.{name}: received {value!r}; expected an integer >= {low}")
        if self.bins < 2 or self.bins & (self.bins - 1):
            raise SpadeLensError(f"DashboardConfig.bins: received {self.bins}; expected a power of two >= 2")
        if not isinstance(self.label, str) or not self.label:
            raise SpadeLensError(f"DashboardConfig.label: received {self.label!r}; expected a label column name")


@dataclass
class DashboardFiles:
    """What :func:`build_dashboard` wrote."""

    out_dir: Path
    """The dashboard folder."""
    index_html: Path
    """``out_dir / "index.html"``: open it in a browser."""
    results: dict[str, ProbeResult]
    """The probe results shown on the page (equal to ``probe_saes``' on the same SAEs and activations)."""
    split: str
    """The corpus split the activations were harvested from."""


def _load_inputs(saes: Any, activations: Any, corpus: Any, model: Any) -> tuple[dict[str, Any], Any, Any, Any]:
    """(SAEs by name, activation cache, corpus, the model's unembedding or None), loading what is given as paths."""
    from hooks import ActivationCache
    from spade_lens.saes import load_sae

    if isinstance(saes, (str, os.PathLike)):
        saes = [saes]
    if not isinstance(saes, Mapping):
        paths = [Path(p) for p in saes]
        names: list[str] = []
        for p in paths:
            base, name, i = p.resolve().name or "sae", p.resolve().name or "sae", 2
            while name in names:
                name, i = f"{base}_{i}", i + 1
            names.append(name)
        saes = dict(zip(names, paths, strict=True))
    if not saes:
        raise SpadeLensError("saes: received none; expected at least one SAE (or SAE folder)")
    saes = {name: load_sae(s) if isinstance(s, (str, os.PathLike)) else s for name, s in saes.items()}
    cache = activations if isinstance(activations, ActivationCache) else ActivationCache(activations)
    if isinstance(corpus, (str, os.PathLike)):
        from pcfg import load_corpus

        corpus = load_corpus(corpus)
    return saes, cache, corpus, unembedding(model) if model is not None else None


def _hooks(saes: Mapping[str, Any], cache: Any) -> dict[str, str]:
    """Each SAE's hook in the cache (its own ``hook_name``, or the cache's only hook)."""
    out = {}
    for name, sae in saes.items():
        if not callable(getattr(sae, "encode", None)):
            raise SpadeLensError(f"saes[{name!r}]: a {type(sae).__name__} has no encode(x); expected an SAE")
        cfg = getattr(sae, "cfg", None)
        hook = getattr(cfg, "hook_name", "") or (cache.hook_names[0] if len(cache.hook_names) == 1 else "")
        if hook not in cache.hook_names:
            raise SpadeLensError(f"saes[{name!r}]: reads hook {hook!r}, which is not in the activations "
                                 f"{str(cache.path)!r} (hooks: {cache.hook_names})")
        d_in = getattr(cfg, "d_in", None)
        if d_in is not None and d_in != cache.dims[hook]:
            raise SpadeLensError(f"saes[{name!r}]: d_in {d_in}, but hook {hook!r} of the activations has width "
                                 f"{cache.dims[hook]}")
        out[name] = hook
    return out


def _figures(report_dir: str | os.PathLike | None, out: Path) -> list[dict[str, str]]:
    if report_dir is None:
        return []
    report = Path(report_dir)
    if not report.is_dir():
        raise SpadeLensError(f"report_dir: {str(report)!r} is not a folder; expected a report folder (or None)")
    files = sorted(report.glob("*.png")) + sorted(report.glob("*/*.png"))
    return [{"name": str(f.relative_to(report)), "href": Path(os.path.relpath(f, out)).as_posix()} for f in files]


def build_dashboard(
    saes: Mapping[str, Any] | Sequence[str | os.PathLike] | str | os.PathLike,
    activations: Any,
    corpus: Any,
    out_dir: str | os.PathLike,
    *,
    model: Any = None,
    cfg: DashboardConfig | None = None,
    split: str | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    report_dir: str | os.PathLike | None = None,
    title: str = "spade-lens latent browser",
    progress: bool = True,
) -> DashboardFiles:
    """Write a static latent browser of ``saes`` on ``activations`` into ``out_dir`` (open its index.html).

    Args:
        saes: ``{name: SAE or SAE folder}``, or SAE folders (named by their folder names).
        activations: an :class:`hooks.ActivationCache` or its folder; rows are read once, in harvest order.
        corpus: the :class:`pcfg.Corpus` (or its folder) the activations were harvested from; its tokenizer
            turns token ids into text.
        out_dir: the dashboard folder, written atomically (an existing dashboard there is replaced).
        model: the language model (a TransformerLens model with ``W_U``, or a spade-lens model folder) for the
            logit lens of decoder rows; None leaves the logit lens out.
        cfg: :class:`DashboardConfig` (examples per latent, window, histogram bins, ...).
        split: the corpus split of the activations; None finds it by comparing token ids.
        groups: concepts counted as one, as in :func:`spade_lens.probe.probe_saes`.
        report_dir: a report folder whose PNG figures the index links to.
        title: heading of the page.
        progress: show progress bars.
    """
    cfg = cfg or DashboardConfig()
    out = Path(out_dir)
    inputs = [Path(p) for p in (activations, corpus, model) if isinstance(p, (str, os.PathLike))]
    check_out_dir(out, inputs)
    saes, cache, corpus, w_u = _load_inputs(saes, activations, corpus, model)
    if cfg.label not in cache.label_columns:
        raise SpadeLensError(f"label: {cfg.label!r} is not a label column of the activations {str(cache.path)!r}; "
                             f"it has {cache.label_columns}")
    found_split = matching_split(corpus, cache, split)
    figures = _figures(report_dir, out)
    hooks = _hooks(saes, cache)
    label_names = cache.label_names.get(cfg.label)
    data: dict[str, LatentData] = {}
    for hook in dict.fromkeys(hooks.values()):
        group = {name: sae for name, sae in saes.items() if hooks[name] == hook}
        data.update(collect(group, cache.batches(hook, cfg.batch_size, shuffle=False), label=cfg.label,
                            label_names=label_names, groups=groups, top_k=cfg.top_k, window=cfg.window,
                            bins=cfg.bins, max_tokens=cfg.max_tokens, progress=progress))
    data = {name: data[name] for name in saes}
    logits = {name: _logits(sae, w_u, cfg.logit_k) for name, sae in saes.items()}
    ids = {t for d in data.values() for t in d.top.tokens.unique().tolist() if t != NO_TOKEN}
    ids |= {t for lens in logits.values() if lens is not None for t in lens[0].unique().tolist()}
    ids |= {t for lens in logits.values() if lens is not None for t in lens[2].unique().tolist()}
    texts = token_texts(corpus.tokenizer, ids)
    folders = _folders(list(saes))
    summaries = [sae_summary(name, hooks[name], d, texts, block_size=cfg.block_size, folder=folders[name],
                             has_logits=logits[name] is not None) for name, d in data.items()]
    index = index_payload(summaries, next(iter(data.values())), title=title, label=cfg.label,
                          label_names=label_names, top_k=cfg.top_k, window=cfg.window,
                          figures=figures)
    index["split"] = found_split
    n_blocks = sum(s["blocks"] for s in summaries)
    with atomic_dir(out) as tmp:
        copy_assets(tmp)
        write_data(tmp, "data/index.js", "index", index)
        bar = tqdm(total=n_blocks, desc="dashboard", unit="block", disable=not progress)
        for name, d in data.items():
            for b, block in enumerate(block_payloads(d, cfg.block_size, texts, logits[name])):
                write_data(tmp, block_file(folders[name], b), f"{name}:{b}", block)
                bar.update(1)
        bar.close()
        write_marker(tmp, index)
    return DashboardFiles(out, out / "index.html", {name: d.result for name, d in data.items()}, found_split)


def _logits(sae: Any, w_u: Any, k: int) -> Any:
    w_dec = getattr(sae, "W_dec", None)
    if w_u is None or w_dec is None or w_dec.ndim != 2 or w_dec.shape[1] != w_u.shape[0]:
        return None
    return decoder_logits(w_dec, w_u, k)


def _folders(names: list[str]) -> dict[str, str]:
    """A distinct file-safe folder name per SAE."""
    out: dict[str, str] = {}
    for name in names:
        base = safe_name(name)
        folder, i = base, 2
        while folder in out.values():
            folder, i = f"{base}_{i}", i + 1
        out[name] = folder
    return out
