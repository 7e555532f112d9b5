"""``probe_saes``: one streaming pass of labelled activations through one or several SAEs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from spade_lens.errors import SpadeLensError
from spade_lens.probe.counts import ProbeCounts
from spade_lens.probe.groups import group_concepts
from spade_lens.probe.result import ProbeResult, result_from_counts

MAX_COOCCURRENCE_LATENTS = 4096
"""Default cap on the width for which the (n, n) co-occurrence Gram matrix (float64) is accumulated."""


def _architecture(sae: Any) -> str:
    cfg = getattr(sae, "cfg", None)
    arch = getattr(cfg, "architecture", None)
    return str(arch) if arch is not None else type(sae).__name__


def _device(sae: Any) -> torch.device | None:
    if isinstance(sae, torch.nn.Module):
        for p in sae.parameters():
            return p.device
    return None


def _split_batch(batch: Any, label: str | None, index: int) -> tuple[Tensor, Tensor, Mapping[str, Any]]:
    """(acts (b, d), labels (b,), every label column of the batch) from a LabelledBatch or an ``(acts, labels)``
    pair (labels: a tensor or a dict of label columns)."""
    if hasattr(batch, "acts") and hasattr(batch, "labels"):
        acts, labels = batch.acts, batch.labels
    elif isinstance(batch, Sequence) and len(batch) == 2:
        acts, labels = batch
    else:
        raise SpadeLensError(
            f"batches: item {index} is a {type(batch).__name__}; expected a LabelledBatch or an (acts, labels) pair"
        )
    columns = labels if isinstance(labels, Mapping) else {label or "label": labels}
    if isinstance(labels, Mapping):
        if label is None or label not in labels:
            raise SpadeLensError(
                f"label: {label!r} is not a label column of batch {index}; expected one of {sorted(labels)}"
            )
        labels = labels[label]
    acts, labels = torch.as_tensor(acts), torch.as_tensor(labels)
    if acts.ndim != 2:
        raise SpadeLensError(f"batches: acts of batch {index} have shape {tuple(acts.shape)}; expected (b, d_in)")
    if labels.shape != (acts.shape[0],):
        raise SpadeLensError(
            f"batches: labels of batch {index} have shape {tuple(labels.shape)}; expected ({acts.shape[0]},)"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise SpadeLensError(f"batches: labels of batch {index} have dtype {labels.dtype}; expected integers")
    return acts, labels, columns


def _encode(sae: Any, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """(z (b, n), x_hat (b, d) or None): ``sae.encode(x)``, then ``sae.decode(z)`` when the SAE has one."""
    z = sae.encode(x)
    decode = getattr(sae, "decode", None)
    return z, (decode(z) if callable(decode) else None)


@torch.no_grad()
def probe_saes(
    saes: Mapping[str, Any] | Any,
    batches: Iterable[Any],
    *,
    label: str | None = "pos",
    label_names: Sequence[str] | None = None,
    max_tokens: int | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    cooccurrence: bool = True,
    max_cooccurrence_latents: int = MAX_COOCCURRENCE_LATENTS,
    progress: bool = True,
) -> dict[str, ProbeResult]:
    """Probe one or several SAEs for concepts in one streaming pass over labelled activations.

    Args:
        saes: ``{name: sae}``, or a single SAE (named ``"sae"``). An SAE is anything with ``encode(x) -> z``
            (b, n) taking raw activations (b, d_in); if it also has ``decode(z) -> x_hat``, NMSE is computed.
            Inputs are moved to the device of the SAE's first parameter when it is a ``torch.nn.Module``.
        batches: iterable of :class:`hooks.LabelledBatch` (``acts`` (b, d_in), ``labels`` dict of (b,) int
            columns) or of ``(acts, labels)`` pairs where ``labels`` is such a dict or one (b,) int tensor.
            Labels ``< 0`` mean "no label" and are left out of every concept statistic.
        label: which label column to read when labels are dicts (e.g. ``"pos"``, ``"phrase"``, ``"depth"``).
        label_names: name of each concept id; label ids must be below ``len(label_names)``. Without names the
            concepts are ``"0"``, ``"1"``, ... up to the largest label seen.
        max_tokens: stop after this many tokens (the last batch is cut); None reads the whole stream.
        groups: ``{new name: [concept names]}``: probe each group of label classes as one concept (e.g.
            ``{"N+Pro": ["N", "Pro"]}``, as the SpaDE paper counts nouns); needs ``label_names``. See
            :mod:`spade_lens.probe.groups`.
        cooccurrence: accumulate the (n, n) activation-profile Gram matrix for co-occurrence.
        max_cooccurrence_latents: skip co-occurrence (None in the result) for SAEs wider than this.
        progress: show a tqdm bar (tokens).

    Returns:
        ``{name: ProbeResult}`` in the order of ``saes``.
    """
    return probe_views(saes, batches, {"": groups}, label=label, label_names=label_names, max_tokens=max_tokens,
                       cooccurrence=cooccurrence, max_cooccurrence_latents=max_cooccurrence_latents,
                       progress=progress)[""]


@torch.no_grad()
def probe_views(
    saes: Mapping[str, Any] | Any,
    batches: Iterable[Any],
    views: Mapping[str, Mapping[str, Sequence[str]] | None],
    *,
    label: str | None = "pos",
    label_names: Sequence[str] | None = None,
    max_tokens: int | None = None,
    cooccurrence: bool = True,
    max_cooccurrence_latents: int = MAX_COOCCURRENCE_LATENTS,
    progress: bool = True,
) -> dict[str, dict[str, ProbeResult]]:
    """:func:`probe_saes` for several ways of counting concepts from ONE streaming pass.

    ``views``: ``{view name: groups}``, each ``groups`` as in :func:`probe_saes` (None: the labels as they are),
    e.g. ``{"pos": None, "paper": {"N+Pro": ["N", "Pro"]}}``. Concepts are merged by adding their counts after
    the pass (exact), so each SAE encodes every token once whatever the number of views. Returns
    ``{view name: {sae name: ProbeResult}}``; the other arguments are those of :func:`probe_saes`.
    """
    return stream_probe(saes, batches, views, label=label, label_names=label_names, max_tokens=max_tokens,
                        cooccurrence=cooccurrence, max_cooccurrence_latents=max_cooccurrence_latents,
                        progress=progress)[0]


BatchObserver = Callable[[str, Tensor, Tensor, Mapping[str, Tensor]], None]
"""``on_batch(sae name, z (b, n), x (b, d_in), columns)``: called by :func:`stream_probe` after each SAE encoded
each batch; ``x`` is the SAE's input on its device, ``columns`` every label column of the batch's rows (for a
:class:`hooks.LabelledBatch`: ``token_id``, ``position``, ``seq_index`` and the source's labels), cut like ``x``."""


@torch.no_grad()
def stream_probe(
    saes: Mapping[str, Any] | Any,
    batches: Iterable[Any],
    views: Mapping[str, Mapping[str, Sequence[str]] | None],
    *,
    label: str | None = "pos",
    label_names: Sequence[str] | None = None,
    max_tokens: int | None = None,
    cooccurrence: bool = True,
    max_cooccurrence_latents: int = MAX_COOCCURRENCE_LATENTS,
    progress: bool = True,
    on_batch: BatchObserver | None = None,
) -> tuple[dict[str, dict[str, ProbeResult]], dict[str, dict[str, ProbeCounts]]]:
    """:func:`probe_views` that also returns the :class:`ProbeCounts` each result was made from (``{view: {sae
    name: counts}}``, on the CPU) and lets ``on_batch`` see every batch's latents (how the dashboard rides on the
    probe's one pass)."""
    if not isinstance(saes, Mapping):
        saes = {"sae": saes}
    if not saes:
        raise SpadeLensError("saes: received an empty mapping; expected at least one SAE")
    for name, sae in saes.items():
        if not callable(getattr(sae, "encode", None)):
            raise SpadeLensError(f"saes[{name!r}]: a {type(sae).__name__} has no encode(x); expected an SAE")
    if max_tokens is not None and max_tokens <= 0:
        raise SpadeLensError(f"max_tokens: received {max_tokens}; expected a positive int or None")
    names = None if label_names is None else list(label_names)
    grouped = {view: group_concepts(names, groups) for view, groups in views.items() if groups}
    counts = _stream_counts(saes, batches, label, names, max_tokens, cooccurrence, max_cooccurrence_latents,
                            progress, on_batch)
    results: dict[str, dict[str, ProbeResult]] = {}
    all_counts: dict[str, dict[str, ProbeCounts]] = {}
    for view in views:
        if view in grouped:
            lookup, view_names = grouped[view]
            view_counts = {name: c.regrouped(lookup, len(view_names)) for name, c in counts.items()}
        else:
            view_names, view_counts = names, counts
        results[view] = {
            name: result_from_counts(view_counts[name], architecture=_architecture(sae), concept_names=view_names)
            for name, sae in saes.items()
        }
        all_counts[view] = view_counts
    return results, all_counts


def _stream_counts(saes: Mapping[str, Any], batches: Iterable[Any], label: str | None, names: list[str] | None,
                   max_tokens: int | None, cooccurrence: bool, max_cooccurrence_latents: int,
                   progress: bool, on_batch: BatchObserver | None = None) -> dict[str, ProbeCounts]:
    """The one pass: every batch through every SAE, reduced to each SAE's :class:`ProbeCounts`."""
    n_names = None if names is None else len(names)
    counts: dict[str, ProbeCounts] = {}
    bar = tqdm(total=max_tokens, unit="tok", desc="probe", disable=not progress)
    seen = 0
    for index, batch in enumerate(batches):
        acts, labels, columns = _split_batch(batch, label, index)
        if max_tokens is not None:
            acts, labels = acts[: max_tokens - seen], labels[: max_tokens - seen]
            if on_batch is not None:
                columns = {key: col[: acts.shape[0]] for key, col in columns.items()}
        if n_names is not None and labels.numel() and int(labels.max()) >= n_names:
            raise SpadeLensError(
                f"label_names: batch {index} has label id {int(labels.max())}; expected ids below "
                f"len(label_names) = {n_names}"
            )
        for name, sae in saes.items():
            device = _device(sae)
            x = acts.to(device) if device is not None else acts
            z, x_hat = _encode(sae, x)
            if z.ndim != 2 or z.shape[0] != x.shape[0]:
                raise SpadeLensError(
                    f"saes[{name!r}]: encode returned shape {tuple(z.shape)}; expected ({x.shape[0]}, n_latents)"
                )
            if name not in counts:
                use_cooc = cooccurrence and z.shape[1] <= max_cooccurrence_latents
                counts[name] = ProbeCounts(z.shape[1], n_concepts=n_names or 0, cooccurrence=use_cooc)
            counts[name].update(z, labels, x, x_hat)
            if on_batch is not None:
                on_batch(name, z, x, columns)
        seen += acts.shape[0]
        bar.update(acts.shape[0])
        if max_tokens is not None and seen >= max_tokens:
            break
    bar.close()
    if seen == 0:
        raise SpadeLensError("batches: received no tokens; expected at least one labelled batch")
    return counts
