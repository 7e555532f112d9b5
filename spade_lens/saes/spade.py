"""SpaDE, the Sparsemax Distance Encoder (Hindupur et al. 2025).

``z = sparsemax(-lambda * ||x_n - w_i||^2 over i)`` with prototypes ``w_i`` (rows of ``prototypes``
(d_sae, d_in)) and a learned ``lambda = softplus(lambda_pre) > 0`` (initialised to ``1 / (2 d_in)``); ``z`` lies on
the probability simplex and its support size adapts to the input. ``x_hat_n = z @ W_dec`` (``W_dec``
initialised from the prototypes; ``b_dec`` stays zero and frozen: the reference has no decoder bias).
Regulariser (K-Deep Simplex): ``sparsity_loss = kds_coefficient * mean_b sum_i z_i ||x_n - w_i||^2``.

Fast path (never a batch x n x d tensor): inputs and prototypes are first centred by a common vector ``c``
(the detached prototype mean) for precision; the scores ``2 x.w_i - ||w_i||^2`` (the distance without the
per-row constant ``||x||^2``, which sparsemax ignores) come from one matmul without gradient; ``topk`` picks
``candidates`` prototypes per row; rows whose sparsemax support might extend beyond them are detected and the
candidate count is raised until it covers every support (so the result is exact); the true distances of the
candidates are recomputed with gradient through a sparse backward; sparsemax runs on the candidates only;
decoding is sparse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spade_lens.errors import SpadeLensError
from spade_lens.saes.base import SAE, Code
from spade_lens.saes.config import SAEConfig, check_non_negative, check_positive, check_positive_int
from spade_lens.saes.linear import inverse_softplus
from spade_lens.saes.registry import register_sae
from spade_lens.saes.sparse_ops import gathered_dot
from spade_lens.sparsemax import _threshold_from_sorted, sparsemax

INITS = ("normal", "data", "kmeans++")
"""Prototype initialisations of :class:`SpaDESAEConfig` (``init``)."""


def squared_distances(x: Tensor, prototypes: Tensor) -> Tensor:
    """(batch, d) x (n, d) -> (batch, n) ``||x - w_i||^2`` by one matmul, both first centred by the (detached)
    prototype mean so the matmul form keeps its precision on inputs with a large common mean."""
    c = prototypes.detach().mean(0)
    x_c, p_c = x - c, prototypes - c
    return ((x_c * x_c).sum(-1, keepdim=True) - 2 * x_c @ p_c.T + (p_c * p_c).sum(-1)).clamp(min=0)


@dataclass
class SpaDESAEConfig(SAEConfig):
    """Config of the ``spade`` architecture."""

    architecture: ClassVar[str] = "spade"

    kds_coefficient: float = 0.01
    """Weight of the K-Deep-Simplex regulariser ``mean_b sum_i z_i ||x_n - w_i||^2``, >= 0."""
    lambda_init: float | None = None
    """Initial lambda (> 0); default ``1 / (2 d_in)`` (inputs normalised so ``E||x_n||^2 = d_in``)."""
    candidates: int = 64
    """Prototypes sorted per input by the fast path (speed only: results are exact for any value), >= 1."""
    init: Literal["normal", "data", "kmeans++"] = "normal"
    """Where prototypes start: ``normal`` N(0, I) (the reference code's init); ``data`` inputs drawn uniformly
    from the head of the training stream; ``kmeans++`` inputs drawn by k-means++ seeding (each next prototype
    with probability proportional to its squared distance from the nearest one chosen), which spreads them over
    the data. The decoder rows start at the prototypes."""
    dead_aux_coefficient: float = 0.0
    """Weight of the dead-prototype auxiliary loss (0: off): the prototypes the trainer marks dead encode the
    residual ``x_n - x_hat_n`` by their own sparsemax and reconstruct it, with the KDS term, which pulls them
    towards the inputs nearest to them (AuxK's idea for SpaDE); >= 0."""

    dead_aux_lambda_scale: float = 1.0
    """Factor on lambda in the dead prototypes' own sparsemax (< 1 widens its support, so more of them get a
    gradient); > 0."""
    resample_every: int = 0
    """Steps between resamplings of dead prototypes (0: never): each prototype the trainer marks dead moves onto
    an input of the current batch drawn with probability proportional to its squared reconstruction error (its
    decoder row too, its optimiser state cleared), as SAE practice resamples dead latents; >= 0."""
    resample_until: float = 0.5
    """Resampling happens only in this first fraction of the run, so the last part settles; in (0, 1]."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_non_negative("kds_coefficient", self.kds_coefficient)
        if isinstance(self.resample_every, bool) or not isinstance(self.resample_every, int) or self.resample_every < 0:
            raise SpadeLensError(f"resample_every must be an integer >= 0, got {self.resample_every!r}")
        if isinstance(self.resample_until, bool) or not isinstance(self.resample_until, (int, float)) or not (
                0 < self.resample_until <= 1):
            raise SpadeLensError(f"resample_until must be a number in (0, 1], got {self.resample_until!r}")
        if self.lambda_init is not None:
            check_positive("lambda_init", self.lambda_init)
        check_positive_int("candidates", self.candidates)
        if self.init not in INITS:
            raise SpadeLensError(f"init must be one of {list(INITS)}, got {self.init!r}")
        check_non_negative("dead_aux_coefficient", self.dead_aux_coefficient)
        check_positive("dead_aux_lambda_scale", self.dead_aux_lambda_scale)


class SpaDESAE(SAE):
    """SpaDE: sparsemax over negative scaled squared distances to learned prototypes."""

    config_class = SpaDESAEConfig
    cfg: SpaDESAEConfig
    prototypes: nn.Parameter  # (d_sae, d_in)
    lambda_pre: nn.Parameter  # ()

    def init_parameters(self, generator: torch.Generator, dtype: torch.dtype) -> None:
        d_in, d_sae = self.cfg.d_in, self.cfg.d_sae
        # Prototypes ~ N(0, I): the scale of inputs normalised so that E||x_n||^2 = d_in.
        protos = torch.randn(d_sae, d_in, generator=generator, dtype=torch.float64).to(dtype)
        self.prototypes = nn.Parameter(protos)
        self.W_dec.data.copy_(protos)
        self.b_dec.requires_grad_(False)  # no decoder bias in SpaDE; kept (zero) for the SAELens layout
        lam = self.cfg.lambda_init if self.cfg.lambda_init is not None else 1.0 / (2 * d_in)
        self.lambda_pre = nn.Parameter(torch.tensor(inverse_softplus(lam), dtype=dtype))

    @torch.no_grad()
    def init_prototypes_from_data(self, x: Tensor, seed: int = 0) -> None:
        """Set prototypes and decoder rows to ``d_sae`` inputs drawn (with replacement if needed) from RAW ``x``."""
        x_n = self.normalize(x.reshape(-1, self.cfg.d_in))
        generator = torch.Generator().manual_seed(int(seed))
        n = x_n.shape[0]
        if n >= self.cfg.d_sae:
            pick = torch.randperm(n, generator=generator)[: self.cfg.d_sae]
        else:
            pick = torch.randint(0, n, (self.cfg.d_sae,), generator=generator)
        self.prototypes.copy_(x_n[pick.to(x_n.device)])
        self.W_dec.copy_(self.prototypes)

    @torch.no_grad()
    def init_prototypes_kmeanspp(self, x: Tensor, seed: int = 0) -> None:
        """Set prototypes and decoder rows to ``d_sae`` rows of RAW ``x`` chosen by k-means++ seeding (D^2
        sampling, seeded); rows are drawn again only once every distinct row is taken."""
        x_n = self.normalize(x.reshape(-1, self.cfg.d_in)).double()
        generator = torch.Generator().manual_seed(int(seed))
        n = x_n.shape[0]
        picks = [int(torch.randint(0, n, (1,), generator=generator))]
        nearest = (x_n - x_n[picks[0]]).pow(2).sum(-1)  # (n,) squared distance to the nearest pick
        for _ in range(1, self.cfg.d_sae):
            weights = nearest.cpu() if float(nearest.sum()) > 0 else torch.ones(n, dtype=torch.float64)
            pick = int(torch.multinomial(weights, 1, generator=generator))
            picks.append(pick)
            nearest = torch.minimum(nearest, (x_n - x_n[pick]).pow(2).sum(-1))
        chosen = x_n[torch.tensor(picks, device=x_n.device)].to(self.prototypes.dtype)
        self.prototypes.copy_(chosen)
        self.W_dec.copy_(chosen)

    @torch.no_grad()
    def init_from_batch(self, x: Tensor) -> None:
        if self.cfg.init == "data":
            self.init_prototypes_from_data(x, seed=self.init_seed)
        elif self.cfg.init == "kmeans++":
            self.init_prototypes_kmeanspp(x, seed=self.init_seed)

    @property
    def lambda_(self) -> Tensor:
        """() lambda = softplus(lambda_pre) > 0."""
        return F.softplus(self.lambda_pre)

    def distances(self, x_n: Tensor) -> Tensor:
        """(batch, d_in) normalised -> (batch, d_sae) squared distances, by one matmul (dense; for analysis)."""
        return squared_distances(x_n, self.prototypes)

    def _select(self, x_c: Tensor, p_c: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
        """No-grad candidate selection: (dots (batch, n), idx (batch, k)) with every support inside idx."""
        n = p_c.shape[0]
        dots = x_c @ p_c.T  # (batch, d_sae)
        score = 2 * dots - (p_c * p_c).sum(-1)  # -dist + ||x_c||^2, a per-row constant sparsemax ignores
        k = min(self.cfg.candidates, n)
        while True:
            vals, idx = torch.topk(score, k, dim=-1, sorted=True)
            _, support = _threshold_from_sorted(lam * vals)
            if k >= n or int(support.max()) < k:
                return dots, idx
            k = min(2 * k, n)

    def encode_code(self, x_n: Tensor) -> Code:
        lam = self.lambda_
        c = self.prototypes.detach().mean(0)  # common centring vector (d_in,)
        x_c = x_n - c  # (batch, d_in)
        p_c = self.prototypes - c  # (d_sae, d_in)
        with torch.no_grad():
            dots, idx = self._select(x_c, p_c.detach(), lam.detach())
        if torch.is_grad_enabled() and (x_c.requires_grad or p_c.requires_grad):
            dots_sel = gathered_dot(x_c, p_c, idx, dots)  # (batch, k), sparse backward
        else:
            dots_sel = dots.gather(1, idx)
        # (batch, k); index_select, not sq[idx]: the backward of advanced indexing accumulates in thread-timing
        # order on CPU. (The squared norms are recomputed here rather than shared with _select: computing them
        # before the selection reorders autograd's accumulation into the prototypes' gradient, which changes the
        # last bits of every trained SpaDE, and the (d_sae, d_in) product is cheap beside the batch matmul.)
        sq_sel = (p_c * p_c).sum(-1).index_select(0, idx.reshape(-1)).view(idx.shape)
        dist = ((x_c * x_c).sum(-1, keepdim=True) - 2 * dots_sel + sq_sel).clamp(min=0)  # (batch, k)
        z_sel = sparsemax(-lam * dist, dim=-1, k=idx.shape[1])  # exact: every support is inside idx
        z = torch.zeros(x_n.shape[0], self.cfg.d_sae, dtype=z_sel.dtype, device=z_sel.device).scatter(1, idx, z_sel)
        return Code(z, idx, z_sel, {"dist": dist})

    def sparsity_loss(self, x_n: Tensor, code: Code) -> Tensor:
        if self.cfg.kds_coefficient == 0:
            return x_n.new_zeros(())
        assert code.values is not None and code.cache is not None
        return self.cfg.kds_coefficient * (code.values * code.cache["dist"]).sum(-1).mean()

    def latent_parameters(self) -> list[tuple[nn.Parameter, int]]:
        return [(self.W_dec, 0), (self.prototypes, 0)]

    def resample_due(self, step: int, total_steps: int) -> bool:
        every = self.cfg.resample_every
        return bool(every) and (step + 1) % every == 0 and step + 1 <= self.cfg.resample_until * total_steps

    @torch.no_grad()
    def resample(self, x: Tensor, x_hat: Tensor, dead_mask: Tensor, step: int, total_steps: int) -> Tensor | None:
        if not self.resample_due(step, total_steps):
            return None
        dead = dead_mask.to(self.prototypes.device).nonzero(as_tuple=True)[0]  # (m,)
        if dead.numel() == 0:
            return None
        x_n = self.normalize(x)
        err = (x_n - self.normalize(x_hat)).pow(2).sum(-1).double().cpu()  # (batch,)
        k = min(dead.numel(), x_n.shape[0])
        # seeded by the SAE's seed and the step: the same draw after a resume, no global RNG touched
        generator = torch.Generator().manual_seed(self.init_seed * 1_000_003 + step)
        weights = err if float(err.sum()) > 0 else torch.ones_like(err)
        rows = torch.multinomial(weights, k, replacement=False, generator=generator).to(x_n.device)
        dead = dead[:k]
        self.prototypes.index_copy_(0, dead, x_n.index_select(0, rows))
        self.W_dec.index_copy_(0, dead, x_n.index_select(0, rows))
        return dead

    def aux_loss(self, x_n: Tensor, x_hat_n: Tensor, code: Code, dead_mask: Tensor | None) -> Tensor:
        """Dead prototypes reconstruct the residual with their own sparsemax code, plus its KDS term (see
        ``dead_aux_coefficient``); zero when off or when no prototype is dead."""
        if dead_mask is None or self.cfg.dead_aux_coefficient == 0:
            return x_n.new_zeros(())
        dead = dead_mask.to(x_n.device).nonzero(as_tuple=True)[0]  # (m,)
        if dead.numel() == 0:
            return x_n.new_zeros(())
        dist = squared_distances(x_n, self.prototypes.index_select(0, dead))  # (batch, m)
        z = sparsemax(-self.lambda_.detach() * self.cfg.dead_aux_lambda_scale * dist, dim=-1)  # (batch, m)
        residual = (x_n - x_hat_n).detach()
        recon = z @ self.W_dec.index_select(0, dead)  # (batch, d_in)
        loss = (recon - residual).pow(2).sum(-1).mean() + self.cfg.kds_coefficient * (z * dist).sum(-1).mean()
        return self.cfg.dead_aux_coefficient * loss

    # ---- files: prototypes' = s w + mu, lambda' = lambda / s^2, W_dec' = s W_dec, b_dec' = s b_dec + mu ---------
    @torch.no_grad()
    def saelens_state(self) -> tuple[dict[str, object], dict[str, Tensor]]:
        s, mu = self.norm_scale, self.norm_mean
        lam = self.lambda_.double() / s.double() ** 2
        state = {
            "prototypes": (self.prototypes * s + mu).contiguous(),
            "lambda": lam.to(self.prototypes.dtype).reshape(()),
            "W_dec": (self.W_dec * s).contiguous(),
            "b_dec": (self.b_dec * s + mu).contiguous(),
        }
        # Prototypes live in raw space: SAELens must not subtract b_dec from the input.
        return {"apply_b_dec_to_input": False}, state

    def copy_saelens_weights(self, state: dict[str, Tensor]) -> None:
        self.prototypes.copy_(state["prototypes"])
        self.W_dec.copy_(state["W_dec"])
        self.b_dec.copy_(state["b_dec"])
        lam = float(state["lambda"])
        if not lam > 0:
            raise SpadeLensError(f"lambda must be > 0, got {lam}")
        self.lambda_pre.fill_(inverse_softplus(lam))


register_sae("spade", SpaDESAE)
