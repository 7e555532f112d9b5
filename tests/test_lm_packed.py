"""The packed training loss equals TransformerLens' forward; bfloat16 autocast stays close; precision resolves."""

import pytest
import torch
from _lm_helpers import TINY, one_thread, tiny_corpus, tiny_train

from spade_lens.errors import SpadeLensError
from spade_lens.lm import LMConfig, LMTrainConfig, resolve_config
from spade_lens.lm.data import lm_loss, lm_targets, pad_sequences, take
from spade_lens.lm.model import build_model
from spade_lens.lm.packed import packed_loss, packed_supported
from spade_lens.lm.train import batch_loss
from spade_lens.training.precision import bf16_is_fast, resolve_precision


def _model_and_batch(act_fn: str = "gelu", n_layers: int = 2):
    corpus = tiny_corpus()
    seqs = [list(row["input_ids"]) for row in corpus.dataset["train"]][:24]
    cfg = resolve_config(LMConfig(n_layers=n_layers, d_model=32, n_heads=2, d_head=8, d_mlp=48, act_fn=act_fn),
                         longest_sequence=max(map(len, seqs)), vocab_size=len(corpus.tokenizer))
    model = build_model(cfg, corpus.tokenizer)
    with torch.no_grad():  # non-zero biases and LayerNorm parameters, so every term of the forward is exercised
        for name, p in model.named_parameters():
            if name.endswith(("b_Q", "b_K", "b_V", "b_O", "b_in", "b_out", "b_U", ".b", ".w")):
                p.add_(0.1 * torch.randn_like(p))
    data = pad_sequences(seqs, corpus.tokenizer.pad_id)
    return model, take(data, torch.arange(len(seqs)))


def _reference_loss(model, batch):
    return lm_loss(model(batch.tokens), lm_targets(batch.tokens, batch.lengths))


@pytest.mark.parametrize("act_fn", ["gelu", "gelu_new", "relu", "silu"])
def test_packed_loss_and_gradients_equal_transformer_lens_forward(act_fn):
    with one_thread():
        model, batch = _model_and_batch(act_fn)
        assert batch.lengths.min() < batch.tokens.shape[1]  # ragged: the padding matters
        reference = _reference_loss(model, batch)
        ref_grads = torch.autograd.grad(reference, list(model.parameters()))
        packed = packed_loss(model, batch.tokens, batch.lengths)
        grads = torch.autograd.grad(packed, list(model.parameters()))
    assert packed_supported(model)
    assert abs(packed.item() - reference.item()) < 1e-5
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads, strict=True):
        assert torch.allclose(g, r, atol=1e-6, rtol=1e-4), name


def test_bfloat16_autocast_loss_is_close_to_float32():
    with one_thread():
        model, batch = _model_and_batch()
        full = batch_loss(model, batch, "float32").item()
        half = batch_loss(model, batch, "bfloat16").item()
    assert full == pytest.approx(_reference_loss(model, batch).item(), abs=1e-5)
    assert half != full  # the matmuls did run in bfloat16
    assert half == pytest.approx(full, rel=0.01)


def test_models_the_packed_loss_does_not_cover_use_transformer_lens_forward():
    model, batch = _model_and_batch()
    model.blocks[0].hook_resid_post.add_hook(lambda x, hook: x * 2)  # a hook changes the function
    assert not packed_supported(model)
    with one_thread():
        hooked = batch_loss(model, batch, "float32").item()
        model.reset_hooks()
        plain = batch_loss(model, batch, "float32").item()
    assert hooked != pytest.approx(plain, abs=1e-3)  # the hook was honoured, not skipped


def test_resolve_precision(monkeypatch):
    assert resolve_precision("float32", "cpu") == "float32"
    assert resolve_precision("bfloat16", "cpu") == "bfloat16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not bf16_is_fast("cpu")
    assert resolve_precision("auto", "cpu") == "float32"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert resolve_precision("auto", "cpu") == "bfloat16"


def test_bad_precision_is_refused():
    with pytest.raises(SpadeLensError, match="LMTrainConfig.precision: expected one of .* got 'half'"):
        LMTrainConfig(precision="half")


def test_precision_is_recorded_and_a_resume_must_agree(tmp_path):
    from spade_lens.lm import train_lm
    from spade_lens.lm.checkpoint import load_checkpoint

    with one_thread():
        train_lm(tiny_corpus(), TINY, tiny_train(5, precision="float32"), tmp_path / "lm", progress=False)
        with pytest.raises(SpadeLensError, match=r"precision is 'bfloat16' but the checkpoint .* used 'float32'"):
            train_lm(tiny_corpus(), TINY, tiny_train(5, precision="bfloat16"), tmp_path / "lm", progress=False,
                     resume=True)
    assert load_checkpoint(tmp_path / "lm" / "checkpoint")["train_config"]["precision"] == "float32"
