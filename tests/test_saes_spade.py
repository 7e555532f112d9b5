"""SpaDE: simplex latents, matmul distances, exact fast path against a dense reference, adaptive support."""

from __future__ import annotations

import torch
from _saes_helpers import D_IN, D_SAE, activations, grads_on_two_threads, make_sae
from torch.utils._python_dispatch import TorchDispatchMode

from spade_lens.saes import SpaDESAE
from spade_lens.sparsemax import sparsemax_sort


def direct_distances(x_n: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """(batch, n) squared distances the obvious way (a batch x n x d tensor: tiny shapes only)."""
    return (x_n[:, None, :] - protos[None, :, :]).pow(2).sum(-1)


def spade(**kw: object) -> tuple[SpaDESAE, torch.Tensor]:
    x = activations(n=64)
    sae = make_sae("spade", x=x, **kw)
    assert isinstance(sae, SpaDESAE)
    return sae, x


def test_latents_on_simplex() -> None:
    sae, x = spade()
    z = sae.encode(x)
    assert bool((z >= 0).all())
    torch.testing.assert_close(z.sum(-1), torch.ones(x.shape[0]))


def test_matmul_distances_equal_direct_ones_even_with_large_common_mean() -> None:
    g = torch.Generator().manual_seed(0)
    sae = make_sae("spade")  # no normalisation: inputs keep their huge common offset
    x = 1000.0 + torch.randn(32, D_IN, generator=g)
    with torch.no_grad():
        sae.prototypes.copy_(1000.0 + torch.randn(D_SAE, D_IN, generator=g))
    ref = direct_distances(x.double(), sae.prototypes.double()).float()
    torch.testing.assert_close(sae.distances(x), ref, rtol=1e-5, atol=1e-3)
    code = sae.encode_code(sae.normalize(x))
    torch.testing.assert_close(code.cache["dist"], ref.gather(1, code.indices), rtol=1e-5, atol=1e-3)


def reference_forward(sae: SpaDESAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense SpaDE: z = sparsemax(-lambda * direct distances); returns (z, loss = mse + kds)."""
    x_n = sae.normalize(x)
    dist = direct_distances(x_n, sae.prototypes)
    z = sparsemax_sort(-sae.lambda_ * dist)
    x_hat = z @ sae.W_dec + sae.b_dec
    loss = (x_hat - x_n).pow(2).sum(-1).mean() + sae.cfg.kds_coefficient * (z * dist).sum(-1).mean()
    return z, loss


def test_fast_path_equals_dense_reference_values_and_gradients() -> None:
    # candidates=1 forces the candidate count to grow until every support fits
    sae, x = spade(candidates=1, kds_coefficient=0.1)
    z_ref, loss_ref = reference_forward(sae, x)
    grads_ref = torch.autograd.grad(loss_ref, [sae.prototypes, sae.lambda_pre, sae.W_dec])
    out = sae(x)
    torch.testing.assert_close(out.z, z_ref, rtol=1e-4, atol=1e-5)
    loss = out.mse_loss + out.sparsity_loss
    torch.testing.assert_close(loss, loss_ref, rtol=1e-4, atol=1e-4)
    grads = torch.autograd.grad(loss, [sae.prototypes, sae.lambda_pre, sae.W_dec])
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_support_size_varies_across_inputs() -> None:
    sae, x = spade()
    sizes = (sae.encode(x) > 0).sum(-1)
    assert len(torch.unique(sizes)) > 1, sizes


def test_init_decoder_from_prototypes_and_lambda() -> None:
    sae, _ = spade()
    assert torch.equal(sae.W_dec, sae.prototypes)
    assert not sae.b_dec.requires_grad and bool((sae.b_dec == 0).all())
    torch.testing.assert_close(float(sae.lambda_.detach()), 1 / (2 * D_IN))
    sae2, _ = spade(lambda_init=0.3)
    torch.testing.assert_close(float(sae2.lambda_.detach()), 0.3)


def test_init_prototypes_from_data() -> None:
    sae, x = spade()
    sae.init_prototypes_from_data(x, seed=1)
    x_n = sae.normalize(x)
    assert all(bool((x_n == p).all(-1).any()) for p in sae.prototypes)
    assert torch.equal(sae.W_dec, sae.prototypes)


class _MaxNumel(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.max_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.max_numel = max(self.max_numel, t.numel())
        return out


def test_never_builds_a_batch_by_width_by_dim_tensor() -> None:
    sae, x = spade()
    with _MaxNumel() as mode:
        out = sae(x)
        (out.mse_loss + out.sparsity_loss).backward()
    assert mode.max_numel <= x.shape[0] * D_SAE, mode.max_numel  # far below batch * d_sae * d_in


def test_gradients_are_bit_identical_on_two_threads():
    """The prototypes' gradient once went through sq[idx] (advanced indexing), whose CPU backward accumulates in
    thread-timing order: the last bits changed from call to call and CPU training was not reproducible."""
    runs = grads_on_two_threads("spade", candidates=64)
    for other in runs[1:]:
        assert [k for k in runs[0] if not torch.equal(runs[0][k], other[k])] == []
