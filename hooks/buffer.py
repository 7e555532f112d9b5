"""A fixed-capacity shuffling buffer of labelled activation rows (after SAELens' ``mixing_buffer``).

Fill to ``capacity`` rows, yield a random half in batches, refill, repeat; labels travel with their rows.
Memory: ``capacity`` rows plus the one source chunk being copied in (the rows kept between refills are never
copied: an index says where each buffer row is stored).

    >>> stream = lambda: (b.labelled(hook) for b in capture_activations(model, split, [hook]))
    >>> for batch in ShuffleBuffer(stream, capacity=2**16, batch_size=4096, seed=0):  # one epoch
    ...     sae_step(batch.acts)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor

from hooks.batches import LabelledBatch
from hooks.errors import HooksError, check_int

Source = Iterable[LabelledBatch] | Callable[[], Iterable[LabelledBatch]]


class ShuffleBuffer:
    """Iterable of shuffled :class:`LabelledBatch` es of ``batch_size`` rows drawn from ``source``.

    ``source``: an iterable of LabelledBatch (any row counts), or a callable returning a fresh one.
    ``endless=False``: one epoch, every source row exactly once (the last batch may be short).
    ``endless=True``: never ends; the source is started again when exhausted (it must be re-iterable, e.g.
    a list or a callable). The same seed gives the same batches.
    """

    def __init__(self, source: Source, *, capacity: int, batch_size: int, seed: int = 0,
                 endless: bool = False) -> None:
        check_int("capacity", capacity)
        check_int("batch_size", batch_size)
        if capacity < 2 * batch_size:
            raise HooksError(f"capacity: expected at least 2 * batch_size = {2 * batch_size} rows, got {capacity}")
        self.source, self.capacity, self.batch_size = source, capacity, batch_size
        self.seed, self.endless = seed, endless

    def _chunks(self) -> Iterator[LabelledBatch]:
        while True:
            rows = 0
            for chunk in self.source() if callable(self.source) else self.source:
                rows += len(chunk)
                yield chunk
            if not self.endless:
                return
            if rows == 0:
                raise HooksError("source: endless=True needs a re-iterable source (a list, or a callable "
                                 "returning a new iterable); a pass over it gave no rows")

    def __iter__(self) -> Iterator[LabelledBatch]:
        gen = torch.Generator().manual_seed(self.seed)
        chunks, pending = self._chunks(), None
        acts: Tensor | None = None  # (capacity, d) storage
        labels: dict[str, Tensor] = {}  # name -> (capacity,)
        # The buffer's rows 0..n-1 in order are the storage rows slot[0..n-1]; slot[n:] are free storage rows, filled
        # in that order. Serving half the buffer then only reorders slot (no copy of the rows kept).
        slot = torch.zeros(0, dtype=torch.int64)  # (capacity,)
        n, exhausted = 0, False
        while True:
            while n < self.capacity and not exhausted:  # refill
                if pending is None or len(pending) == 0:
                    pending = next(chunks, None)
                    if pending is None:
                        exhausted = True
                        break
                    if acts is None:
                        acts = pending.acts.new_empty((self.capacity, *pending.acts.shape[1:]))
                        labels = {k: v.new_empty(self.capacity) for k, v in pending.labels.items()}
                        slot = torch.arange(self.capacity, device=acts.device)
                    _check_like(pending, acts, labels)
                k = min(self.capacity - n, len(pending))
                rows = slot[n:n + k]
                acts.index_copy_(0, rows, pending.acts[:k].to(acts.dtype))
                for key, v in labels.items():
                    v.index_copy_(0, rows, pending.labels[key][:k].to(v.dtype))
                pending, n = LabelledBatch(pending.acts[k:], {a: b[k:] for a, b in pending.labels.items()}), n + k
            if n == 0:
                return
            perm = torch.randperm(n, generator=gen).to(slot.device)
            out = n if exhausted else max(n // 2 // self.batch_size, 1) * self.batch_size
            for i in range(0, out, self.batch_size):
                idx = slot[perm[i:min(i + self.batch_size, out)]]
                yield LabelledBatch(acts.index_select(0, idx), {k: v.index_select(0, idx) for k, v in labels.items()})
            slot = torch.cat([slot[perm[out:]], slot[perm[:out]], slot[n:]])  # kept rows first, then the free ones
            n -= out


def _check_like(chunk: LabelledBatch, acts: Tensor, labels: dict[str, Tensor]) -> None:
    if chunk.acts.shape[1:] != acts.shape[1:] or set(chunk.labels) != set(labels):
        raise HooksError(f"source: every batch must have the same width and label keys; got width "
                         f"{tuple(chunk.acts.shape[1:])} and labels {sorted(chunk.labels)}, expected "
                         f"{tuple(acts.shape[1:])} and {sorted(labels)}")
