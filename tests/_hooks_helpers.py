"""Tiny models and sources shared by the hooks tests (random weights, CPU, built in milliseconds)."""

from __future__ import annotations

import warnings

import torch

D_VOCAB, N_CTX = 20, 16
HOOK = "blocks.0.hook_resid_post"


def tiny_ht(seed: int = 0):
    """A 2-layer HookedTransformer, d_model 16, random weights."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=N_CTX,
                                  d_vocab=D_VOCAB, act_fn="gelu", seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer(cfg).eval()


def tiny_bridge(seed: int = 0):
    """The same shape as :func:`tiny_ht`, built as a TransformerBridge with ``boot_native``."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge.bridge import TransformerBridge

    cfg = TransformerBridgeConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=N_CTX,
                                  d_vocab=D_VOCAB, act_fn="gelu", seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return TransformerBridge.boot_native(cfg).eval()


def coded_sequences(n: int = 12, seed: int = 0, min_len: int = 3, max_len: int = 12):
    """``n`` random variable-length id lists, and a label ``code = seq * 1000 + pos`` for every token."""
    gen = torch.Generator().manual_seed(seed)
    ids = [torch.randint(0, D_VOCAB, (int(torch.randint(min_len, max_len + 1, (1,), generator=gen)),),
                         generator=gen).tolist() for _ in range(n)]
    codes = [[s * 1000 + p for p in range(len(row))] for s, row in enumerate(ids)]
    return ids, codes


def coded_source(n: int = 12, seed: int = 0) -> dict:
    ids, codes = coded_sequences(n, seed)
    return {"input_ids": ids, "code": codes}


def coded_dataset(n: int = 12, seed: int = 0):
    """A datasets split like a pcfg corpus: input_ids, a ClassLabel sequence ``kind`` and ``code``."""
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    ids, codes = coded_sequences(n, seed)
    kinds = [[t % 3 for t in row] for row in ids]
    features = Features({"input_ids": Sequence(Value("int32")),
                         "kind": Sequence(ClassLabel(names=["a", "b", "c"])),
                         "code": Sequence(Value("int64"))})
    return Dataset.from_dict({"input_ids": ids, "kind": kinds, "code": codes}, features=features)


class FailingBatches:
    """An iterable of fixed batches that raises RuntimeError after ``fail_after`` of them (None: never)."""

    def __init__(self, batches: list, fail_after: int | None = None) -> None:
        self.batches, self.fail_after = batches, fail_after

    def __iter__(self):
        for i, batch in enumerate(self.batches):
            if self.fail_after is not None and i == self.fail_after:
                raise RuntimeError("source failed on purpose")
            yield batch


def padded_batches(n: int = 24, batch: int = 4, seed: int = 0) -> list[dict]:
    """The coded sequences as a list of padded tensor batches with attention masks (like a DataLoader)."""
    ids, codes = coded_sequences(n, seed)
    out = []
    for start in range(0, n, batch):
        rows = ids[start:start + batch]
        width = max(map(len, rows))
        t = torch.zeros(len(rows), width, dtype=torch.long)
        c = torch.full((len(rows), width), -1, dtype=torch.long)
        m = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            t[i, :len(row)] = torch.tensor(row)
            c[i, :len(row)] = torch.tensor(codes[start + i])
            m[i, :len(row)] = 1
        out.append({"input_ids": t, "code": c, "attention_mask": m})
    return out
