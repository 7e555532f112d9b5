"""Training on an activation cache larger than memory: peak RSS and throughput, streamed vs in memory.

Writes (once) a synthetic activation cache in the hooks format (``manifest.json`` + safetensors shards, read by
``hooks.ActivationCache`` as it is): ``--gib`` GiB of float32 rows of width ``--d`` (low-rank signal plus noise),
shards of ``--shard-rows`` rows. Then, each in a fresh process so its peak RSS is its own:

- ``stream``: ``train_saes`` over one whole epoch of ``cache.batches(hook, batch, shuffle=True)``, which reads
  shards in pieces (``hooks.cache.CHUNK_BYTES``) through a bounded shuffle buffer (``BUFFER_BYTES``);
- ``whole-shards``: the same with the reading of earlier versions (whole shards, a buffer of two shards);
- ``memory``: the same steps through the same shuffle buffer fed from rows already in memory (``--memory-gib``
  of them, epoch after epoch): the throughput the streamed run is compared with.

Runs alternate (stream, memory, stream, memory, ...) ``--repeats`` times; the ratio is the median of the pairs.
The first line says the peak RSS of the streamed run against the 1.5 GiB target. The cache may sit in the page
cache after it is written (it is not counted in a process's RSS); ``--drop-note`` only reminds of that.

    python benchmarks/bench_large_cache.py                       # 4 GiB cache, d 1024, width 256 ReLU SAE
    python benchmarks/bench_large_cache.py --gib 1 --steps 20    # a quick look
    python benchmarks/bench_large_cache.py --device cuda

Set ``OMP_NUM_THREADS`` / ``--threads`` on a shared machine, and compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HOOK = "blocks.0.hook_resid_post"
TARGET_GIB = 1.5


def write_synthetic_cache(folder: Path, gib: float, d: int, shard_rows: int, seed: int = 0) -> Path:
    """A cache of ``gib`` GiB of (rows, d) float32 activations in the hooks format (skipped if already there)."""
    from safetensors.torch import save_file

    from hooks.cache import (
        FORMAT,
        MANIFEST,
        VERSION,
        acts_path,
        labels_path,
        read_manifest,
        write_json_atomic,
    )

    n_rows = int(gib * 2**30) // (4 * d)
    n_shards = -(-n_rows // shard_rows)
    old = read_manifest(folder) if folder.is_dir() else None
    if old is not None and old.get("complete") and old["n_tokens"] == n_rows and old["dims"] == {HOOK: d}:
        return folder
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(64, d, generator=g) / 8
    manifest = {"format": FORMAT, "version": VERSION, "model": {"name": "synthetic", "class": "none"},
                "hook_names": [HOOK], "excluded_token_ids": [], "dtype": "torch.float32", "max_tokens": None,
                "source": None, "tokenizer": None, "dims": {HOOK: d}, "label_columns": ["pos"],
                "label_names": {"pos": ["a", "b", "c", "d"]}, "shards": [], "n_tokens": 0, "n_sequences": 0,
                "complete": False, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(n_shards):
        rows = min(shard_rows, n_rows - index * shard_rows)
        codes = torch.relu(torch.randn(rows, 64, generator=g)) * (torch.rand(rows, 64, generator=g) < 0.1)
        acts = codes @ basis + 0.05 * torch.randn(rows, d, generator=g) + 1.0
        start = index * shard_rows
        labels = {"token_id": torch.zeros(rows, dtype=torch.int64), "position": torch.arange(rows) % 16,
                  "seq_index": (start + torch.arange(rows)) // 16, "pos": codes[:, :4].argmax(1)}
        sizes = {}
        for path, tensors in ((acts_path(folder, HOOK, index), {"acts": acts}), (labels_path(folder, index), labels)):
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(tensors, path)
            sizes[path.relative_to(folder).as_posix()] = path.stat().st_size
        manifest["shards"].append({"index": index, "n_rows": rows, "seq_start": start // 16,
                                   "seq_stop": -(-(start + rows) // 16), "bytes": sizes})
        manifest["n_tokens"] += rows
        manifest["n_sequences"] = -(-(start + rows) // 16)
        print(f"  wrote shard {index + 1}/{n_shards}", end="\r", flush=True)
    manifest["complete"] = True
    write_json_atomic(folder / MANIFEST, manifest)
    print()
    return folder


def peak_rss() -> int:
    """This process's peak resident set in bytes (VmHWM: unlike ``ru_maxrss`` it does not carry over the parent's
    peak across fork and exec)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _old_batches(cache, batch: int, seed: int):
    """Earlier versions' reading: whole shards, a shuffle buffer of two of the largest shards."""
    from hooks import ShuffleBuffer

    order = torch.randperm(len(cache.shard_rows), generator=torch.Generator().manual_seed(seed)).tolist()
    capacity = max(2 * max(cache.shard_rows), 2 * batch)
    return iter(ShuffleBuffer(lambda: (cache.read_shard(HOOK, i) for i in order), capacity=capacity,
                              batch_size=batch, seed=seed))


def child(mode: str, args: argparse.Namespace) -> dict:
    """Train in this process; return its figures (peak RSS includes everything: torch, the SAE, the data)."""
    from hooks import ActivationCache, ShuffleBuffer
    from hooks.cache import BUFFER_BYTES
    from spade_lens.saes import create_sae
    from spade_lens.training import SAETrainConfig, train_saes

    torch.set_num_threads(args.threads)
    cache = ActivationCache(args.folder)
    steps = args.steps or cache.n_tokens // args.batch
    sae = create_sae("relu", d_in=cache.d_in, d_sae=args.width, seed=0, device=args.device)
    cfg = SAETrainConfig(steps=steps, batch_size=args.batch, lr=1e-3, log_every=max(steps, 1), norm_batches=2,
                         precision=args.precision)
    base_rss = peak_rss()
    if mode == "memory":
        n = min(int(args.memory_gib * 2**30) // (4 * cache.d_in), cache.n_tokens)
        held, have = [], 0  # the first n rows, in memory before training starts, in chunks as read from disk
        for index, rows in enumerate(cache.shard_rows):
            take = min(rows, n - have)
            held.append(cache.read_rows(HOOK, index, 0, take))
            have += take
            if have >= n:
                break
        capacity = max(min(2 * max(cache.shard_rows), BUFFER_BYTES // (4 * cache.d_in)), 2 * args.batch)

        def source():  # the same shuffle buffer as the streamed run, fed from memory (an epoch of n rows)
            return iter(ShuffleBuffer(held, capacity=capacity, batch_size=args.batch, seed=0))
    elif mode == "stream":
        def source():
            return cache.batches(HOOK, args.batch, shuffle=True, seed=0)
    else:
        def source():
            return _old_batches(cache, args.batch, seed=0)
    start = time.perf_counter()
    found = train_saes({"relu": sae}, source, cfg, progress=False)["relu"]
    seconds = time.perf_counter() - start
    return {"mode": mode, "steps": found["steps"], "tokens": found["tokens"], "seconds": seconds,
            "tokens_per_s": found["tokens"] / seconds, "peak_rss": peak_rss(), "rss_before_training": base_rss,
            "loss": found["loss"]}


def run_child(mode: str, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv, "--child", mode], capture_output=True, text=True,
                         check=False)
    if out.returncode:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", type=Path, default=Path("/tmp/spade-lens-bench-cache"), help="cache folder")
    p.add_argument("--gib", type=float, default=4.0, help="cache size in GiB (default 4)")
    p.add_argument("--d", type=int, default=1024, help="activation width (default 1024)")
    p.add_argument("--shard-rows", type=int, default=2**16, help="rows per shard (default 65536, harvest's)")
    p.add_argument("--width", type=int, default=256, help="SAE latents (default 256: the data path dominates)")
    p.add_argument("--batch", type=int, default=4096, help="rows per batch (default 4096)")
    p.add_argument("--steps", type=int, default=0, help="steps per run (default: one epoch of the cache)")
    p.add_argument("--memory-gib", type=float, default=1.0, help="rows held by the in-memory run (default 1 GiB)")
    p.add_argument("--repeats", type=int, default=2, help="stream/memory pairs (default 2)")
    p.add_argument("--skip-whole-shards", action="store_true", help="skip the earlier versions' reading")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or
                   torch.get_num_threads(), help="torch threads (default OMP_NUM_THREADS or torch's)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    argv = list(sys.argv[1:])
    print(f"cache: {args.gib} GiB of float32 rows, d {args.d}, shards of {args.shard_rows} rows -> {args.folder}")
    write_synthetic_cache(args.folder, args.gib, args.d, args.shard_rows)
    size = sum(f.stat().st_size for f in args.folder.rglob("*.safetensors"))
    print(f"cache on disk: {size / 2**30:.2f} GiB; {os.cpu_count()} CPUs, {args.threads} torch threads, device "
          f"{args.device}, relu SAE width {args.width}, batch {args.batch}, precision {args.precision}")
    runs: dict[str, list[dict]] = {"stream": [], "memory": [], "whole-shards": []}
    for _ in range(args.repeats):
        for mode in ("stream", "memory"):
            runs[mode].append(run_child(mode, argv))
            r = runs[mode][-1]
            print(f"  {mode:<12} {r['steps']:>5} steps {r['tokens']:>10,} rows  {r['seconds']:7.1f} s  "
                  f"{r['tokens_per_s']:>10,.0f} rows/s  peak RSS {r['peak_rss'] / 2**30:.2f} GiB")
    if not args.skip_whole_shards:
        r = run_child("whole-shards", argv)
        runs["whole-shards"].append(r)
        print(f"  {'whole-shards':<12} {r['steps']:>5} steps {r['tokens']:>10,} rows  {r['seconds']:7.1f} s  "
              f"{r['tokens_per_s']:>10,.0f} rows/s  peak RSS {r['peak_rss'] / 2**30:.2f} GiB")
    peak = max(r["peak_rss"] for r in runs["stream"])
    ratios = [s["tokens_per_s"] / m["tokens_per_s"] for s, m in zip(runs["stream"], runs["memory"], strict=True)]
    rows = runs["stream"][0]["tokens"]
    print(f"\nstreamed {rows:,} rows ({rows * 4 * args.d / 2**30:.2f} GiB) per run: peak RSS {peak / 2**30:.2f} GiB "
          f"(target < {TARGET_GIB} GiB: {'met' if peak < TARGET_GIB * 2**30 else 'NOT met'}); before training "
          f"{runs['stream'][0]['rss_before_training'] / 2**30:.2f} GiB")
    print(f"throughput streamed / in memory: {statistics.median(ratios):.2f} (pairs: "
          f"{', '.join(f'{r:.2f}' for r in ratios)})")
    if runs["whole-shards"]:
        print(f"earlier versions' reading (whole shards, 2-shard buffer): peak RSS "
              f"{runs['whole-shards'][0]['peak_rss'] / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
