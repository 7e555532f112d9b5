"""``spade-lens dashboard``: a static latent browser (index.html + data files) for SAEs on an activation cache."""

from __future__ import annotations

import argparse
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dashboard",
        help="write a static HTML latent browser: top-activating tokens, histograms, concept scores per latent",
        description="Stream the activations of a cache (written by harvest) once through one or several SAEs and "
        "write OUT/index.html with its data files: every latent's top-activating tokens in context (shaded by "
        "activation, gold labels on hover), histogram of nonzero activations, firing rate, label distribution, "
        "precision / recall / F1 per concept, prototype distances for SpaDE and, with --model, the logit lens of "
        "its decoder row; an index with a sortable, filterable table and the headline table. The concept "
        "numbers are the probe's own. Open index.html from disk in any browser; no server, no network.",
    )
    p.add_argument("--sae", action="append", required=True, metavar="DIR",
                   help="an SAE folder (cfg.json + sae_weights.safetensors); repeat for several SAEs")
    p.add_argument("--activations", required=True, metavar="DIR", help="activation cache folder")
    p.add_argument("--corpus", required=True, metavar="DIR",
                   help="the corpus the activations were harvested from (its tokenizer gives the token text)")
    p.add_argument("--out", required=True, metavar="DIR", help="dashboard folder (an existing dashboard is replaced)")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="the language model folder, for the logit lens of decoder rows (default: none)")
    p.add_argument("--split", default=None,
                   help="corpus split of the activations (default: found by comparing token ids)")
    p.add_argument("--report", default=None, metavar="DIR", help="a report folder whose figures the index links to")
    p.add_argument("--label", default="pos", help="label column that names the concepts (default: pos)")
    p.add_argument("--group", action="append", default=[], metavar="NAME=A,B",
                   help="count the concepts A, B, ... as one concept NAME (as probe --group); repeatable")
    p.add_argument("--top-k", type=int, default=20, help="top-activating tokens per latent (default: 20)")
    p.add_argument("--window", type=int, default=8, help="tokens of context on each side (default: 8)")
    p.add_argument("--max-tokens", type=int, default=None, help="read at most this many tokens (default: all)")
    p.add_argument("--batch-size", type=int, default=4096, help="tokens per batch (default: 4096)")
    p.add_argument("--title", default="spade-lens latent browser", help="heading of the page")
    p.add_argument("--device", default=None, help="torch device for the SAEs (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spade_lens.cli.probe import _unique_names
    from spade_lens.dashboard import DashboardConfig, build_dashboard
    from spade_lens.dashboard.site import check_out_dir
    from spade_lens.devices import resolve_device
    from spade_lens.probe.groups import parse_group
    from spade_lens.saes import load_sae

    cfg = DashboardConfig(label=args.label, top_k=args.top_k, window=args.window, max_tokens=args.max_tokens,
                          batch_size=args.batch_size)
    groups = dict(parse_group(text) for text in args.group)
    inputs = [*args.sae, args.activations, args.corpus, *([args.model] if args.model else [])]
    check_out_dir(Path(args.out), [Path(p) for p in inputs])
    start = time.perf_counter()
    device = resolve_device(args.device, "--device")
    saes = {name: load_sae(d, device=device) for name, d in zip(_unique_names(args.sae), args.sae, strict=True)}
    files = build_dashboard(saes, args.activations, args.corpus, args.out, model=args.model, cfg=cfg,
                            split=args.split, groups=groups or None, report_dir=args.report, title=args.title,
                            progress=not args.no_progress)
    first = next(iter(files.results.values()))
    latents = sum(r.width for r in files.results.values())
    print(f"dashboard of {len(files.results)} SAE(s), {latents} latents, on {first.n_tokens} tokens of split "
          f"{files.split!r} in {time.perf_counter() - start:.1f} s")
    print(f"open {files.index_html}")
    return 0
