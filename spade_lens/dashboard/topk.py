"""Per-latent top-activating tokens with the window of tokens around them, kept in one streaming pass.

Each latent keeps a bounded heap of its ``k`` best tokens under one total order: larger activation first, and on
equal activations the earlier row of the stream (so the result does not depend on how the stream is batched).
Only active tokens (``z > ACTIVE_THRESHOLD``) enter. Rows must arrive in harvest order (``cache.batches(...,
shuffle=False)``) for the windows to hold the neighbouring tokens: a row decides its window once ``window`` later
rows have been seen, so the last ``2 * window`` rows of a batch wait in a small buffer for the next one. A
neighbour belongs to the window only when it is in the same sequence at the expected position, so shuffled rows
give windows of one token rather than wrong context.

Legend: ``n`` latents, ``k`` examples per latent, ``w = 2 * window + 1`` tokens per example window.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from spade_lens.errors import SpadeLensError
from spade_lens.probe import ACTIVE_THRESHOLD

ROW_COLUMNS: tuple[str, ...] = ("token_id", "position", "seq_index")
"""Label columns every row must carry (an activation cache written by :func:`hooks.harvest` has them)."""
NO_TOKEN = -1
"""Token id of window slots outside the example's sequence (and label id there)."""
_LAST_ROW = np.iinfo(np.int64).max


class TopExamples:
    """Top-``k`` activating tokens of each of ``n_latents`` latents, each with a window of its sequence.

    Call :meth:`update` with every batch in stream order, then :meth:`finish` once.
    """

    def __init__(self, n_latents: int, k: int, window: int, label: str) -> None:
        self.n, self.k, self.window, self.label = n_latents, k, window, label
        w = 2 * window + 1
        self.value = torch.full((n_latents, k), float("-inf"))  # (n, k) activation, -inf on empty slots
        self.row = torch.full((n_latents, k), _LAST_ROW, dtype=torch.int64)  # (n, k) row of the stream
        self.seq = torch.full((n_latents, k), -1, dtype=torch.int64)  # (n, k) seq_index of the token
        self.pos = torch.full((n_latents, k), -1, dtype=torch.int64)  # (n, k) position of the token
        self.acts = torch.zeros(n_latents, k, w)  # (n, k, w) the latent's activation on each window token
        self.tokens = torch.full((n_latents, k, w), NO_TOKEN, dtype=torch.int64)  # (n, k, w) token ids
        self.labels = torch.full((n_latents, k, w), NO_TOKEN, dtype=torch.int64)  # (n, k, w) gold label ids
        self._buf_z = torch.zeros(0, n_latents)  # (r, n) buffered rows: left context + undecided rows
        self._buf_cols: dict[str, Tensor] = {c: torch.zeros(0, dtype=torch.int64) for c in (*ROW_COLUMNS, label)}
        self._buf_start = 0  # stream row of the buffer's first row
        self._undecided = 0  # index in the buffer of the first row whose window is not decided yet

    def update(self, z: Tensor, columns: Mapping[str, Tensor]) -> None:
        """Add one batch: ``z`` (b, n) latents and its rows' ``columns`` (``token_id``, ``position``,
        ``seq_index`` and the label column, each (b,))."""
        missing = [c for c in (*ROW_COLUMNS, self.label) if c not in columns]
        if missing:
            raise SpadeLensError(f"batches: rows carry no {missing} column(s); expected the rows of an activation "
                                 "cache (hooks.harvest), which carry token_id, position and seq_index")
        z = z.detach().float().cpu()
        self._buf_z = torch.cat([self._buf_z, z])
        for c in self._buf_cols:
            col = torch.as_tensor(columns[c]).to("cpu", torch.int64)
            self._buf_cols[c] = torch.cat([self._buf_cols[c], col])
        self._decide(self._buf_z.shape[0] - self.window)

    def finish(self) -> None:
        """Decide the rows still waiting for right context (the stream has ended)."""
        self._decide(self._buf_z.shape[0])

    def _decide(self, stop: int) -> None:
        """Enter the buffered rows ``[undecided, stop)`` into the heaps, then drop rows no longer needed."""
        start = self._undecided
        if stop > start:
            self._merge(start, stop)
            self._undecided = stop
        keep_from = max(0, self._undecided - self.window)
        if keep_from:
            self._buf_z = self._buf_z[keep_from:]
            self._buf_cols = {c: v[keep_from:] for c, v in self._buf_cols.items()}
            self._buf_start += keep_from
            self._undecided -= keep_from

    def _merge(self, start: int, stop: int) -> None:
        z = self._buf_z[start:stop]  # (r, n)
        floor = self.value[:, -1].clamp(min=ACTIVE_THRESHOLD)  # (n,) a new token must beat the k-th kept one
        rows, lats = (z > floor).nonzero(as_tuple=True)  # candidates, in row order
        if rows.numel() == 0:
            return
        vals = z[rows, lats]
        rows = rows + start  # buffer index
        # Kept entries and candidates together, sorted by (latent, value desc, stream row asc).
        filled = self.value.view(-1) > float("-inf")
        slot = filled.nonzero(as_tuple=True)[0]  # flat (n * k) slots of kept entries
        all_lat = torch.cat([slot // self.k, lats]).numpy()
        all_val = torch.cat([self.value.view(-1)[slot], vals]).numpy()
        all_row = torch.cat([self.row.view(-1)[slot], rows + self._buf_start]).numpy()
        src = np.concatenate([slot.numpy(), -1 - rows.numpy()])  # >= 0: old slot; < 0: -1 - buffer index
        order = np.lexsort((all_row, -all_val.astype(np.float64), all_lat))
        lat_sorted = all_lat[order]
        first = np.searchsorted(lat_sorted, lat_sorted, side="left")
        rank = np.arange(len(order)) - first
        keep = rank < self.k
        order, lat_new, rank_new = order[keep], torch.from_numpy(lat_sorted[keep]), torch.from_numpy(rank[keep])
        src = src[order]
        from_old = src >= 0
        o = torch.from_numpy(src[from_old])
        # Copies of the kept entries' windows, taken before any slot is overwritten.
        moved = {name: getattr(self, name).flatten(0, 1)[o] for name in ("seq", "pos", "acts", "tokens", "labels")}
        self.value[lat_new, rank_new] = torch.from_numpy(all_val[order])
        self.row[lat_new, rank_new] = torch.from_numpy(all_row[order])
        dest = (lat_new[from_old], rank_new[from_old])
        for name, t in moved.items():
            getattr(self, name)[dest] = t
        from_new = ~from_old
        if from_new.any():
            self._windows(torch.from_numpy(-1 - src[from_new]), lat_new[from_new], rank_new[from_new])

    def _windows(self, centre: Tensor, lat: Tensor, rank: Tensor) -> None:
        """Fill the slots ``(lat, rank)`` with the windows around buffer rows ``centre`` (m,)."""
        cols = self._buf_cols
        offsets = torch.arange(-self.window, self.window + 1)  # (w,)
        idx = centre.unsqueeze(1) + offsets  # (m, w) buffer rows of the window
        inside = (idx >= 0) & (idx < self._buf_z.shape[0])
        idx_c = idx.clamp(0, self._buf_z.shape[0] - 1)
        seq, pos = cols["seq_index"], cols["position"]
        valid = inside & (seq[idx_c] == seq[centre].unsqueeze(1)) & (pos[idx_c] == pos[centre].unsqueeze(1) + offsets)
        acts = self._buf_z[idx_c, lat.unsqueeze(1)]  # (m, w)
        self.acts[lat, rank] = torch.where(valid, acts, torch.zeros_like(acts))
        self.tokens[lat, rank] = torch.where(valid, cols["token_id"][idx_c], NO_TOKEN)
        self.labels[lat, rank] = torch.where(valid, cols[self.label][idx_c], NO_TOKEN)
        self.seq[lat, rank] = seq[centre]
        self.pos[lat, rank] = pos[centre]

    def count(self) -> Tensor:
        """(n,) int64 examples kept per latent (``k``, or fewer for latents active on fewer tokens)."""
        return (self.value > float("-inf")).sum(dim=1)
