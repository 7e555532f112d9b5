"""One training step (forward, backward, Adam) of SpaDE against TopK, ReLU and JumpReLU, same process.

Target (issue 5): one SpaDE step <= 1.5x one TopK step at d=128, width 4096, batch 4096 (float32, CPU by
default). Steps of the architectures are interleaved round-robin and the median of each is reported, so
machine load affects all alike. ``--naive`` adds the reference-style SpaDE step (cdist**2, full-sort
sparsemax, dense decoder) for comparison.

SpaDE runs with the default run's settings (``spade_lens.pipeline.SAE_DEFAULTS["spade"]``: KDS 0.03 and the
dead-prototype auxiliary loss, coefficient 30, lambda scale 0.1; ``--plain-spade`` for SpaDESAEConfig's defaults).
``--dead-fraction F`` marks that fraction of the latents dead (the same random ones for every architecture), so
TopK's AuxK and SpaDE's dead-prototype loss do their work as they do in training once latents die (issue 14's
target: SpaDE <= 1.2x TopK at widths 4,096 and 32,768).

Usage: python benchmarks/bench_spade_step.py [--d 128] [--width 4096] [--batch 4096] [--k 32] [--steps 5]
       [--dead-fraction 0.1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from spade_lens.saes import SAE, SpaDESAE, create_sae
from spade_lens.sparsemax import sparsemax_sort


def naive_spade_step(sae: SpaDESAE, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    """The reference implementation's step: cdist**2, full-sort sparsemax, dense decode."""
    opt.zero_grad(set_to_none=True)
    dist = torch.cdist(x, sae.prototypes).pow(2)
    z = sparsemax_sort(-sae.lambda_ * dist)
    loss = (z @ sae.W_dec - x).pow(2).sum(-1).mean() + sae.cfg.kds_coefficient * (z * dist).sum(-1).mean()
    loss.backward()
    opt.step()


def sae_step(sae: SAE, opt: torch.optim.Optimizer, x: torch.Tensor, dead: torch.Tensor | None) -> None:
    opt.zero_grad(set_to_none=True)
    out = sae(x, dead_mask=dead)
    (out.mse_loss + out.sparsity_loss + out.aux_loss).backward()
    opt.step()
    sae.post_step()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--width", type=int, default=4096)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--k", type=int, default=32, help="TopK's k")
    p.add_argument("--steps", type=int, default=5, help="timed steps per architecture (after 2 warm-up steps)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--archs", default="spade,topk,relu,jumprelu")
    p.add_argument("--naive", action="store_true", help="also time the naive reference SpaDE step")
    p.add_argument("--dead-fraction", type=float, default=0.0, help="fraction of latents marked dead (default 0)")
    p.add_argument("--plain-spade", action="store_true",
                   help="SpaDESAEConfig's defaults instead of the default run's SpaDE settings")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    # Clustered activations, normalised so E||x||^2 = d (as the SAEs see them after set_normalization).
    centres = torch.randn(64, args.d, generator=g)
    x = centres[torch.randint(0, 64, (args.batch,), generator=g)] + 0.5 * torch.randn(args.batch, args.d, generator=g)
    x = (x - x.mean(0)) / (x - x.mean(0)).pow(2).sum(-1).mean().div(args.d).sqrt()
    x = x.to(dev)
    from spade_lens.pipeline import SAE_DEFAULTS

    spade_kwargs = {} if args.plain_spade else dict(SAE_DEFAULTS["spade"])
    kwargs = {"topk": {"k": args.k}, "spade": spade_kwargs, "relu": {}, "jumprelu": {}}
    dead = torch.zeros(args.width, dtype=torch.bool)
    n_dead = round(args.dead_fraction * args.width)
    dead[torch.randperm(args.width, generator=torch.Generator().manual_seed(1))[:n_dead]] = True
    dead = dead.to(dev)
    names = [a for a in args.archs.split(",") if a]
    saes: dict[str, SAE] = {}
    for name in names:
        sae = create_sae(name, d_in=args.d, d_sae=args.width, seed=0, device=dev, **kwargs.get(name, {}))
        if isinstance(sae, SpaDESAE):
            sae.init_prototypes_from_data(x.cpu(), seed=0)
        saes[name] = sae
    jobs = {
        name: (lambda s=sae, o=torch.optim.Adam([q for q in sae.parameters() if q.requires_grad], lr=1e-3):
               sae_step(s, o, x, dead))
        for name, sae in saes.items()
    }
    if args.naive:
        naive = create_sae("spade", d_in=args.d, d_sae=args.width, seed=0, device=dev)
        naive.init_prototypes_from_data(x.cpu(), seed=0)
        opt_n = torch.optim.Adam([q for q in naive.parameters() if q.requires_grad], lr=1e-3)
        jobs["spade-naive"] = lambda: naive_spade_step(naive, opt_n, x)
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for rep in range(args.steps + 2):
        for name, job in jobs.items():
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            job()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if rep >= 2:
                times[name].append(time.perf_counter() - t0)
    print(f"torch {torch.__version__}, device {dev}, threads {torch.get_num_threads()}, d={args.d}, "
          f"width={args.width}, batch={args.batch}, TopK k={args.k}, dead latents {n_dead}; SpaDE {spade_kwargs}")
    print(f"MALLOC_MMAP_MAX_={os.environ.get('MALLOC_MMAP_MAX_', 'unset')} "
          f"MALLOC_TRIM_THRESHOLD_={os.environ.get('MALLOC_TRIM_THRESHOLD_', 'unset')}")
    if "spade" in saes:
        with torch.no_grad():
            l0 = (saes["spade"].encode(x) > 0).sum(-1).float()
        print(f"SpaDE L0 on the batch: mean {l0.mean():.1f}, min {l0.min():.0f}, max {l0.max():.0f}")
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, t in med.items():
        print(f"{name:12s} step: median {t * 1000:8.1f} ms  (min {min(times[name]) * 1000:.1f} ms)")
    if "spade" in med and "topk" in med:
        print(f"SpaDE / TopK = {med['spade'] / med['topk']:.2f} (target <= 1.2)")
    if "spade-naive" in med and "spade" in med:
        print(f"naive SpaDE / SpaDE = {med['spade-naive'] / med['spade']:.1f}x")


if __name__ == "__main__":
    main()
