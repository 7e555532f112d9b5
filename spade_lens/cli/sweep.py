"""``spade-lens sweep``: a grid of SAE settings x seeds on one activation set, with mean +- sd over seeds, Pareto
figures and the leader of each L0 band (see :mod:`spade_lens.sweep`). Under ``torchrun --nproc-per-node N`` every
training pass runs on the N processes together; rank 0 probes and writes the results and the report."""

from __future__ import annotations

import argparse
import json

from spade_lens.threads import add_threads_option

# The grid without --arch: five settings per architecture spanning L0 about 1 to 40 on the default run's
# activations (chosen from the sweeps in the README), for the four architectures.
DEFAULT_ARCHS: tuple[str, ...] = (
    "relu:l1_coefficient=10,5,1,0.5,0.1",
    "topk:k=1,4,8,16,32",
    "jumprelu:init_threshold=4,0.5,0.2,0.13,0.08",
    "spade:kds_coefficient=30,3,0.3,0.03,0.003",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="train a grid of SAE settings x seeds and report F1 / NMSE / dead latents against L0",
        description="Train every setting of a grid (architectures x settings x seeds) on one activation cache, "
        "the settings of each seed side by side on the same batches; probe each on held-out activations (the "
        "first --probe-tokens tokens and a balanced draw of --balanced tokens per concept); write one SAE folder "
        "and one result per setting, sweep.json (mean and sd over seeds) and report/ (Pareto figures and which "
        "architecture leads in each L0 band) into OUT. Rerunning skips finished settings and resumes an "
        "interrupted pass.",
    )
    p.add_argument("--activations", required=True, metavar="DIR",
                   help="training activation cache, or a run's activations/ folder holding train/ and validation/")
    p.add_argument("--eval-activations", default=None, metavar="DIR",
                   help="held-out activation cache to probe on (default: validation/ beside train/)")
    p.add_argument("--arch", action="append", default=None, metavar="ARCH[:KEY=V1,V2,...]",
                   help="an architecture and its grid, e.g. spade:kds_coefficient=0.01,0.1 or topk:k=1,4,16 "
                   "(several KEY=... give their product; lr_scale=... sets a per-setting learning-rate factor); "
                   "repeat for several architectures (default: " + " ".join(DEFAULT_ARCHS) + ")")
    p.add_argument("--seeds", default="0,1,2", help="seeds, e.g. 0,1,2 or 0-4 (default: 0,1,2)")
    p.add_argument("--width", type=int, default=256, help="latents per SAE (default: 256)")
    p.add_argument("--steps", type=int, default=2000, help="training steps per SAE (default: 2000)")
    p.add_argument("--batch-size", type=int, default=1024, help="activations per batch (default: 1024)")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="peak learning rate (default: 1e-3; SpaDE trains at 10x, as in spade-lens run)")
    p.add_argument("--probe-tokens", type=int, default=50_000,
                   help="held-out tokens of the full-stream probe (default: 50000)")
    p.add_argument("--balanced", type=int, default=1000,
                   help="tokens per concept of the balanced probe; 0 turns it off (default: 1000)")
    p.add_argument("--label", default="pos", help="label column naming the concepts (default: pos)")
    p.add_argument("--hook", default=None, help="hook to read (default: the cache's only hook)")
    p.add_argument("--device", default=None,
                   help="torch device (default: cuda if available, else cpu; under torchrun each rank takes the GPU "
                   "of its LOCAL_RANK)")
    add_threads_option(p, "1 for small SAEs, else torch's own, one per core")
    p.add_argument("--jobs", type=int, default=1,
                   help="training processes at once, each with its share of the CPU threads (each seed's settings "
                   "are dealt into JOBS parts); the same SAEs as with 1 (default: 1; 2 on a 2-core CPU)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep folder (created or continued)")
    p.set_defaults(func=run)


def _d_in(args: argparse.Namespace) -> int | None:
    """Width of the training activations (for the default thread count), None when the folder cannot tell."""
    from pathlib import Path

    root = Path(args.activations)
    for folder in (root, root / "train"):
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        dims = manifest.get("dims") if isinstance(manifest, dict) else None
        if isinstance(dims, dict) and dims and all(isinstance(d, int) for d in dims.values()):
            return max(dims.values())
    return None


def run(args: argparse.Namespace) -> int:
    from hooks.distributed import ranks
    from spade_lens.devices import check_device
    from spade_lens.sweep import SweepConfig, expand_grid, parse_arch_spec, parse_seeds, run_sweep
    from spade_lens.sweep.report import bands_table, headline_view
    from spade_lens.threads import apply_threads, check_threads
    from spade_lens.training.distributed import init_distributed

    d_in = _d_in(args)
    apply_threads(check_threads(args.threads), work=None if d_in is None else args.batch_size * d_in * args.width)
    grids = [parse_arch_spec(text) for text in (args.arch or DEFAULT_ARCHS)]
    settings = expand_grid(grids, parse_seeds(args.seeds))
    cfg = SweepConfig(width=args.width, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      probe_tokens=args.probe_tokens, balanced_per_concept=args.balanced, label=args.label)
    check_device(args.device, "--device")
    device = init_distributed(args.device)  # joins the torchrun group, if any; this rank's device
    main = ranks()[0] == 0
    result = run_sweep(args.activations, settings, cfg, out=args.out, eval_activations=args.eval_activations,
                       hook=args.hook, device=device, progress=not args.no_progress, plots=not args.no_plots,
                       jobs=args.jobs, say=print if main else lambda _: None)
    if not main:  # rank 0 probes and reports
        return 0
    summary = {"config": cfg.to_dict(), "bands": result.bands}
    view = headline_view(summary)
    archs = sorted({p["arch"] for p in result.points})
    for ev, by_view in result.bands.items():
        print(f"\nmean best-latent F1 by L0 band ({ev}, view {view}):")
        print(bands_table(by_view[view], archs))
    if result.group_bands:
        print(f"\nmean group F1 by L0 band (balanced, view {view}):")
        print(bands_table(result.group_bands[view], archs))
    print(f"\ntrained {len(result.trained)} of {len(settings)} settings; sweep.json: {result.out / 'sweep.json'}  "
          f"report: {result.report_dir / 'report.md'}")
    return 0
