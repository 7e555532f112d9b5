"""The dashboard's one pass: the probe's own streaming counts plus, per latent, top examples, an activation
histogram and (SpaDE) prototype distances, all gathered from the same batches as they stream by.

The concept numbers (firing rate, precision / recall / F1, best concept, L0, NMSE, dead latents) are the probe's:
:func:`spade_lens.probe.stream_probe` runs the pass and its :class:`~spade_lens.probe.ProbeCounts` and
:class:`~spade_lens.probe.ProbeResult` are kept as they are, so the page shows exactly what ``probe_saes`` reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from spade_lens.dashboard.distances import PrototypeDistances, has_prototypes
from spade_lens.dashboard.histogram import ActivationHistogram
from spade_lens.dashboard.topk import TopExamples
from spade_lens.probe import ProbeCounts, ProbeResult, stream_probe


@dataclass
class LatentData:
    """Everything the dashboard shows about one SAE's latents."""

    result: ProbeResult
    """The probe's result for this SAE (concepts after ``groups``)."""
    counts: ProbeCounts
    """The probe's counts for this SAE (concepts after ``groups``), on the CPU."""
    top: TopExamples
    """Top-activating tokens with their windows."""
    histogram: ActivationHistogram
    """Histograms of nonzero activations."""
    distances: PrototypeDistances | None
    """Prototype distance statistics (SAEs with prototypes), else None."""


def collect(
    saes: Mapping[str, Any],
    batches: Iterable[Any],
    *,
    label: str,
    label_names: Sequence[str] | None,
    groups: Mapping[str, Sequence[str]] | None = None,
    top_k: int = 20,
    window: int = 8,
    bins: int = 32,
    max_tokens: int | None = None,
    progress: bool = True,
) -> dict[str, LatentData]:
    """One streaming pass of ``batches`` (rows of an activation cache in harvest order) through ``saes``.

    Returns ``{name: LatentData}`` in the order of ``saes``; ``label``, ``label_names``, ``groups`` and
    ``max_tokens`` as in :func:`spade_lens.probe.probe_saes`.
    """
    tops: dict[str, TopExamples] = {}
    hists: dict[str, ActivationHistogram] = {}
    dists: dict[str, PrototypeDistances | None] = {}

    def observe(name: str, z: Tensor, x: Tensor, columns: Mapping[str, Tensor]) -> None:
        if name not in tops:
            tops[name] = TopExamples(z.shape[1], top_k, window, label)
            hists[name] = ActivationHistogram(z.shape[1], bins)
            dists[name] = PrototypeDistances(z.shape[1]) if has_prototypes(saes[name]) else None
        tops[name].update(z, columns)
        hists[name].update(z)
        spread = dists[name]
        if spread is not None:
            spread.update(saes[name], x, z)

    results, counts = stream_probe(saes, batches, {"": groups}, label=label, label_names=label_names,
                                   max_tokens=max_tokens, cooccurrence=False, progress=progress, on_batch=observe)
    out: dict[str, LatentData] = {}
    for name in saes:
        tops[name].finish()
        out[name] = LatentData(results[""][name], counts[""][name], tops[name], hists[name], dists[name])
    return out
