"""Mixed precision for SAE training: step time with ``precision="bfloat16"`` (bfloat16 autocast) against float32.

For each architecture, ``train_saes`` runs ``--steps`` steps on the same batches in float32 and in bfloat16,
alternating (``--repeats`` pairs, after a warm-up of each); the median of the pairs' time ratios is printed, with
the loss of both after the same steps. It pays where bfloat16 matmuls are fast (GPUs; CPUs with AVX512-BF16 or
AMX: the line "CPU" says which of those flags this CPU has and what torch's CPU capability is).

    python benchmarks/bench_precision.py                                  # d_in 128, width 4096, batch 4096
    python benchmarks/bench_precision.py --d-in 512 --width 16384 --steps 5
    python benchmarks/bench_precision.py --device cuda --steps 50

Set ``--threads`` on a shared machine, and compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_sae_training import make_batches  # the same synthetic activations


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    fast = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{', '.join(fast) or 'no avx512_bf16/amx'}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}"


def run(arch: str, batches: list[torch.Tensor], args: argparse.Namespace, precision: str) -> tuple[float, float]:
    """(seconds, final loss) of ``args.steps`` steps of one SAE."""
    from spade_lens.saes import create_sae
    from spade_lens.training import SAETrainConfig, train_saes

    kwargs = {"topk": {"k": 32}, "relu": {"l1_coefficient": 0.01}}.get(arch, {})
    sae = create_sae(arch, d_in=args.d_in, d_sae=args.width, seed=0, device=args.device, **kwargs)
    cfg = SAETrainConfig(steps=args.steps, batch_size=args.batch, lr=1e-3, norm_batches=1, log_every=args.steps,
                         precision=precision)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    found = train_saes({arch: sae}, batches, cfg, progress=False)[arch]
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, found["loss"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="relu,topk,jumprelu,spade")
    p.add_argument("--d-in", type=int, default=128)
    p.add_argument("--width", type=int, default=4096)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = make_batches(args.steps, args.batch, args.d_in, args.device)
    print(f"device {args.device}, {torch.get_num_threads()} threads; CPU: {cpu_flags()}")
    print(f"d_in {args.d_in}, width {args.width}, batch {args.batch}, {args.steps} steps, {args.repeats} pairs")
    print(f"{'arch':<9} {'float32 ms/step':>16} {'bfloat16 ms/step':>17} {'speed-up':>9} {'loss rel. diff':>15}")
    for arch in args.arch.split(","):
        run(arch, batches[:2], argparse.Namespace(**{**vars(args), "steps": 2}), "float32")  # warm-up
        run(arch, batches[:2], argparse.Namespace(**{**vars(args), "steps": 2}), "bfloat16")
        ratios, full, half = [], [], []
        for i in range(args.repeats):
            order = ("float32", "bfloat16") if i % 2 == 0 else ("bfloat16", "float32")
            times = {}
            for precision in order:
                times[precision] = run(arch, batches, args, precision)
            full.append(times["float32"])
            half.append(times["bfloat16"])
            ratios.append(times["float32"][0] / times["bfloat16"][0])
        f32 = statistics.median(t for t, _ in full) / args.steps * 1e3
        b16 = statistics.median(t for t, _ in half) / args.steps * 1e3
        rel = abs(half[0][1] - full[0][1]) / abs(full[0][1])
        print(f"{arch:<9} {f32:>16.1f} {b16:>17.1f} {statistics.median(ratios):>8.2f}x {rel:>15.1e}")


if __name__ == "__main__":
    main()
