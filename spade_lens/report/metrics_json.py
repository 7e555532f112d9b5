"""``metrics.json``: per SAE ``architecture``, ``width``, ``l0``, ``nmse``, ``dead_fraction`` and ``concepts``
(concept name -> ``best_f1``, ``top5_f1``, ``best_latent``, ``l0``). Unknown values (NaN) are ``null``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from spade_lens.probe import ProbeResult

SAE_KEYS = ("architecture", "width", "l0", "nmse", "dead_fraction", "concepts")
"""Keys of each SAE's entry in metrics.json."""
CONCEPT_KEYS = ("best_f1", "top5_f1", "best_latent", "l0")
"""Keys of each concept's entry under ``concepts``."""


def metrics_dict(results: Mapping[str, ProbeResult]) -> dict[str, dict[str, Any]]:
    """``{sae name: ProbeResult.metrics()}``, in the order of ``results``."""
    return {name: res.metrics() for name, res in results.items()}


def metrics_json(results: Mapping[str, ProbeResult]) -> str:
    """The text of metrics.json (indented, strict JSON: no NaN)."""
    return json.dumps(metrics_dict(results), indent=2, allow_nan=False) + "\n"
