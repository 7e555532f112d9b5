"""``spade-lens run``: the whole pipeline on defaults (see :mod:`spade_lens.pipeline`), or on a pretrained model
(``--model minilm`` or a Hugging Face folder; see :mod:`spade_lens.pretrained`)."""

from __future__ import annotations

import argparse
import time

from spade_lens.threads import add_threads_option

TOY = "toy"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="the whole pipeline: corpus -> language model -> activations -> four SAEs -> probe report",
        description="Build a corpus of the --grammar grammar (default: english), train the 2-layer model on "
        "it, harvest its activations at blocks.0.hook_resid_post (sentence tokens only), train relu, topk (k=16), "
        "jumprelu and spade SAEs side by side and probe them for parts of speech on held-out sentences. With "
        "--model minilm (or a Hugging Face BERT/GPT-2 folder) the model is pretrained instead: sentences of the "
        "`real` grammar in its own sub-tokens, its residual stream after --layer blocks. Each stage writes its own "
        "subfolder of --out. A stage whose folder exists is skipped only when it was made with the same settings "
        "(otherwise the run stops and names the setting that differs), so an interrupted run continues when "
        "started again with the same options.",
    )
    p.add_argument("--out", default=None, metavar="DIR",
                   help="run folder (default: runs/default, or runs/minilm with --model minilm)")
    p.add_argument("--model", default=TOY, metavar="toy|minilm|DIR",
                   help="toy: train the 2-layer model (default); minilm: all-MiniLM-L6-v2 from the minilm extra; "
                   "or a Hugging Face BERT/GPT-2 model folder")
    p.add_argument("--quick", action="store_true",
                   help="a tiny run (about 20-40 s on a 2-core CPU) for smoke tests; its numbers mean little")
    p.add_argument("--grammar", default=None,
                   help="built-in grammar name or .pcfg path (default: english; real with a pretrained model)")
    p.add_argument("--layer", type=int, default=None,
                   help="pretrained model: residual stream after this many blocks (default: 3 for minilm, else the "
                   "middle)")
    p.add_argument("--labels", choices=("first", "all"), default="first",
                   help="pretrained model: gold labels on each word's first sub-token only (default) or on all")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage (default: 0)")
    p.add_argument("--sae-seed", type=int, default=None,
                   help="seed of the SAE stage alone (default: --seed); several SAE seeds can share one corpus, "
                   "model and activations")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_threads_option(p, "the language model on torch's own count, one per core, the SAEs on 1 thread as small "
                       "work; a value applies to every stage")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=run, interrupted="finished stages and checkpoints are kept: run the same command again to "
                   "continue")


def _run_toy(args: argparse.Namespace) -> object:
    from spade_lens.errors import SpadeLensError
    from spade_lens.pipeline import RunConfig, run_pipeline

    if args.layer is not None:
        raise SpadeLensError(f"--layer: received {args.layer}; it applies to a pretrained --model (minilm or a "
                             "folder), the toy run reads blocks.0.hook_resid_post")
    preset = RunConfig.quick if args.quick else RunConfig
    cfg = preset(grammar=args.grammar or "english", seed=args.seed, sae_seed=args.sae_seed)
    return run_pipeline(args.out or "runs/default", cfg, say=print, progress=not args.no_progress,
                        device=args.device, threads=args.threads)


def _run_pretrained(args: argparse.Namespace) -> object:
    from spade_lens.pretrained import MINILM, PretrainedRunConfig, run_pretrained
    from spade_lens.threads import apply_threads

    preset = PretrainedRunConfig.quick if args.quick else PretrainedRunConfig
    cfg = preset(grammar=args.grammar or "real", seed=args.seed, layer=args.layer, labels=args.labels)
    out = args.out or ("runs/minilm" if args.model == MINILM else "runs/pretrained")
    apply_threads(args.threads)  # the toy pipeline sets them per stage (run_pipeline)
    return run_pretrained(out, args.model, cfg, say=print, progress=not args.no_progress, device=args.device)


def run(args: argparse.Namespace) -> int:
    from spade_lens.devices import check_device
    from spade_lens.report.markdown import headline_table
    from spade_lens.threads import check_threads

    check_device(args.device, "--device")
    check_threads(args.threads)
    start = time.perf_counter()
    result = _run_toy(args) if args.model == TOY else _run_pretrained(args)
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
    if result.dashboard is not None:
        print(f"latent browser: {result.dashboard}")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0
