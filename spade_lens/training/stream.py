"""The stream of activation batches the trainer reads, and the normalisation estimated from its head.

A source is one of:

- a callable returning a fresh iterable of batches (e.g. ``lambda: cache.batches(hook, 4096, seed=0)``): each
  call is one epoch; when an epoch ends the callable is called again;
- a re-iterable (a list, a seeded ``ShuffleBuffer``): ``iter()`` is taken again at the end of each epoch;
- a one-shot iterator: training stops early (with a warning) if it runs out.

A batch is a tensor (batch, d_in) or anything with an ``acts`` tensor (``hooks.LabelledBatch``).

Resuming skips the batches already consumed, so resume equals an uninterrupted run only when the source gives
the same batches in the same order again: a deterministic callable or re-iterable (seeded shuffles).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Union

import torch
from torch import Tensor

from spade_lens.errors import SpadeLensError

BatchSource = Union[Iterable[Any], Callable[[], Iterable[Any]]]


def as_activations(batch: Any, step: int) -> Tensor:
    """The (batch, d_in) activation tensor of ``batch`` (a tensor or a LabelledBatch-like object)."""
    acts = batch if isinstance(batch, Tensor) else getattr(batch, "acts", None)
    if not isinstance(acts, Tensor):
        raise SpadeLensError(
            f"batch at step {step} is a {type(batch).__name__}; expected a (batch, d_in) tensor or a "
            "LabelledBatch with an 'acts' tensor"
        )
    if acts.ndim != 2 or not acts.dtype.is_floating_point or acts.shape[0] == 0:
        raise SpadeLensError(
            f"batch at step {step} has shape {tuple(acts.shape)} and dtype {acts.dtype}; expected a floating "
            "(batch, d_in) tensor with batch >= 1"
        )
    return acts


def batch_stream(source: BatchSource, skip: int = 0) -> Iterator[Any]:
    """Batches of ``source`` epoch after epoch (see the module doc), the first ``skip`` of them left out."""
    if not callable(source) and not isinstance(source, Iterable):
        raise SpadeLensError(
            f"batches must be an iterable of batches or a callable returning one, got {type(source).__name__}"
        )

    def epochs() -> Iterator[Any]:
        while True:
            iterable = source() if callable(source) else source
            iterator = iter(iterable)
            empty = True
            for batch in iterator:
                empty = False
                yield batch
            if empty or (not callable(source) and iterator is source):
                return

    stream = epochs()
    for _ in itertools.islice(stream, skip):
        pass
    return stream


def peek(stream: Iterator[Any], n: int) -> tuple[list[Any], Iterator[Any]]:
    """The first ``n`` items of ``stream`` and an iterator giving all of them again, then the rest."""
    head = list(itertools.islice(stream, n))
    return head, itertools.chain(head, stream)


@torch.no_grad()
def estimate_normalization(batches: list[Tensor]) -> tuple[Tensor, float]:
    """(mean (d_in,), scale) of the rows of ``batches`` such that ``(x - mean) / scale`` has
    ``E||.||^2 = d_in`` (DESIGN.md section 3); accumulated in float64."""
    if not batches:
        raise SpadeLensError("batches is empty; expected at least one batch to estimate the normalisation")
    d_in = batches[0].shape[-1]
    total = torch.zeros(d_in, dtype=torch.float64, device=batches[0].device)
    sq = torch.zeros((), dtype=torch.float64, device=batches[0].device)
    n = 0
    for x in batches:
        x = x.to(torch.float64)
        total += x.sum(0)
        sq += x.pow(2).sum()
        n += x.shape[0]
    mean = total / n
    var_sum = float(sq / n - mean.pow(2).sum())  # E||x - mean||^2
    if not math.isfinite(var_sum) or var_sum <= 0:
        raise SpadeLensError(
            f"the first {len(batches)} batches have total variance {var_sum}; expected > 0 to scale them "
            "(constant or non-finite activations?)"
        )
    return mean.float(), math.sqrt(var_sum / d_in)
