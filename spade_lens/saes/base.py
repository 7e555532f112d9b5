"""The base every SAE architecture builds on.

The base owns the decoder (``W_dec`` (d_sae, d_in), ``b_dec`` (d_in,)), the input normalisation (buffers
``norm_mean`` (d_in,) and ``norm_scale`` ()), ``decode``, the training ``forward`` and saving. A subclass gives
its encoder (:meth:`SAE.encode_code`, on NORMALISED inputs) and, if it has them, its sparsity and auxiliary
losses.

Conventions
-----------
- Public ``encode`` / ``decode`` / ``forward`` take and return RAW activations: the SAE applies
  ``x_n = (x - norm_mean) / norm_scale`` itself and maps reconstructions back with ``x_n * scale + mean``.
- Losses are computed in normalised space. ``mse_loss`` is the squared error summed over the d_in dimensions
  and averaged over the batch (``mean_b ||x_n - x_hat_n||^2``, the SAELens / paper convention; divide by d_in
  for a per-dimension figure; with statistics giving ``E||x_n||^2 = d_in`` it is ``d_in * NMSE``).
- ``sparsity_loss`` already includes the architecture's coefficient; a term that does not apply is a
  zero scalar. The training objective is ``mse_loss + s * sparsity_loss + aux_loss``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spade_lens.errors import SpadeLensError
from spade_lens.saes.config import SAEConfig


class SAEOutput(NamedTuple):
    """What :meth:`SAE.forward` returns, always with these five fields."""

    x_hat: Tensor
    """(batch, d_in) reconstruction, raw space."""
    z: Tensor
    """(batch, d_sae) latents."""
    mse_loss: Tensor
    """() mean over the batch of the summed squared error, normalised space."""
    sparsity_loss: Tensor
    """() sparsity penalty including its coefficient (zero for TopK)."""
    aux_loss: Tensor
    """() auxiliary loss including its coefficient (TopK AuxK; zero elsewhere)."""


class Code(NamedTuple):
    """Latents of a batch as an encoder produces them: dense, plus an optional sparse view.

    When ``indices`` is given, every non-zero of ``z`` is among ``z.gather(1, indices)`` (== ``values``), so the
    decoder may use the sparse view (``embedding_bag``) instead of a dense matmul.
    """

    z: Tensor
    """(batch, d_sae) dense latents."""
    indices: Tensor | None = None
    """(batch, k) int64 latent indices of the sparse view, or None."""
    values: Tensor | None = None
    """(batch, k) latent values at ``indices`` (carry the gradient), or None."""
    cache: dict[str, Tensor] | None = None
    """Architecture-specific tensors the losses reuse (TopK: dense pre-activations; SpaDE: distances), or None."""


def sparse_decode(indices: Tensor, values: Tensor, weight: Tensor) -> Tensor:
    """``sum_j values[b, j] * weight[indices[b, j]]``: (batch, k), (batch, k), (n, d) -> (batch, d), in ``weight``'s
    dtype (under bfloat16 autocast ``values`` may come in bfloat16)."""
    return F.embedding_bag(indices, weight, per_sample_weights=values.to(weight.dtype), mode="sum")


class SAE(nn.Module):
    """Base class of all architectures. Build one with :func:`spade_lens.saes.create_sae`."""

    config_class: ClassVar[type[SAEConfig]] = SAEConfig

    W_dec: nn.Parameter  # (d_sae, d_in)
    b_dec: nn.Parameter  # (d_in,)
    norm_mean: Tensor  # (d_in,) buffer
    norm_scale: Tensor  # () buffer

    def __init__(
        self,
        cfg: SAEConfig,
        *,
        seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not isinstance(cfg, self.config_class):
            raise SpadeLensError(
                f"cfg must be a {self.config_class.__name__} for {type(self).__name__}, got {type(cfg).__name__}"
            )
        if not dtype.is_floating_point:
            raise SpadeLensError(f"dtype must be a floating point torch dtype, got {dtype}")
        self.cfg = cfg
        d_in, d_sae = cfg.d_in, cfg.d_sae
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_in, dtype=dtype))
        self.register_buffer("norm_mean", torch.zeros(d_in, dtype=dtype))
        self.register_buffer("norm_scale", torch.ones((), dtype=dtype))
        # Initialise on the CPU with a private generator (same seed -> same weights on every device), then move.
        generator = torch.Generator().manual_seed(int(seed))
        self.init_seed = int(seed)
        self.init_parameters(generator, dtype)
        if device is not None:
            self.to(device)

    # ---- to be given by subclasses -------------------------------------------------------------------------
    def init_parameters(self, generator: torch.Generator, dtype: torch.dtype) -> None:
        """Create the encoder's parameters and initialise all of them (called once, on the CPU)."""
        raise NotImplementedError

    def encode_code(self, x_n: Tensor) -> Code:
        """Latents of NORMALISED inputs ``x_n`` (batch, d_in)."""
        raise NotImplementedError

    def sparsity_loss(self, x_n: Tensor, code: Code) -> Tensor:
        """() sparsity penalty, coefficient included; zero by default."""
        return x_n.new_zeros(())

    def aux_loss(self, x_n: Tensor, x_hat_n: Tensor, code: Code, dead_mask: Tensor | None) -> Tensor:
        """() auxiliary loss, coefficient included; zero by default."""
        return x_n.new_zeros(())

    @torch.no_grad()
    def init_from_batch(self, x: Tensor) -> None:
        """Called once by the trainer before the first step of a fresh run, with RAW activations (batch, d_in) from
        the head of the stream (the normalisation is already set): data-dependent initialisation. Nothing by
        default."""

    @torch.no_grad()
    def resample(self, x: Tensor, x_hat: Tensor, dead_mask: Tensor, step: int, total_steps: int) -> Tensor | None:
        """Called by the trainer after each optimiser step with that step's RAW inputs ``x`` (batch, d_in), their
        reconstructions ``x_hat`` and the bool (d_sae,) dead mask: an architecture that resamples dead latents
        re-initialises some and returns their indices (the trainer then clears their optimiser state along
        :meth:`latent_parameters` and their dead counters). None (the default): nothing resampled."""
        return None

    def resample_due(self, step: int, total_steps: int) -> bool:
        """Whether :meth:`resample` may re-initialise latents after ``step``: a trainer spread over several processes
        gathers every process's rows for it only then. By default: at every step when the architecture has its own
        ``resample``, never otherwise."""
        return type(self).resample is not SAE.resample

    def latent_parameters(self) -> list[tuple[nn.Parameter, int]]:
        """(parameter, dimension indexed by latent) of every parameter with one slice per latent."""
        return [(self.W_dec, 0)]

    @torch.no_grad()
    def post_step(self) -> None:
        """Called by the trainer after each optimiser step (e.g. decoder-norm constraints); nothing by default."""

    # ---- normalisation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def set_normalization(self, mean: Tensor, scale: float | Tensor) -> None:
        """Store the statistics so that ``x_n = (x - mean) / scale``; ``mean`` (d_in,), ``scale`` > 0."""
        mean = torch.as_tensor(mean)
        if mean.shape != (self.cfg.d_in,):
            raise SpadeLensError(
                f"mean must have shape ({self.cfg.d_in},) (d_in), got {tuple(mean.shape)}"
            )
        if not bool(torch.isfinite(mean).all()):
            raise SpadeLensError("mean must be finite, got non-finite entries")
        scale_t = torch.as_tensor(scale, dtype=torch.float64)
        if scale_t.numel() != 1 or not bool(torch.isfinite(scale_t)) or float(scale_t) <= 0:
            raise SpadeLensError(f"scale must be one finite number > 0, got {scale!r}")
        self.norm_mean.copy_(mean.to(self.norm_mean))
        self.norm_scale.fill_(float(scale_t))

    def check_input(self, x: Tensor, name: str = "x") -> None:
        """Raise :class:`SpadeLensError` unless ``x`` is a floating tensor of shape (..., d_in)."""
        if not isinstance(x, Tensor):
            raise SpadeLensError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.cfg.d_in:
            raise SpadeLensError(
                f"{name} has shape {tuple(x.shape)}, expected (..., {self.cfg.d_in}) (d_in of this "
                f"{self.cfg.architecture} SAE)"
            )
        if not x.dtype.is_floating_point:
            raise SpadeLensError(f"{name} must be a floating point tensor, got dtype {x.dtype}")

    def normalize(self, x: Tensor) -> Tensor:
        """(batch, d_in) raw -> (batch, d_in) normalised, in the SAE's dtype and on its device."""
        self.check_input(x)
        x = x.to(device=self.W_dec.device, dtype=self.W_dec.dtype)
        return (x - self.norm_mean) / self.norm_scale

    # ---- public encode / decode / forward ----------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """(..., d_in) raw activations -> (..., d_sae) latents."""
        self.check_input(x)
        lead = x.shape[:-1]
        z = self.encode_code(self.normalize(x.reshape(-1, self.cfg.d_in))).z
        return z.reshape(*lead, self.cfg.d_sae)

    def decode_normalized(self, z: Tensor) -> Tensor:
        """(batch, d_sae) -> (batch, d_in) reconstruction in normalised space (dense matmul)."""
        return z @ self.W_dec + self.b_dec

    def decode_code(self, code: Code) -> Tensor:
        """Reconstruction in normalised space, through the sparse view when the code has one."""
        if code.indices is not None and code.values is not None:
            return sparse_decode(code.indices, code.values, self.W_dec) + self.b_dec
        return self.decode_normalized(code.z)

    def decode(self, z: Tensor) -> Tensor:
        """(..., d_sae) latents -> (..., d_in) reconstruction in RAW space."""
        if not isinstance(z, Tensor) or z.ndim < 1 or z.shape[-1] != self.cfg.d_sae:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise SpadeLensError(f"z has shape {shape}, expected (..., {self.cfg.d_sae}) (d_sae)")
        x_hat_n = self.decode_normalized(z.to(self.W_dec.dtype))
        return x_hat_n * self.norm_scale + self.norm_mean

    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> SAEOutput:
        """Training forward pass on RAW ``x`` (batch, d_in); ``dead_mask`` bool (d_sae,) marks dead latents."""
        self.check_input(x)
        if x.ndim != 2:
            raise SpadeLensError(f"x has shape {tuple(x.shape)}, expected (batch, {self.cfg.d_in})")
        if dead_mask is not None and (
            not isinstance(dead_mask, Tensor) or dead_mask.dtype != torch.bool or dead_mask.shape != (self.cfg.d_sae,)
        ):
            got = (dead_mask.dtype, tuple(dead_mask.shape)) if isinstance(dead_mask, Tensor) else type(dead_mask)
            raise SpadeLensError(f"dead_mask must be a bool tensor of shape ({self.cfg.d_sae},), got {got}")
        x_n = self.normalize(x)
        x_hat_n, z, sparsity, aux = self.training_terms(x_n, dead_mask)
        mse = (x_hat_n - x_n).pow(2).sum(-1).mean()
        x_hat = x_hat_n * self.norm_scale + self.norm_mean
        return SAEOutput(x_hat, z, mse, sparsity, aux)

    def training_terms(self, x_n: Tensor, dead_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(x_hat_n (batch, d_in), z (batch, d_sae), sparsity (), aux ()) of NORMALISED inputs for
        :meth:`forward`: by default :meth:`encode_code`, :meth:`decode_code` and the two losses; an architecture
        may give a fused form with fewer passes over the (batch, d_sae) tensors (same values up to rounding)."""
        code = self.encode_code(x_n)
        x_hat_n = self.decode_code(code)
        return x_hat_n, code.z, self.sparsity_loss(x_n, code), self.aux_loss(x_n, x_hat_n, code, dead_mask)

    # ---- files ------------------------------------------------------------------------------------------
    def saelens_state(self) -> tuple[dict[str, object], dict[str, Tensor]]:
        """(extra cfg.json keys, state dict) that SAELens reads, normalisation folded into the weights."""
        raise NotImplementedError

    @torch.no_grad()
    def load_saelens_state(self, state: dict[str, Tensor]) -> None:
        """Set the weights from a SAELens state dict (raw space, so the normalisation becomes mean 0, scale 1)."""
        self.copy_saelens_weights(state)
        self.norm_mean.zero_()
        self.norm_scale.fill_(1.0)

    def copy_saelens_weights(self, state: dict[str, Tensor]) -> None:
        """Copy the architecture's weights from a SAELens state dict (called without gradient)."""
        raise NotImplementedError

    @classmethod
    def config_from_saelens(cls, raw: dict[str, Any]) -> SAEConfig:
        """Our config from a ``cfg.json`` written by SAELens (no ``spade_lens`` block)."""
        for key, ok in (("normalize_activations", ("none", None)), ("reshape_activations", ("none", None))):
            if raw.get(key, "none") not in ok:
                raise SpadeLensError(f"{key} is {raw.get(key)!r}; only 'none' is supported")
        meta = raw.get("metadata") or {}
        if not isinstance(meta, dict):
            raise SpadeLensError(f"metadata must be an object, got {type(meta).__name__}")
        return cls.config_class(
            d_in=raw.get("d_in"),
            d_sae=raw.get("d_sae"),
            hook_name=meta.get("hook_name") or raw.get("hook_name") or "",
            model_name=meta.get("model_name") or raw.get("model_name") or "",
            **cls.arch_fields_from_saelens(raw),
        )

    @classmethod
    def arch_fields_from_saelens(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """The architecture's own config fields found in a SAELens ``cfg.json`` (none by default)."""
        return {}

    def adapt_saelens_state(self, raw: dict[str, Any], state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Turn a SAELens state dict (with its ``cfg.json`` ``raw``) into the form ``load_saelens_state`` takes."""
        return state

    def save(self, path: str | Path) -> Path:
        """Write ``cfg.json`` + ``sae_weights.safetensors`` (SAELens layout) into folder ``path``, atomically."""
        from spade_lens.saes.io import save_sae

        return save_sae(self, path)

    def extra_repr(self) -> str:
        return f"architecture={self.cfg.architecture!r}, d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}"
