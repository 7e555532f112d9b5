"""Training throughput: spade-lens' trainer against SAELens' ``SAETrainer`` on the same activations and shapes.

For relu, topk and jumprelu (SAELens: standard, topk, jumprelu training SAEs), both trainers run the same
number of steps on the same list of (batch, d_in) activation batches in this process, back to back (who goes
first alternates), after a warm-up run of each; the best of ``--repeats`` timings of each is kept, and the
median ratio of the back-to-back pairs is printed too. Each side does what its training loop does per
step: forward, loss, backward, grad-norm clip at 1, Adam step, dead-latent bookkeeping (spade-lens also checks
finiteness and estimates the normalisation from the first batch; SAELens keeps activations unnormalised,
its default). SpaDE is timed on our trainer only (SAELens has no SpaDE).

Matched settings: Adam lr 1e-3 with cosine decay to 1e-5 on both, TopK k = 32 on both with ``rescale_acts_by_decoder_norm=False`` and dense activations (SAELens defaults
otherwise), JumpReLU threshold 0.01 / bandwidth 0.05 / step L0 loss on both. No latent is dead within the few
steps timed, so TopK's AuxK term is zero on both sides.

    python benchmarks/bench_sae_training.py                      # d_in 128, width 4096, batch 4096, CPU
    python benchmarks/bench_sae_training.py --device cuda --steps 50

Figures on a shared CPU are noisy: compare the ratios of one run, not absolute figures across runs.

Memory: while ``train_saes`` runs with (batch, d_sae) temporaries of 32 MiB or more, glibc keeps freed blocks for
reuse (``spade_lens.training.memory``); SAELens' trainer runs with glibc's defaults. To give both the same policy,
run with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647`` in the environment (glibc reads them at start,
and ours then leaves the policy alone); ``SPADE_LENS_MALLOC=default`` turns ours off.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # SAELens' fit() always shows a bar
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402


def make_batches(n: int, batch: int, d_in: int, device: str, seed: int = 0) -> list[torch.Tensor]:
    """Sparse non-negative codes over a random dictionary, plus noise and a common offset."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(512, d_in, generator=g) / d_in**0.5
    out = []
    for _ in range(n):
        codes = torch.rand(batch, 512, generator=g).lt(0.03).float() * torch.rand(batch, 512, generator=g) * 3
        out.append((codes @ dictionary + 0.05 * torch.randn(batch, d_in, generator=g) + 0.5).to(device))
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Timer:
    """Wall-clock and process CPU seconds of a block (CPU time is robust to other processes on a shared box,
    as long as torch's threads do not spin: use --threads 1 there)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.times = (0.0, 0.0)

    def __enter__(self) -> Timer:
        sync(self.device)
        self.start = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc: object) -> None:
        sync(self.device)
        self.times = (time.perf_counter() - self.start[0], time.process_time() - self.start[1])


def time_ours(arch: str, batches: list[torch.Tensor], args: argparse.Namespace) -> tuple[float, float]:
    from spade_lens.saes import create_sae
    from spade_lens.training import SAETrainConfig, train_saes

    kwargs = {"topk": {"k": args.k}}.get(arch, {})
    sae = create_sae(arch, d_in=args.d_in, d_sae=args.width, seed=0, device=args.device, **kwargs)
    cfg = SAETrainConfig(steps=len(batches), batch_size=args.batch, lr=1e-3, norm_batches=1, log_every=10**9)
    with Timer(args.device) as timer:
        train_saes({arch: sae}, batches, cfg, progress=False)
    return timer.times


def time_saelens(arch: str, batches: list[torch.Tensor], args: argparse.Namespace) -> tuple[float, float]:
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    common = {"d_in": args.d_in, "d_sae": args.width, "device": args.device}
    if arch == "relu":
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(**common, l1_coefficient=1.0))
    elif arch == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(**common, k=args.k, aux_loss_coefficient=1 / 32,
                                                    rescale_acts_by_decoder_norm=False))
    else:
        sae = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(**common, jumprelu_init_threshold=0.01,
                                                            jumprelu_bandwidth=0.05, l0_coefficient=1.0))
    cfg = SAETrainerConfig(
        total_training_samples=len(batches) * args.batch, train_batch_size_samples=args.batch, lr=1e-3,
        lr_end=1e-5, lr_scheduler_name="cosineannealing", lr_decay_steps=len(batches), device=args.device, logger=LoggingConfig(log_to_wandb=False),
    )
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=iter(batches))
    with Timer(args.device) as timer:
        trainer.fit()
    return timer.times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-in", type=int, default=128)
    p.add_argument("--width", type=int, default=4096)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--steps", type=int, default=8, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2, help="steps of the untimed warm-up run of each trainer")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per trainer (best kept)")
    p.add_argument("--archs", default="relu,topk,jumprelu")
    p.add_argument("--no-spade", action="store_true", help="skip timing SpaDE on our trainer")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    p.add_argument("--ours-only", action="store_true", help="time spade-lens only (no sae_lens needed)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.ours_only:
        version = "not used"
    else:
        import sae_lens

        version = sae_lens.__version__
    print(f"torch {torch.__version__}, sae_lens {version}, device {args.device}, "
          f"threads {torch.get_num_threads()}; d_in {args.d_in}, width {args.width}, batch {args.batch}, "
          f"k {args.k}, {args.steps} timed steps x best of {args.repeats}")
    glibc = {k: os.environ[k] for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_") if k in os.environ}
    print(f"glibc malloc environment (both trainers): {glibc or 'defaults'}; SPADE_LENS_MALLOC="
          f"{os.environ.get('SPADE_LENS_MALLOC', 'unset')}")
    batches = make_batches(args.steps, args.batch, args.d_in, args.device)
    warm = batches[: args.warmup]
    tokens = args.steps * args.batch
    print(f"{'arch':<10} {'ours tok/s':>11} {'SAELens tok/s':>14} {'ratio':>6} {'paired':>7} "
          f"{'ours tok/cpu-s':>15} {'SAELens tok/cpu-s':>18} {'cpu ratio':>10}")
    for arch in [a for a in args.archs.split(",") if a] if not args.ours_only else []:
        time_ours(arch, warm, args)
        time_saelens(arch, warm, args)
        ours, theirs = [], []
        for r in range(args.repeats):  # alternate who goes first, so load drift hits both alike
            if r % 2 == 0:
                ours.append(time_ours(arch, batches, args))
                theirs.append(time_saelens(arch, batches, args))
            else:
                theirs.append(time_saelens(arch, batches, args))
                ours.append(time_ours(arch, batches, args))
        wall_o, wall_t = min(o[0] for o in ours), min(t[0] for t in theirs)
        cpu_o, cpu_t = min(o[1] for o in ours), min(t[1] for t in theirs)
        paired = statistics.median(t[0] / o[0] for o, t in zip(ours, theirs, strict=True))
        print(f"{arch:<10} {tokens / wall_o:>11,.0f} {tokens / wall_t:>14,.0f} {wall_t / wall_o:>5.2f}x "
              f"{paired:>6.2f}x {tokens / cpu_o:>15,.0f} {tokens / cpu_t:>18,.0f} {cpu_t / cpu_o:>9.2f}x",
              flush=True)
    alone = ([a for a in args.archs.split(",") if a] if args.ours_only else []) + ([] if args.no_spade else ["spade"])
    for arch in alone:
        time_ours(arch, warm, args)
        runs = [time_ours(arch, batches, args) for _ in range(args.repeats)]
        print(f"{arch:<10} {tokens / min(r[0] for r in runs):>11,.0f} {'-':>14} {'-':>6} {'-':>7} "
              f"{tokens / min(r[1] for r in runs):>15,.0f} {'-':>18} {'-':>10}", flush=True)
    print("ratio = best ours / best SAELens tokens per wall second; paired = median ratio of back-to-back runs; "
          "cpu ratio = the same per process-CPU second (>= 1: ours at least as fast)")


if __name__ == "__main__":
    main()
