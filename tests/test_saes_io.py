"""Files: SAELens layout, atomic writes, clear errors on bad folders, interop with the real sae-lens package."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from _saes_helpers import D_IN, D_SAE, activations, make_sae

from spade_lens.errors import SpadeLensError
from spade_lens.saes import list_architectures, load_sae, register_spade_with_saelens
from spade_lens.saes.io import CFG_FILENAME, STATE_FILENAME, WEIGHTS_FILENAME

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # sae_lens imports transformer_lens.utils
    try:
        import sae_lens
        from sae_lens import SAE as SAELensSAE
    except ImportError:  # pragma: no cover - CI installs the dev extra
        sae_lens = None

needs_saelens = pytest.mark.skipif(sae_lens is None, reason="sae-lens is not installed (pip install -e '.[dev]')")
SAELENS_ARCH = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu", "spade": "spade"}


def saved(arch: str, tmp_path: Path, **kw: object):
    x = activations()
    sae = make_sae(arch, x=x, **kw)
    folder = sae.save(tmp_path / arch)
    return sae, x, folder


@pytest.mark.parametrize("arch", list_architectures())
def test_layout(arch: str, tmp_path: Path) -> None:
    sae, _, folder = saved(arch, tmp_path)
    cfg = json.loads((folder / CFG_FILENAME).read_text())
    assert cfg["architecture"] == SAELENS_ARCH[arch]
    assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"]) == (D_IN, D_SAE, "float32")
    assert cfg["metadata"]["hook_name"] == "blocks.0.hook_resid_post"
    assert cfg["metadata"]["model_name"] == "tiny"
    assert int(cfg["metadata"]["sae_lens_version"].split(".")[0]) >= 6
    assert cfg["spade_lens"]["architecture"] == arch
    assert cfg["spade_lens"]["norm_scale"] == pytest.approx(float(sae.norm_scale))
    from safetensors.torch import load_file

    weights = load_file(str(folder / WEIGHTS_FILENAME))
    assert weights["W_dec"].shape == (D_SAE, D_IN) and weights["b_dec"].shape == (D_IN,)
    if arch != "spade":
        assert weights["W_enc"].shape == (D_IN, D_SAE)
    if arch == "jumprelu":
        assert weights["threshold"].shape == (D_SAE,)
    if arch == "topk":
        assert cfg["k"] == sae.cfg.k


@pytest.mark.parametrize("arch", list_architectures())
def test_folded_weights_alone_give_same_outputs(arch: str, tmp_path: Path) -> None:
    """Without our exact state file the folder loads from the folded SAELens weights (mean 0, scale 1)."""
    sae, x, folder = saved(arch, tmp_path)
    (folder / STATE_FILENAME).unlink()
    folded = load_sae(folder)
    assert float(folded.norm_scale) == 1.0 and bool((folded.norm_mean == 0).all())
    with torch.no_grad():
        torch.testing.assert_close(folded.encode(x), sae.encode(x), rtol=1e-4, atol=1e-5)
        z = sae.encode(x)
        torch.testing.assert_close(folded.decode(z), sae.decode(z), rtol=1e-4, atol=1e-4)


def test_overwrite_is_atomic_and_leaves_no_temp(tmp_path: Path) -> None:
    sae, x, folder = saved("relu", tmp_path)
    other = make_sae("topk", x=x)
    other.save(folder)
    assert type(load_sae(folder)).__name__ == "TopKSAE"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relu"]


def test_load_device_and_dtype(tmp_path: Path) -> None:
    _, x, folder = saved("spade", tmp_path)
    sae = load_sae(folder, dtype=torch.float64, device="cpu")
    assert sae.W_dec.dtype == torch.float64 and sae.encode(x.double()).dtype == torch.float64


# ---- bad folders ------------------------------------------------------------------------------------------
def test_missing_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(SpadeLensError, match="is not a folder"):
        load_sae(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpadeLensError, match=r"missing file .*cfg\.json"):
        load_sae(tmp_path / "empty")
    _, _, folder = saved("relu", tmp_path)
    (folder / STATE_FILENAME).unlink()
    (folder / WEIGHTS_FILENAME).unlink()
    with pytest.raises(SpadeLensError, match=r"missing file .*sae_weights\.safetensors"):
        load_sae(folder)


def test_bad_json(tmp_path: Path) -> None:
    _, _, folder = saved("relu", tmp_path)
    (folder / CFG_FILENAME).write_text("{not json")
    with pytest.raises(SpadeLensError, match=r"cfg\.json.*not valid JSON"):
        load_sae(folder)


@pytest.mark.parametrize("name", [STATE_FILENAME, WEIGHTS_FILENAME])
def test_truncated_weights(name: str, tmp_path: Path) -> None:
    _, _, folder = saved("topk", tmp_path)
    if name == WEIGHTS_FILENAME:
        (folder / STATE_FILENAME).unlink()
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(SpadeLensError, match=rf"{name}.*not a valid safetensors file"):
        load_sae(folder)


def test_mismatched_shapes(tmp_path: Path) -> None:
    _, _, folder = saved("jumprelu", tmp_path)
    cfg = json.loads((folder / CFG_FILENAME).read_text())
    cfg["spade_lens"]["config"]["d_sae"] = D_SAE + 1
    (folder / CFG_FILENAME).write_text(json.dumps(cfg))
    with pytest.raises(SpadeLensError, match=r"spade_lens_state\.safetensors.*tensor '\w+' has shape .*expected"):
        load_sae(folder)


def test_unknown_architecture_in_file(tmp_path: Path) -> None:
    _, _, folder = saved("relu", tmp_path)
    cfg = json.loads((folder / CFG_FILENAME).read_text())
    cfg["spade_lens"]["architecture"] = "gated"
    (folder / CFG_FILENAME).write_text(json.dumps(cfg))
    with pytest.raises(SpadeLensError, match=r"cfg\.json.*unknown architecture 'gated'.*jumprelu, relu, spade, topk"):
        load_sae(folder)


def test_invalid_config_in_file(tmp_path: Path) -> None:
    _, _, folder = saved("topk", tmp_path)
    cfg = json.loads((folder / CFG_FILENAME).read_text())
    cfg["spade_lens"]["config"]["k"] = 10_000
    (folder / CFG_FILENAME).write_text(json.dumps(cfg))
    with pytest.raises(SpadeLensError, match=r"cfg\.json.*invalid config.*k must be <= d_sae"):
        load_sae(folder)


def test_save_onto_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(SpadeLensError, match="f' is a file; expected a folder"):
        make_sae("relu").save(tmp_path / "f")


# ---- interop with the real sae-lens --------------------------------------------------------------------------
@needs_saelens
@pytest.mark.parametrize("arch", list_architectures())
def test_saelens_loads_our_folders(arch: str, tmp_path: Path) -> None:
    if arch == "spade":
        register_spade_with_saelens()
        register_spade_with_saelens()  # idempotent
    sae, x, folder = saved(arch, tmp_path)
    theirs = SAELensSAE.load_from_disk(str(folder))
    with torch.no_grad():
        z = sae.encode(x)
        torch.testing.assert_close(theirs.encode(x), z, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(theirs.decode(z), sae.decode(z), rtol=1e-4, atol=1e-4)


def _saelens_sae(arch: str):
    from sae_lens import (
        JumpReLUSAE,
        JumpReLUSAEConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
    )

    meta = {"hook_name": "blocks.1.hook_resid_pre", "model_name": "other"}
    if arch == "relu":
        sae = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=sae_lens.saes.sae.SAEMetadata(**meta)))
    elif arch == "topk":
        sae = TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=3, metadata=sae_lens.saes.sae.SAEMetadata(**meta)))
    else:
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=sae_lens.saes.sae.SAEMetadata(**meta)))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            if name == "threshold":
                p.abs_()
    return sae


@needs_saelens
@pytest.mark.parametrize("arch", ["relu", "topk", "jumprelu"])
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_we_load_folders_saelens_wrote(arch: str, apply_b_dec: bool, tmp_path: Path) -> None:
    theirs = _saelens_sae(arch)
    theirs.cfg.apply_b_dec_to_input = apply_b_dec
    theirs.save_model(tmp_path / "theirs")
    ours = load_sae(tmp_path / "theirs")
    assert ours.cfg.architecture == arch and ours.cfg.hook_name == "blocks.1.hook_resid_pre"
    assert ours.cfg.model_name == "other"
    x = activations()
    with torch.no_grad():
        z = theirs.encode(x)
        torch.testing.assert_close(ours.encode(x), z, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours.decode(z), theirs.decode(z), rtol=1e-4, atol=1e-5)


def _edit(file: Path, name: str, value: float) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(file))
    tensors[name].view(-1)[0] = value
    save_file(tensors, str(file))


@pytest.mark.parametrize("arch", list_architectures())
def test_load_checks_the_saelens_weights_too(arch: str, tmp_path: Path) -> None:
    """Issue 11, defect 5: the SAELens file used to be ignored when spade_lens_state.safetensors was there."""
    _, _, folder = saved(arch, tmp_path)
    weights = folder / WEIGHTS_FILENAME
    name = next(iter(sorted(load_file_names(weights))))
    _edit(weights, name, 1e3)
    with pytest.raises(SpadeLensError, match=f"tensor '{name}' differs from the one {STATE_FILENAME} gives"):
        load_sae(folder)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(SpadeLensError, match="sae_weights.safetensors': not a valid safetensors file"):
        load_sae(folder)
    weights.unlink()
    with pytest.raises(SpadeLensError, match="missing file .*sae_weights.safetensors"):
        load_sae(folder)


def load_file_names(file: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(file), "pt") as f:
        return [k for k in f.keys() if k in ("W_enc", "W_dec")]


@pytest.mark.parametrize("filename", [STATE_FILENAME, WEIGHTS_FILENAME])
def test_non_finite_weights_are_refused(filename: str, tmp_path: Path) -> None:
    """Issue 11, defect 6: NaN / inf weights used to load silently (the report then showed NMSE n/a)."""
    _, _, folder = saved("spade", tmp_path)
    _edit(folder / filename, "W_dec", float("nan"))
    with pytest.raises(SpadeLensError, match=f"{filename}': tensor 'W_dec' holds 1 NaN/inf value"):
        load_sae(folder)
