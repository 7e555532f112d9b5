"""Sparsemax forward+backward: partial top-k (spade_lens.sparsemax) vs the plain full-sort implementation.

Target (issue 5): >= 8x faster at batch 4096, width 16384, float32, supports of a few dozen, with peak memory at
most 3 batch x width tensors. Both are timed in this process, one after the other; the peak extra resident
memory of each is read from the kernel's high-water mark (VmHWM, reset before the call).

Usage: python benchmarks/bench_sparsemax.py [--batch 4096] [--width 16384] [--repeats 2] [--scale 0.115]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from spade_lens.sparsemax import sparsemax, sparsemax_sort


def make_input(batch: int, width: int, std: float, seed: int = 0) -> torch.Tensor:
    """(batch, width) N(0, std^2) values, filled in place (no temporary of the same size)."""
    x = torch.empty(batch, width)
    x.normal_(0.0, std, generator=torch.Generator().manual_seed(seed))
    return x


def step(fn, x: torch.Tensor, grad: torch.Tensor) -> None:
    xr = x.detach().requires_grad_(True)
    out = fn(xr)
    out.backward(grad)


def time_fn(fn, x: torch.Tensor, grad: torch.Tensor, repeats: int) -> float:
    step(fn, x, grad)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if x.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(fn, x, grad)
        if x.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def peak_extra(fn, x: torch.Tensor, grad: torch.Tensor) -> float | None:
    if x.is_cuda:
        step(fn, x[:8], grad[:8])
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(fn, x, grad)
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - before)
    return _peak_extra_cpu(fn, x, grad)


def _peak_extra_cpu(fn, x: torch.Tensor, grad: torch.Tensor) -> float | None:
    """Peak resident memory (bytes) of one fwd+bwd above what was resident before it; None if not measurable.

    Resets the kernel's high-water mark (``echo 5 > /proc/self/clear_refs``, Linux) and reads ``VmHWM``.
    """
    try:
        step(fn, x[:8], grad[:8])
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_kib("VmRSS")
        step(fn, x, grad)
        return (_status_kib("VmHWM") - before) * 1024.0
    except OSError:
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--width", type=int, default=16384)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--scale", type=float, default=0.115, help="std of the N(0, std^2) inputs (0.115: supports ~30)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    b, n = args.batch, args.width
    x = make_input(b, n, args.scale).to(args.device)
    grad = make_input(b, n, 1.0, seed=1).to(args.device)
    with torch.no_grad():
        ref = sparsemax_sort(x)
        fast = sparsemax(x)
    support = (ref > 0).sum(-1).float()
    print(f"torch {torch.__version__}, device {x.device}, threads {torch.get_num_threads()}, batch {b}, width {n}, "
          "float32")
    print(f"MALLOC_MMAP_MAX_={os.environ.get('MALLOC_MMAP_MAX_', 'unset')} "
          f"MALLOC_TRIM_THRESHOLD_={os.environ.get('MALLOC_TRIM_THRESHOLD_', 'unset')}")
    print(f"support size: mean {support.mean():.1f}, min {support.min():.0f}, max {support.max():.0f}")
    print(f"max |fast - reference| = {(fast - ref).abs().max().item():.2e}")
    t_sort = time_fn(sparsemax_sort, x, grad, args.repeats)
    t_fast = time_fn(sparsemax, x, grad, args.repeats)
    print(f"full sort  fwd+bwd: {t_sort * 1000:8.1f} ms")
    print(f"top-k      fwd+bwd: {t_fast * 1000:8.1f} ms")
    print(f"speed-up: {t_sort / t_fast:.1f}x (target >= 8x)")
    tensor_bytes = b * n * 4
    for name, fn in (("top-k", sparsemax), ("sort", sparsemax_sort)):
        extra = peak_extra(fn, x, grad)
        if extra is None:
            print(f"peak extra memory {name}: not measurable here (/proc/self/clear_refs unavailable)")
            continue
        print(f"peak extra memory {name:5s}: {extra / 2**20:8.0f} MiB = {extra / tensor_bytes:.2f} batch x width "
              f"tensors (target for top-k: <= 3; input and upstream gradient excluded)")


if __name__ == "__main__":
    main()
