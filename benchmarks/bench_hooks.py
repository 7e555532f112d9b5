"""Benchmark of the hooks package (issue 4 targets), ratios measured in one run.

1. Capture throughput vs the bare ``model(tokens, stop_at_layer=L+1)`` forward on the same batches, for a model
   of the default shape (2 layers, d_model 128, 2 heads, d_mlp 512, d_vocab 70, n_ctx 64; random weights) at
   ``blocks.0.hook_resid_post``. Target: ratio >= 0.9. Also for the same shape as a TransformerBridge.
2. Reading the on-disk cache (shuffled, one epoch) vs recomputing the activations. Target: >= 5x.

Timings alternate the contenders (batch by batch for capture vs bare) and report the ratio of the medians of
several repeats and of the best times; on a shared, loaded machine they are noisy.

    HF_HUB_OFFLINE=1 python benchmarks/bench_hooks.py [--batches 40] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch
from datasets import Dataset

from hooks import capture_activations, harvest

HOOK = "blocks.0.hook_resid_post"
SHAPE = dict(n_layers=2, d_model=128, n_heads=2, d_head=64, d_mlp=512, n_ctx=64, d_vocab=70, act_fn="gelu", seed=0)


def build(kind: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if kind == "HookedTransformer":
            from transformer_lens import HookedTransformer, HookedTransformerConfig

            return HookedTransformer(HookedTransformerConfig(**SHAPE)).eval()
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge.bridge import TransformerBridge

        return TransformerBridge.boot_native(TransformerBridgeConfig(**SHAPE)).eval()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bare(model, batches: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for tokens in batches:
            model(tokens, stop_at_layer=1)


def capture(model, source, batch_size: int) -> int:
    labels = None if isinstance(source, Dataset) else []
    return sum(len(b) for b in capture_activations(model, source, [HOOK], batch_size=batch_size,
                                                   label_columns=labels))


def interleaved(model, source, batches: list[torch.Tensor], batch_size: int) -> tuple[float, float]:
    """Seconds for the bare forwards and for capture, batch by batch in alternating order (same load)."""
    labels = None if isinstance(source, Dataset) else []
    stream = capture_activations(model, source, [HOOK], batch_size=batch_size, label_columns=labels)
    t_bare = t_cap = 0.0
    for i, batch in enumerate(batches):
        for step in ((0, 1) if i % 2 else (1, 0)):
            if step == 0:
                t_bare += timed(lambda b=batch: bare(model, [b]))
            else:
                t_cap += timed(lambda: next(stream))
    return t_bare, t_cap


def forward_share(model, source, batch_size: int) -> float:
    """Fraction of capture's wall time spent inside ``model.forward`` (1.0 = no overhead); robust to load."""
    inside = [0.0, 0.0]  # [start of the current forward, total seconds inside]
    pre = model.register_forward_pre_hook(lambda *_: inside.__setitem__(0, time.perf_counter()))
    post = model.register_forward_hook(
        lambda *_: inside.__setitem__(1, inside[1] + time.perf_counter() - inside[0]))
    try:
        total = timed(lambda: capture(model, source, batch_size))
    finally:
        pre.remove(), post.remove()
    return inside[1] / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="forward batches per timing")
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per batch")
    parser.add_argument("--seq-len", type=int, default=32, help="tokens per sequence")
    parser.add_argument("--repeats", type=int, default=5, help="timings per contender (median kept)")
    parser.add_argument("--parts", default="models,datasets,cache",
                        help="which timings, comma-separated: models (tensor source, HookedTransformer and bridge), "
                        "datasets (a datasets split with labels), cache (reading the cache)")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, SHAPE["d_vocab"], (args.batches * args.batch_size, args.seq_len), generator=gen)
    batches = list(tokens.split(args.batch_size))
    n_tok = tokens.numel()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.batches} batches of "
          f"{args.batch_size} x {args.seq_len} tokens ({n_tok} tokens), hook {HOOK}")

    parts = set(args.parts.split(","))
    for kind in ("HookedTransformer", "TransformerBridge") if "models" in parts else ():
        model = build(kind)
        bare(model, batches[:2]), capture(model, tokens[: 2 * args.batch_size], args.batch_size)  # warm up
        t_bare, t_cap = [], []
        for _ in range(args.repeats):
            b, c = interleaved(model, tokens, batches, args.batch_size)
            t_bare.append(b), t_cap.append(c)
        b, c = statistics.median(t_bare), statistics.median(t_cap)
        ratios = sorted(x / y for x, y in zip(t_bare, t_cap, strict=True))
        share = statistics.median(forward_share(model, tokens, args.batch_size) for _ in range(args.repeats))
        print(f"[{kind}] bare forward {n_tok / b:,.0f} tok/s | capture {n_tok / c:,.0f} tok/s | "
              f"capture/bare ratio {b / c:.3f} of medians, {min(t_bare) / min(t_cap):.3f} of best times "
              f"(target >= 0.9; per-repeat {', '.join(f'{r:.2f}' for r in ratios)}) | share of capture time "
              f"inside model.forward {share:.3f}")

    model = build("HookedTransformer")  # a datasets split of variable-length rows with a label column
    if "datasets" in parts:
        datasets_split(model, tokens, gen, args)
    if "cache" in parts:
        cache_read(model, tokens, args)


def datasets_split(model, tokens: torch.Tensor, gen: torch.Generator, args: argparse.Namespace) -> None:
    lengths = torch.randint(args.seq_len // 4, args.seq_len + 1, (len(tokens),), generator=gen).tolist()
    rows = [t[:n].tolist() for t, n in zip(tokens, lengths, strict=True)]
    split = Dataset.from_dict({"input_ids": rows, "pos": [[i % 6 for i in r] for r in rows]})
    padded = [torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in rows[i:i + args.batch_size]],
                                              batch_first=True) for i in range(0, len(rows), args.batch_size)]
    n_rows = sum(lengths)
    bare(model, padded[:2])
    t_bare, t_cap = [], []
    for _ in range(args.repeats):
        b, c = interleaved(model, split, padded, args.batch_size)
        t_bare.append(b), t_cap.append(c)
    b, c = statistics.median(t_bare), statistics.median(t_cap)
    share = statistics.median(forward_share(model, split, args.batch_size) for _ in range(args.repeats))
    print(f"[HookedTransformer, datasets split, {n_rows} tokens incl. reading/padding rows and labels] bare "
          f"forward on pre-padded batches {n_rows / b:,.0f} tok/s | capture {n_rows / c:,.0f} tok/s | ratio "
          f"{b / c:.3f} of medians, {min(t_bare) / min(t_cap):.3f} of best times | share of capture time inside "
          f"model.forward {share:.3f}")


def cache_read(model, tokens: torch.Tensor, args: argparse.Namespace) -> None:
    n_tok = tokens.numel()
    with tempfile.TemporaryDirectory() as tmp:
        cache = harvest(model, tokens, [HOOK], f"{tmp}/cache", shard_tokens=2**14, batch_size=args.batch_size,
                        label_columns=[], progress=False)
        read_bs = 4096
        sum(len(b) for b in cache.batches(HOOK, read_bs))  # warm up (page cache)
        t_read, t_plain, t_comp = [], [], []
        for _ in range(args.repeats):
            t_read.append(timed(lambda: sum(len(b) for b in cache.batches(HOOK, read_bs, seed=1))))
            t_plain.append(timed(lambda: sum(len(b) for b in cache.batches(HOOK, read_bs, shuffle=False))))
            t_comp.append(timed(lambda: capture(model, tokens, args.batch_size)))
        r, p, c = (statistics.median(t) for t in (t_read, t_plain, t_comp))
        print(f"[cache] {cache.n_tokens} rows in {len(cache.shard_rows)} shards | shuffled read {n_tok / r:,.0f} "
              f"tok/s | in-order read {n_tok / p:,.0f} tok/s | recompute (capture) {n_tok / c:,.0f} tok/s | "
              f"shuffled read / recompute ratio {c / r:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
