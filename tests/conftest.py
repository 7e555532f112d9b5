"""Test-wide settings: offline (no hub, no W&B) and headless plotting. Deprecation noise of TransformerLens is filtered in pyproject."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory):
    """A tiny random BERT (encoder only, as MiniLM ships) in Hugging Face format, tokenizer for the `real` grammar."""
    from _hf_helpers import make_bert_dir

    return make_bert_dir(tmp_path_factory.mktemp("hf") / "tiny-bert")


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory):
    """A tiny random GPT-2 (GPT2LMHeadModel) in Hugging Face format with a byte-level BPE tokenizer."""
    from _hf_helpers import make_gpt2_dir

    return make_gpt2_dir(tmp_path_factory.mktemp("hf") / "tiny-gpt2")


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Commands set torch's thread count (``--threads`` or the default rule): give each test the count it started
    with back, so one test's choice never leaks into the next."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)
