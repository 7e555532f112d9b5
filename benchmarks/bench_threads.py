"""SAE steps on 1 vs N torch threads, on a quiet machine and beside competing busy processes (issue 14).

Workloads (a ReLU and a TopK SAE, forward + backward + Adam, as the trainer steps): ``tiny`` (d_in 2, width 16,
batch 256: the size of the synthetic examples), ``default`` (d_in 128, width 256, batch 1,024: the SAE stage of
``spade-lens run``) and ``large`` (d_in 128, width 4,096, batch 4,096). Each is timed on 1 thread and on
``--threads`` (default: torch's own count), alternating, median of ``--repeats`` runs of ``--steps`` steps;
first with nothing else started, then with ``--busy`` processes spinning on the CPU (started and stopped by this
script). It prints ms per step, the ratio N-thread / 1-thread time (> 1: threads slow it down) and what
:func:`spade_lens.threads.default_threads` picks for each workload now.

    python benchmarks/bench_threads.py [--busy 2] [--steps 20] [--repeats 3]

On a machine shared with other work the "quiet" figures are not quiet: say so when quoting them.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time

import torch

from spade_lens.saes import create_sae
from spade_lens.threads import available_cores, default_threads, idle_cores

WORKLOADS = {"tiny": (2, 16, 256), "default": (128, 256, 1024), "large": (128, 4096, 4096)}  # d_in, width, batch


def spin(stop: mp.Event) -> None:  # type: ignore[valid-type]
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def make_step(arch: str, d_in: int, width: int, batch: int):
    sae = create_sae(arch, d_in=d_in, d_sae=width, seed=0, **({"k": min(8, width)} if arch == "topk" else {}))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    x = torch.randn(batch, d_in, generator=torch.Generator().manual_seed(0))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = sae(x)
        (out.mse_loss + out.sparsity_loss + out.aux_loss).backward()
        opt.step()
        sae.post_step()

    return step


def time_steps(step, steps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    step()  # warm-up at this thread count
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def measure(names: list[str], args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    out = {}
    for name in names:
        d_in, width, batch = WORKLOADS[name]
        steps = args.steps if name != "large" else max(2, args.steps // 10)
        for arch in ("relu", "topk"):
            step = make_step(arch, d_in, width, batch)
            one, many = [], []
            for r in range(args.repeats):  # alternate the order, so drifting load hits both alike
                pair = (1, args.threads) if r % 2 == 0 else (args.threads, 1)
                for n in pair:
                    (one if n == 1 else many).append(time_steps(step, steps, n))
            out[f"{name}/{arch}"] = (statistics.median(one), statistics.median(many))
    return out


def report(title: str, figures: dict[str, tuple[float, float]], threads: int) -> None:
    print(f"\n{title}")
    print(f"{'workload':<16} {'1 thread ms':>12} {f'{threads} threads ms':>14} {f'{threads}/1 time':>12}")
    for name, (one, many) in figures.items():
        print(f"{name:<16} {one * 1e3:>12.2f} {many * 1e3:>14.2f} {many / one:>11.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=available_cores(), help="the N of 1 vs N (default: the cores)")
    p.add_argument("--busy", type=int, default=available_cores(),
                   help="competing busy processes in the second round (default: one per core)")
    p.add_argument("--steps", type=int, default=20, help="steps per timing (a tenth of it for 'large')")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workloads", default="tiny,default,large")
    args = p.parse_args()
    if args.threads < 2:
        p.error(f"--threads: received {args.threads}; expected at least 2 (it is compared with 1 thread)")
    names = [w for w in args.workloads.split(",") if w]
    print(f"torch {torch.__version__}; cores {available_cores()}, compared: 1 vs {args.threads} threads, "
          f"idle cores by the load average now {idle_cores():.1f}")
    for name in names:
        d_in, width, batch = WORKLOADS[name]
        print(f"default_threads for {name} (d_in {d_in}, width {width}, batch {batch}): "
              f"{default_threads(batch * d_in * width)}")
    report("no competing process started (other users of the machine, if any, still run)", measure(names, args),
           args.threads)
    stop = mp.Event()
    procs = [mp.Process(target=spin, args=(stop,), daemon=True) for _ in range(args.busy)]
    for proc in procs:
        proc.start()
    try:
        time.sleep(0.5)
        report(f"with {args.busy} busy processes started by this benchmark", measure(names, args), args.threads)
    finally:
        stop.set()
        for proc in procs:
            proc.join()


if __name__ == "__main__":
    main()
