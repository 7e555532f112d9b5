"""Distributed SAE training: N ranks (torch.distributed) against one process on the combined batches.

The four architectures train side by side (SpaDE with k-means++ init, resampling and its dead-prototype loss;
TopK with AuxK on a short dead window, so every data-dependent step is exercised) for ``--steps`` steps on
batches of ``--batch`` rows: once on ``--ranks`` processes, rank r getting its share of every batch (gloo on the
CPU; NCCL with one GPU per rank, ``--device cuda``), and once in one process on the combined batches. Printed:
the largest weight difference of each SAE (absolute, and relative to the largest weight), the verdict against
the target "N ranks = one process with the combined batch" (differences at float rounding: below 1e-4 of the
weights' size), and the time per step of the N ranks against one process with ``--threads`` threads and with
N x ``--threads`` threads (the same CPU cores).

    python benchmarks/bench_distributed.py                        # 2 gloo ranks on the CPU
    python benchmarks/bench_distributed.py --device cuda --ranks 2

A shared machine makes the times noisy; the equality is what the target is about.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

ARCHS = {
    "relu": {"l1_coefficient": 0.01},
    "topk": {"k": 8},
    "jumprelu": {},
    "spade": {"init": "kmeans++", "resample_every": 5, "resample_until": 1.0, "dead_aux_coefficient": 1.0},
}
TOLERANCE = 1e-4


def make_data(args: argparse.Namespace) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(32, args.d_in, generator=g) / 4
    out = []
    for _ in range(args.steps):
        codes = torch.relu(torch.randn(args.batch, 32, generator=g)) * (torch.rand(args.batch, 32, generator=g) < 0.2)
        out.append(codes @ basis + 0.05 * torch.randn(args.batch, args.d_in, generator=g) + 1.0)
    return out


def train(batches: list[torch.Tensor], args: argparse.Namespace, device: str) -> tuple[dict, float]:
    """(name -> state dict on the CPU, seconds of training)."""
    from spade_lens.saes import create_sae
    from spade_lens.training import SAETrainConfig, train_saes

    saes = {a: create_sae(a, d_in=args.d_in, d_sae=args.width, seed=0, device=device, **kw) for a, kw in ARCHS.items()}
    cfg = SAETrainConfig(steps=args.steps, batch_size=args.batch, lr=3e-3, dead_window_tokens=2 * args.batch,
                         norm_batches=2, log_every=args.steps)
    start = time.perf_counter()
    train_saes(saes, batches, cfg, progress=False)
    seconds = time.perf_counter() - start
    return {n: {k: v.detach().cpu() for k, v in s.state_dict().items()} for n, s in saes.items()}, seconds


def _rank(rank: int, args: argparse.Namespace, folder: str) -> None:
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(rank)
    torch.distributed.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{folder}/rendezvous",
                                         rank=rank, world_size=args.ranks)
    try:
        mine = [b[b.shape[0] * rank // args.ranks:b.shape[0] * (rank + 1) // args.ranks] for b in make_data(args)]
        device = f"cuda:{rank}" if cuda else "cpu"
        states, seconds = train([b.to(device) for b in mine], args, device)
        if rank == 0:
            torch.save({"states": states, "seconds": seconds}, Path(folder) / "ranks.pt")
    finally:
        torch.distributed.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--d-in", type=int, default=64)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--batch", type=int, default=2048, help="rows of a combined batch")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (default 1)")
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per rank)")
    args = p.parse_args()
    if args.device.startswith("cuda") and torch.cuda.device_count() < args.ranks:
        print(f"skipped: --device cuda needs one GPU per rank ({args.ranks}), this machine has "
              f"{torch.cuda.device_count()}")
        return
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    print(f"{args.ranks} ranks ({'NCCL' if args.device.startswith('cuda') else 'gloo'}, {args.threads} thread(s) "
          f"each) vs 1 process; d_in {args.d_in}, width {args.width}, combined batch {args.batch}, {args.steps} steps, "
          f"{len(ARCHS)} SAEs side by side; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_rank, args=(args, folder), nprocs=args.ranks, join=True)
        ranks = torch.load(Path(folder) / "ranks.pt", weights_only=False)
    data = make_data(args)
    device = "cuda:0" if args.device.startswith("cuda") else "cpu"
    torch.set_num_threads(args.threads)
    single, one_thread = train([b.to(device) for b in data], args, device)
    torch.set_num_threads(args.threads * args.ranks)
    _, all_threads = train([b.to(device) for b in data], args, device)
    worst = 0.0
    print(f"\n{'sae':<9} {'max |ranks - one|':>18} {'relative':>10}")
    for name, state in single.items():
        diff = max(float((ranks["states"][name][k] - v).abs().max()) for k, v in state.items())
        size = max(float(v.abs().max()) for v in state.values())
        worst = max(worst, diff / size)
        print(f"{name:<9} {diff:>18.2e} {diff / size:>10.2e}")
    verdict = "met" if worst < TOLERANCE else "NOT met"
    print(f"\n{args.ranks} ranks = 1 process on the combined batches (relative difference < {TOLERANCE:g}): {verdict} "
          f"(largest {worst:.1e})")
    print(f"time per step: {args.ranks} ranks {ranks['seconds'] / args.steps * 1e3:.0f} ms; 1 process, "
          f"{args.threads} thread(s) {one_thread / args.steps * 1e3:.0f} ms; 1 process, "
          f"{args.threads * args.ranks} threads {all_threads / args.steps * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
