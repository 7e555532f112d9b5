"""The dashboard's data as JSON-ready dicts: one index of every SAE and latent, one block per ``block_size`` latents.

Numbers the probe computes are written exactly as the probe holds them (float32 values as Python floats);
activations in example windows, only used for shading, are rounded to 4 significant digits; the activation of
the example's own token is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from spade_lens.dashboard.collect import LatentData
from spade_lens.dashboard.topk import NO_TOKEN
from spade_lens.report.markdown import mean_best_f1

FORMAT = "spade-lens-dashboard"
VERSION = 1


def _num(v: float | Tensor) -> float | None:
    f = float(v)
    return None if math.isnan(f) or math.isinf(f) else f


def _nums(t: Tensor) -> list[float | None]:
    return [_num(v) for v in t.tolist()]


def _short(v: float) -> float:
    return float(f"{v:.4g}")


def latent_best(data: LatentData) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per latent (n,): best concept (-1: none), and its F1, precision and recall (0 without a concept)."""
    res = data.result
    concept = res.latent_concept  # (n,)
    c = concept.clamp(min=0).unsqueeze(0)  # (1, n)
    has = concept >= 0
    zero = torch.zeros(res.width, dtype=res.f1.dtype)
    if res.f1.shape[0] == 0:
        return concept, zero, zero, zero
    pick = [torch.where(has, m.gather(0, c).squeeze(0), zero) for m in (res.f1, res.precision, res.recall)]
    return concept, pick[0], pick[1], pick[2]


def max_activation(data: LatentData) -> list[float | None]:
    """Per latent the largest activation over the probed tokens (None for a latent that never fired)."""
    return [_num(v) for v in data.top.value[:, 0].tolist()]


def sae_summary(name: str, hook: str, data: LatentData, texts: Mapping[int, tuple[str, bool]], *,
                block_size: int, folder: str, has_logits: bool) -> dict[str, Any]:
    """The index entry of one SAE: its probe summary and one row per latent (columns as lists)."""
    res = data.result
    concept, f1, precision, recall = latent_best(data)
    firings = data.counts.active_count.long()
    top_tokens = []
    for i in range(res.width):
        words: list[str] = []
        for t in data.top.tokens[i, :, data.top.window].tolist():
            if t != NO_TOKEN and texts[t][0] not in words:
                words.append(texts[t][0])
        top_tokens.append(" ".join(words[:3]))
    return {
        "name": name,
        "architecture": res.architecture,
        "hook": hook,
        "width": res.width,
        "l0": _num(res.l0),
        "nmse": _num(res.nmse),
        "dead_fraction": _num(res.dead_fraction),
        "dead": int((firings == 0).sum()),
        "mean_best_f1": _num(mean_best_f1(res)),
        "best_f1": _nums(res.best_f1),
        "best_latent": res.best_latent.tolist(),
        "top5_f1": _nums(res.top5_f1),
        "concept_l0": _nums(res.concept_l0),
        "folder": folder,
        "block_size": block_size,
        "blocks": math.ceil(res.width / block_size),
        "has_distances": data.distances is not None,
        "has_logits": has_logits,
        "latents": {
            "concept": concept.tolist(),
            "f1": _nums(f1),
            "precision": _nums(precision),
            "recall": _nums(recall),
            "firing_rate": _nums(res.firing_rate),
            "firings": firings.tolist(),
            "max_act": max_activation(data),
            "top_tokens": top_tokens,
        },
    }


def index_payload(summaries: Sequence[dict[str, Any]], data: LatentData, *, title: str, label: str,
                  label_names: Sequence[str] | None, top_k: int, window: int,
                  figures: Sequence[dict[str, str]]) -> dict[str, Any]:
    """The whole index: run-wide facts (from any SAE's result ``data``) and every SAE's summary."""
    res = data.result
    return {
        "format": FORMAT,
        "version": VERSION,
        "title": title,
        "label": label,
        "concepts": list(res.concept_names),
        "concept_tokens": res.concept_tokens.tolist(),
        "label_names": list(label_names) if label_names is not None else [],
        "n_tokens": res.n_tokens,
        "n_labelled": res.n_labelled,
        "top_k": top_k,
        "window": window,
        "figures": list(figures),
        "saes": list(summaries),
    }


class _Examples:
    """The top examples of one SAE as Python lists (converted once), turned into JSON-ready dicts per latent."""

    def __init__(self, data: LatentData) -> None:
        top = data.top
        self.window = top.window
        self.count = top.count().tolist()
        self.value, self.row, self.seq, self.pos = (t.tolist() for t in (top.value, top.row, top.seq, top.pos))
        self.tokens, self.labels, self.acts = (t.tolist() for t in (top.tokens, top.labels, top.acts))

    def latent(self, i: int) -> list[dict[str, Any]]:
        out = []
        for r in range(self.count[i]):
            tokens = self.tokens[i][r]
            keep = [j for j, t in enumerate(tokens) if t != NO_TOKEN]
            out.append({
                "act": _num(self.value[i][r]),
                "row": self.row[i][r],
                "seq": self.seq[i][r],
                "pos": self.pos[i][r],
                "centre": keep.index(self.window),
                "tokens": [tokens[j] for j in keep],
                "labels": [self.labels[i][r][j] for j in keep],
                "acts": [_short(self.acts[i][r][j]) for j in keep],
            })
        return out


def block_payloads(data: LatentData, block_size: int, texts: Mapping[int, tuple[str, bool]],
                   logits: tuple[Tensor, Tensor, Tensor, Tensor] | None) -> Iterator[dict[str, Any]]:
    """One SAE's latents in blocks of ``block_size``, each with the text of every token it mentions."""
    examples = _Examples(data)
    for start in range(0, data.result.width, block_size):
        yield block_payload(data, start, min(start + block_size, data.result.width), texts, logits, examples)


def block_payload(data: LatentData, start: int, stop: int, texts: Mapping[int, tuple[str, bool]],
                  logits: tuple[Tensor, Tensor, Tensor, Tensor] | None,
                  table: _Examples | None = None) -> dict[str, Any]:
    """Latents ``[start, stop)`` of one SAE in full, with the text of every token they mention."""
    res, counts = data.result, data.counts
    table = table or _Examples(data)
    labelled = counts.tp.sum(dim=0)  # (n,)
    latents = []
    used: set[int] = set()
    for i in range(start, stop):
        examples = table.latent(i)
        for ex in examples:
            used.update(ex["tokens"])
        entry: dict[str, Any] = {
            "index": i,
            "concept": int(res.latent_concept[i]),
            "firings": int(counts.active_count[i]),
            "labelled_firings": int(labelled[i]),
            "firing_rate": _num(res.firing_rate[i]),
            "max_act": _num(data.top.value[i, 0]),
            "tp": counts.tp[:, i].long().tolist(),
            "precision": _nums(res.precision[:, i]),
            "recall": _nums(res.recall[:, i]),
            "f1": _nums(res.f1[:, i]),
            "histogram": data.histogram.latent(i),
            "examples": examples,
            "distances": data.distances.latent(i) if data.distances is not None else None,
            "logits": None,
        }
        if logits is not None:
            top_i, top_v, bot_i, bot_v = (t[i].tolist() for t in logits)
            used.update(top_i + bot_i)
            entry["logits"] = {"top": [[t, _short(v)] for t, v in zip(top_i, top_v, strict=True)],
                               "bottom": [[t, _short(v)] for t, v in zip(bot_i, bot_v, strict=True)]}
        latents.append(entry)
    return {"start": start, "stop": stop, "latents": latents,
            "tokens": {str(t): list(texts[t]) for t in sorted(used)}}
