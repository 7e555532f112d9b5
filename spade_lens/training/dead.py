"""Dead-latent tracking over a window of training tokens.

Each latent keeps the number of tokens seen since it last fired (``z > ACTIVE_THRESHOLD`` on some token of a
batch). A latent is dead when that count reaches the window. Counters start at 0, so no latent is dead before a
full window has passed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spade_lens.metrics import ACTIVE_THRESHOLD


class DeadLatentTracker:
    """Tokens since each of ``d_sae`` latents last fired; ``dead_mask`` marks those silent for ``window`` tokens."""

    def __init__(self, d_sae: int, window: int, device: torch.device | str = "cpu") -> None:
        self.window = int(window)
        self.tokens_since_fired = torch.zeros(d_sae, dtype=torch.int64, device=device)  # (d_sae,)

    @torch.no_grad()
    def update(self, z: Tensor) -> Tensor:
        """Count a batch of latents ``z`` (batch, d_sae); returns the bool (d_sae,) mask of latents that fired."""
        fired = z.amax(0) > ACTIVE_THRESHOLD  # (d_sae,): one reduction, no (batch, d_sae) bool temporary
        self.update_fired(fired, z.shape[0])
        return fired

    @torch.no_grad()
    def update_fired(self, fired: Tensor, n_tokens: int) -> None:
        """Count a batch of ``n_tokens`` tokens on which the latents of the bool (d_sae,) mask ``fired`` fired (the
        form several ranks agree on: their combined batch)."""
        self.tokens_since_fired.add_(int(n_tokens)).masked_fill_(fired.to(self.tokens_since_fired.device), 0)

    @torch.no_grad()
    def revive(self, latents: Tensor) -> None:
        """Restart the count of ``latents`` (int64 indices) from 0, e.g. after they were resampled."""
        self.tokens_since_fired[latents.to(self.tokens_since_fired.device)] = 0

    @property
    def dead_mask(self) -> Tensor:
        """bool (d_sae,): latents that have not fired on the last ``window`` tokens."""
        return self.tokens_since_fired >= self.window

    def dead_fraction(self) -> float:
        """Fraction of latents currently dead."""
        return float(self.dead_mask.float().mean())

    def state_dict(self) -> dict[str, Tensor]:
        return {"tokens_since_fired": self.tokens_since_fired.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.tokens_since_fired.copy_(state["tokens_since_fired"])
