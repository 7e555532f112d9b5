"""Splicing SAEs into a TransformerLens model: identity splice, ablation/scaling, hook cleanup, spliced loss."""

from __future__ import annotations

import math

import pytest
import torch
from _training_helpers import IdentitySAE, one_torch_thread, tiny_model, tiny_tokens  # noqa: F401 (autouse fixture)

from spade_lens.errors import SpadeLensError
from spade_lens.metrics import spliced_loss
from spade_lens.splice import spliced_saes

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@torch.no_grad()
def test_identity_splice_changes_nothing_and_ablation_does(model):
    tokens = tiny_tokens()
    clean = model(tokens)
    sae = IdentitySAE(16, HOOK)
    with spliced_saes(model, sae):
        assert torch.allclose(model(tokens), clean, atol=1e-5)
    with spliced_saes(model, {"id": sae}, ablate={"id": [0, 1, 2, 20]}):
        ablated = model(tokens)
    assert not torch.allclose(ablated, clean, atol=1e-3)
    with spliced_saes(model, {"id": sae}, scale={"id": {3: 2.0}}):
        scaled = model(tokens)
    assert not torch.allclose(scaled, clean, atol=1e-3)
    with spliced_saes(model, {"id": sae}, scale={"id": {3: 1.0}}, ablate={"id": []}):
        assert torch.allclose(model(tokens), clean, atol=1e-5)
    assert torch.equal(model(tokens), clean)  # no hook outlives the context manager
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())


@torch.no_grad()
def test_keep_error_and_mask(model):
    tokens = tiny_tokens()
    clean = model(tokens)
    sae = IdentitySAE(16, HOOK)
    sae.decode = lambda z: 0.5 * (z[..., :16] - z[..., 16:])  # a lossy "SAE"
    with spliced_saes(model, sae):
        lossy = model(tokens)
    assert not torch.allclose(lossy, clean, atol=1e-3)
    with spliced_saes(model, sae, keep_error=True):  # error added back: identity again
        assert torch.allclose(model(tokens), clean, atol=1e-5)
    mask = torch.zeros(tokens.shape, dtype=torch.bool)
    mask[:, 5:] = True  # splice only from position 5 on: earlier logits are clean (causal model)
    with spliced_saes(model, sae, mask=mask):
        partial = model(tokens)
    assert torch.allclose(partial[:, :5], clean[:, :5], atol=1e-5)
    assert not torch.allclose(partial[:, 5:], clean[:, 5:], atol=1e-3)


def test_spliced_loss_of_identity_is_clean(model):
    tokens = tiny_tokens()
    result = spliced_loss(model, IdentitySAE(16, HOOK), tokens, pad_id=0, batch_size=4)
    assert result.spliced == pytest.approx(result.clean, abs=1e-5)
    assert result.recovered_zero == pytest.approx(1.0, abs=1e-4)
    assert result.recovered_mean == pytest.approx(1.0, abs=1e-4)
    assert result.n_tokens == 6 * 7 - 4  # targets that are padding are left out
    # Reference clean loss, by hand.
    with torch.no_grad():
        logits = model(tokens)
    targets = tokens[:, 1:]
    keep = targets != 0
    ref = torch.nn.functional.cross_entropy(logits[:, :-1][keep], targets[keep])
    assert result.clean == pytest.approx(float(ref), rel=1e-5)
    assert result.zero_ablated != pytest.approx(result.clean)


def test_spliced_loss_of_real_sae_and_excluded_positions(model):
    from spade_lens.saes import create_sae

    sae = create_sae("relu", d_in=16, d_sae=32, seed=0, hook_name=HOOK)
    tokens = tiny_tokens()
    result = spliced_loss(model, {"relu": sae}, tokens, pad_id=0)
    assert all(math.isfinite(v) for v in result[:4])
    assert result.spliced != pytest.approx(result.clean)
    # Excluding every token id but one patches only that token's positions.
    partial = spliced_loss(model, sae, tokens, pad_id=0, exclude_token_ids=list(range(1, 12)))
    assert partial.clean == pytest.approx(result.clean)
    assert abs(partial.spliced - partial.clean) < abs(result.spliced - result.clean)


def test_bad_inputs(model):
    sae = IdentitySAE(16, HOOK)
    with pytest.raises(SpadeLensError, match=r"ablate names SAEs \['other'\]; expected names among \['id'\]"):
        with spliced_saes(model, {"id": sae}, ablate={"other": [1]}):
            pass
    with pytest.raises(SpadeLensError, match=r"ablate\['id'\] has latent ids \[32\]; expected integers in \[0, 32\)"):
        with spliced_saes(model, {"id": sae}, ablate={"id": [32]}):
            pass
    with pytest.raises(SpadeLensError, match=r"SAEs 'a' and 'b' both read hook"):
        with spliced_saes(model, {"a": sae, "b": IdentitySAE(16, HOOK)}):
            pass
    with pytest.raises(SpadeLensError, match="cannot add hooks .*blocks.9.hook_resid_post"):
        with spliced_saes(model, IdentitySAE(16, "blocks.9.hook_resid_post")):
            pass
    with pytest.raises(SpadeLensError, match=r"SAE 'x' has no hook_name"):
        with spliced_saes(model, {"x": IdentitySAE(16, "")}):
            pass
    with pytest.raises(SpadeLensError, match=r"the SAE expects \(\.\.\., 8\)"), spliced_saes(model, IdentitySAE(8, HOOK)):
        model(tiny_tokens())
    with pytest.raises(SpadeLensError, match=r"tokens must be an integer tensor of shape \(batch, seq\)"):
        spliced_loss(model, sae, torch.zeros(3, 4))
    with pytest.raises(SpadeLensError, match="leaves no position of tokens to patch"):
        spliced_loss(model, sae, tiny_tokens(), exclude_token_ids=list(range(12)))
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())


@torch.no_grad()
def test_transformer_bridge_splice_and_spliced_loss():
    from _training_helpers import tiny_bridge

    bridge = tiny_bridge()
    tokens = tiny_tokens()
    clean = bridge(tokens)
    sae = IdentitySAE(16, HOOK)
    with spliced_saes(bridge, {"id": sae}):
        assert torch.allclose(bridge(tokens), clean, atol=1e-5)
    with spliced_saes(bridge, {"id": sae}, ablate={"id": list(range(8))}):
        assert not torch.allclose(bridge(tokens), clean, atol=1e-3)
    assert torch.equal(bridge(tokens), clean)
    result = spliced_loss(bridge, sae, tokens, pad_id=0)
    assert result.spliced == pytest.approx(result.clean, abs=1e-5)
    assert result.recovered_mean == pytest.approx(1.0, abs=1e-4)
