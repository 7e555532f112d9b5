"""The two row containers of the hooks package.

:class:`ActivationBatch` is what one forward pass of capture gives: several hooks, row for row the token id,
position and source sequence of every kept token, and the source's label columns. :class:`LabelledBatch` is
one hook's rows with all that metadata folded into ``labels``; it is what buffers and caches yield and what
a trainer consumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from hooks.errors import HooksError

ROW_KEYS: tuple[str, ...] = ("token_id", "position", "seq_index")
"""Label keys every row carries besides the source's own label columns (so those names are reserved)."""


class LabelledBatch(NamedTuple):
    """One hook's activations with, row for row, their labels."""

    acts: Tensor
    """(rows, d) activations, in the model's dtype (or the cache's)."""
    labels: dict[str, Tensor]
    """name -> (rows,) int64: ``token_id``, ``position``, ``seq_index`` and every label column."""

    def __len__(self) -> int:  # type: ignore[override]  # rows, not the tuple's 2 fields
        return int(self.acts.shape[0])

    def to(self, device: torch.device | str) -> LabelledBatch:
        return LabelledBatch(self.acts.to(device), {k: v.to(device) for k, v in self.labels.items()})


@dataclass
class ActivationBatch:
    """The kept tokens of one forward pass, at every requested hook (all tensors on the model's device)."""

    acts: dict[str, Tensor]
    """hook name -> (rows, d); trailing dims of the hook (e.g. heads x d_head) are flattened into d."""
    token_ids: Tensor
    """(rows,) int64 token id of each row."""
    positions: Tensor
    """(rows,) int64 position of the token in its sequence (0 = first token, BOS included)."""
    seq_index: Tensor
    """(rows,) int64 index of the row's sequence in the whole source (not in this batch)."""
    labels: dict[str, Tensor]
    """label column -> (rows,) int64, the source's per-token labels."""
    seq_range: tuple[int, int]
    """Source sequences [start, stop) this forward pass covered (rows may be fewer: excluded tokens)."""

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])

    def row_labels(self) -> dict[str, Tensor]:
        """``token_id``, ``position``, ``seq_index`` and the label columns, in one dict."""
        return {"token_id": self.token_ids, "position": self.positions, "seq_index": self.seq_index,
                **self.labels}

    def labelled(self, hook_name: str) -> LabelledBatch:
        """This batch's rows at ``hook_name`` as a :class:`LabelledBatch`."""
        if hook_name not in self.acts:
            raise HooksError(f"hook_name: {hook_name!r} was not captured; this batch holds {sorted(self.acts)}")
        return LabelledBatch(self.acts[hook_name], self.row_labels())
