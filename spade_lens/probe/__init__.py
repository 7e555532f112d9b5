"""Concept probing: which SAE latents stand for which concepts (parts of speech, or any labels you supply).

``probe_saes(saes, batches, label="pos", label_names=...)`` streams labelled activations once through every
SAE and returns a :class:`ProbeResult` per SAE: per (concept, latent) precision / recall / F1, best latent and
top-5 F1 per concept, per-concept L0 and NMSE, overall L0 / NMSE / dead fraction, and latent co-occurrence.
``probe_views`` gives several groupings of the concepts (e.g. nouns and pronouns as one) from the same pass.
"""

from spade_lens.probe.balanced import DEFAULT_PER_CONCEPT, balanced_sample
from spade_lens.probe.cooccurrence import (
    accumulate_gram,
    cosine_from_gram,
    cross_concept_mass,
    latent_concepts,
    latent_order,
    stable_rank,
)
from spade_lens.probe.counts import ACTIVE_THRESHOLD, ProbeCounts
from spade_lens.probe.result import ProbeResult, result_from_counts
from spade_lens.probe.stream import probe_saes, probe_views, stream_probe

__all__ = [
    "ACTIVE_THRESHOLD",
    "accumulate_gram",
    "ProbeCounts",
    "ProbeResult",
    "cosine_from_gram",
    "cross_concept_mass",
    "latent_concepts",
    "latent_order",
    "probe_saes",
    "probe_views",
    "result_from_counts",
    "stable_rank",
    "balanced_sample",
    "DEFAULT_PER_CONCEPT",
    "stream_probe",
]
