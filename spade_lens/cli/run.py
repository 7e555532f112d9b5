"""``spade-lens run``: the whole pipeline on defaults (see :mod:`spade_lens.pipeline`)."""

from __future__ import annotations

import argparse
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="the whole pipeline: corpus -> language model -> activations -> four SAEs -> probe report",
        description="Build a corpus of the --grammar grammar (default: english), train the 2-layer model on "
        "it, harvest its activations at blocks.0.hook_resid_post (sentence tokens only), train relu, topk (k=16), "
        "jumprelu and spade SAEs side by side and probe them for parts of speech on held-out sentences. Each "
        "stage writes its own subfolder of --out. A stage whose folder exists is skipped only when it was made "
        "with the same settings (otherwise the run stops and names the setting that differs), so an interrupted "
        "run continues when started again with the same options.",
    )
    p.add_argument("--out", default="runs/default", metavar="DIR", help="run folder (default: runs/default)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny run (about 20-40 s on a 2-core CPU) for smoke tests; its numbers mean little")
    p.add_argument("--grammar", default="english", help="built-in grammar name or .pcfg path (default: english)")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage (default: 0)")
    p.add_argument("--sae-seed", type=int, default=None,
                   help="seed of the SAE stage alone (default: --seed); several SAE seeds can share one corpus, "
                   "model and activations")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=run, interrupted="finished stages and checkpoints are kept: run the same command again to "
                   "continue")


def run(args: argparse.Namespace) -> int:
    from spade_lens.devices import check_device
    from spade_lens.pipeline import RunConfig, run_pipeline
    from spade_lens.report.markdown import headline_table

    check_device(args.device, "--device")
    preset = RunConfig.quick if args.quick else RunConfig
    cfg = preset(grammar=args.grammar, seed=args.seed, sae_seed=args.sae_seed)
    start = time.perf_counter()
    result = run_pipeline(args.out, cfg, say=print, progress=not args.no_progress,
                          device=args.device)
    print()
    print(headline_table(result.probe))
    print()
    if result.paper_probe is not None:
        print("Nouns and pronouns as one concept (N+Pro), as the SpaDE paper counts them:")
        print(headline_table(result.paper_probe))
        print()
    if result.lm_grammaticality is not None:
        expected = (" (expected of --quick's 60-step model; the full run's model reaches about 99%)"
                    if args.quick else "")
        print(f"language model: {result.lm_grammaticality:.1%} grammatical samples{expected}")
    print(f"report: {result.report_dir / 'report.md'} (metrics.json and figures beside it)")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0
