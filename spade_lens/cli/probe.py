"""``spade-lens probe``: concept probing of trained SAEs on an activation cache, written as a report."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "probe",
        help="probe SAEs for concepts (per-label F1, per-concept L0, co-occurrence) and write a report",
        description="Stream the labelled activations of an activation cache (written by harvest) through one "
        "or several SAEs once and write report.md, metrics.json and PNG figures (with the plots extra) into "
        "OUT: per SAE L0, NMSE, dead fraction, best-latent and top-5 F1 per concept, per-concept L0, "
        "latent co-occurrence.",
    )
    p.add_argument("--sae", action="append", required=True, metavar="DIR",
                   help="an SAE folder (cfg.json + sae_weights.safetensors); repeat for several SAEs")
    p.add_argument("--activations", required=True, metavar="DIR", help="activation cache folder")
    p.add_argument("--hook", default=None,
                   help="hook to read from the cache (default: each SAE's own hook_name, or the cache's only hook)")
    p.add_argument("--label", default="pos", help="label column that names the concepts (default: pos)")
    p.add_argument("--group", action="append", default=[], metavar="NAME=A,B",
                   help="probe the concepts A, B, ... as one concept NAME (e.g. --group N+Pro=N,Pro, as the SpaDE "
                   "paper counts nouns); repeat for several groups")
    p.add_argument("--max-tokens", type=int, default=None, help="probe at most this many tokens (default: all)")
    p.add_argument("--batch-size", type=int, default=4096, help="tokens per batch (default: 4096)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="report folder: new, empty, or a report to replace (anything else, and the input folders, "
                   "are refused)")
    p.add_argument("--device", default=None, help="torch device for the SAEs (default: cuda if available, else cpu)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run, interrupted="nothing was written (the report is saved only when complete)")


def _unique_names(dirs: list[str]) -> list[str]:
    names: list[str] = []
    for d in dirs:
        base = Path(d).resolve().name or "sae"
        name, i = base, 2
        while name in names:
            name, i = f"{base}_{i}", i + 1
        names.append(name)
    return names


def run(args: argparse.Namespace) -> int:
    from hooks.folders import writing
    from spade_lens.devices import resolve_device
    from spade_lens.errors import SpadeLensError
    from spade_lens.provenance import check_target

    args.device = resolve_device(args.device, "--device")
    out = check_target(args.out, "report", inputs=[*args.sae, args.activations])
    with writing(out, what=f"--out {str(out)!r}", error=SpadeLensError):
        return _probe(args, out)


def _probe(args: argparse.Namespace, out: Path) -> int:
    from hooks import ActivationCache
    from spade_lens.errors import SpadeLensError
    from spade_lens.probe import probe_saes
    from spade_lens.probe.groups import parse_group
    from spade_lens.provenance import folder_input, weights_identity
    from spade_lens.report import headline_table, write_report
    from spade_lens.saes import load_sae

    if args.max_tokens is not None and args.max_tokens <= 0:
        raise SpadeLensError(f"--max-tokens: received {args.max_tokens}; expected a positive int")
    if args.batch_size <= 0:
        raise SpadeLensError(f"--batch-size: received {args.batch_size}; expected a positive int")
    groups = dict(parse_group(text) for text in args.group)
    cache = ActivationCache(args.activations)
    if args.label not in cache.label_columns:
        raise SpadeLensError(
            f"--label: {args.label!r} is not a label column of {args.activations!r}; it has {cache.label_columns}"
        )
    saes = {name: load_sae(d, device=args.device) for name, d in zip(_unique_names(args.sae), args.sae, strict=True)}
    by_hook: dict[str, dict] = {}
    for name, sae in saes.items():
        hook = args.hook or sae.cfg.hook_name or (cache.hook_names[0] if len(cache.hook_names) == 1 else "")
        if hook not in cache.hook_names:
            raise SpadeLensError(
                f"--hook: SAE {name!r} reads hook {hook!r}, which is not in {args.activations!r} "
                f"(hooks: {cache.hook_names}); pass --hook NAME"
            )
        if sae.cfg.d_in != cache.dims[hook]:
            raise SpadeLensError(
                f"--sae: SAE {name!r} has d_in {sae.cfg.d_in}; the cache's hook {hook!r} has width {cache.dims[hook]}"
            )
        by_hook.setdefault(hook, {})[name] = sae
    label_names = cache.label_names.get(args.label)
    results = {}
    for hook, group in by_hook.items():
        results.update(probe_saes(
            group, cache.batches(hook, args.batch_size, shuffle=False), label=args.label,
            label_names=label_names, max_tokens=args.max_tokens, groups=groups or None,
            progress=not args.no_progress,
        ))
    results = {name: results[name] for name in saes}
    inputs = {"activations": folder_input(args.activations, "activations"),
              **{f"sae {name}": {"kind": "sae", "id": weights_identity(sae), "path": d}
                 for (name, sae), d in zip(saes.items(), args.sae, strict=True)}}
    files = write_report(results, out, label=args.label, plots=not args.no_plots,
                         title=f"spade-lens concept probe ({args.label})", inputs=inputs)
    first = next(iter(results.values()))
    print(f"probed {len(results)} SAE(s) on {first.n_tokens} tokens ({first.n_labelled} labelled, "
          f"label {args.label!r}); best-latent F1 per concept:")
    print(headline_table(results))
    print(f"report: {files.markdown}  metrics: {files.metrics}  figures: {len(files.figures)}")
    if files.message:
        print(files.message)
    return 0
