"""``spade-lens train-sae``: train several SAE architectures side by side on a harvested activation cache.

Writes into ``--out``: one SAE folder per architecture (``<arch>/cfg.json`` + ``sae_weights.safetensors``,
SAELens layout), ``log.jsonl`` (training log), ``checkpoint.pt`` (with ``--checkpoint-every`` or on Ctrl-C; resume
with ``--resume``) and ``summary.json`` (per SAE: L0, NMSE, explained variance, dead fraction on the evaluation
tokens, final loss, training tokens/s), also printed as a table.

Under ``torchrun --nproc-per-node N`` the same command trains on N processes (see
:mod:`spade_lens.training.distributed`): each reads its own share of the cache, ``--batch-size`` stays the
combined batch of a step, and rank 0 alone checks and writes ``--out``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spade_lens.threads import add_threads_option

# The config field that ``--gamma`` sets, per architecture (TopK has no sparsity coefficient: it uses ``--k``).
SPARSITY_FIELD = {"relu": "l1_coefficient", "jumprelu": "l0_coefficient", "spade": "kds_coefficient"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-sae",
        help="train SAEs (relu, topk, jumprelu, spade) side by side on an activation cache",
        description="Train one SAE per architecture on the same stream of shuffled activations of an "
        "activation cache (written by `spade-lens harvest`), then evaluate them and write one SAE folder per "
        "architecture, a JSON-lines log and summary.json into OUT.",
    )
    p.add_argument("--activations", required=True, metavar="DIR", help="activation cache folder")
    p.add_argument("--arch", default="relu,topk,jumprelu,spade",
                   help="comma-separated architectures (default: relu,topk,jumprelu,spade)")
    p.add_argument("--width", type=int, default=256, help="latents per SAE, d_sae (default: 256)")
    p.add_argument("--k", type=int, default=None,
                   help="TopK's active latents per token (default: TopKConfig's 32; `spade-lens run` uses 16)")
    p.add_argument("--gamma", default=None, metavar="VALUE|ARCH=VALUE,...",
                   help="sparsity coefficient: relu l1_coefficient, jumprelu l0_coefficient, spade "
                   "kds_coefficient; one value for all, or per architecture, e.g. relu=1,spade=0.01")
    p.add_argument("--hook", default=None, help="hook to read (default: the cache's only hook)")
    p.add_argument("--tokens", type=int, default=None,
                   help="training tokens, exactly (batches run on across passes over the cache; the last one is cut "
                   "to fit; default: one pass over the cache)")
    p.add_argument("--batch-size", type=int, default=4096, help="tokens per batch (default: 4096)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak Adam learning rate (default: 1e-3)")
    p.add_argument("--final-lr", type=float, default=None, help="learning rate at the end (default: lr / 100)")
    p.add_argument("--warmup-steps", type=int, default=0, help="learning-rate warmup steps (default: 0)")
    p.add_argument("--sparsity-warmup-steps", type=int, default=0,
                   help="steps of sparsity-coefficient warmup (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the SAE initialisation and the shuffling")
    p.add_argument("--eval-tokens", type=int, default=65536,
                   help="tokens (first of the cache, harvest order) for the final metrics (default: 65536)")
    p.add_argument("--checkpoint-every", type=int, default=0, help="steps between checkpoints (default: 0, off)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its checkpoint.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="train afresh over the SAEs or checkpoint in OUT (without it, and without --resume, they "
                   "are refused)")
    p.add_argument("--device", default=None,
                   help="torch device for the SAEs (default: cuda if available, else cpu; under torchrun each rank "
                   "takes the GPU of its LOCAL_RANK)")
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                   help="bfloat16: forward passes under bfloat16 autocast (weights and optimiser stay float32; pays "
                   "on GPUs and CPUs with fast bfloat16 matmuls; default: float32)")
    add_threads_option(p, "1 for small SAEs, else torch's own, one per core")
    p.add_argument("--wandb", action="store_true", help="also log to Weights & Biases (if installed)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder")
    p.set_defaults(func=run, interrupted="the checkpoint of the last finished step is kept in OUT/checkpoint.pt: "
                   "run the same command with --resume to continue")


def _parse_gamma(text: str | None, archs: list[str]) -> dict[str, float]:
    from spade_lens.errors import SpadeLensError

    if text is None:
        return {}
    try:
        if "=" not in text:
            return {a: float(text) for a in archs if a in SPARSITY_FIELD}
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        gamma = {name.strip(): float(value) for name, value in pairs}
    except ValueError:
        raise SpadeLensError(
            f"--gamma: received {text!r}; expected a number or ARCH=NUMBER pairs separated by commas"
        ) from None
    bad = sorted(set(gamma) - (set(archs) & set(SPARSITY_FIELD)))
    if bad:
        raise SpadeLensError(
            f"--gamma: received values for {bad}; expected architectures among {sorted(set(archs) & set(SPARSITY_FIELD))} "
            "(those in --arch that have a sparsity coefficient)"
        )
    return gamma


def exact_batches(make: Callable[[], Iterable[Any]], batch_size: int, n_tokens: int) -> Iterator[Tensor]:
    """Batches of exactly ``batch_size`` rows (the last cut so the total is ``n_tokens``), running on across
    passes of ``make()`` (one pass: one shuffled epoch, whose last batch may be short)."""
    sent, held, have = 0, [], 0
    while sent < n_tokens:
        empty = True
        for batch in make():
            empty = False
            acts = batch.acts if hasattr(batch, "acts") else batch
            held.append(acts)
            have += acts.shape[0]
            while have and (have >= batch_size or sent + have >= n_tokens):
                joined = torch.cat(held) if len(held) > 1 else held[0]
                take = min(batch_size, n_tokens - sent)
                yield joined[:take]
                sent += take
                rest = joined[take:]
                held, have = ([rest] if rest.shape[0] else []), rest.shape[0]
                if sent >= n_tokens:
                    return
        if empty:
            return


def _limit(batches: Iterator[Any], n_tokens: int) -> Iterator[Any]:
    """The batches of ``batches`` up to ``n_tokens`` rows in all (the last one cut)."""
    seen = 0
    for batch in batches:
        if seen >= n_tokens:
            return
        acts = batch.acts[: n_tokens - seen]
        seen += acts.shape[0]
        yield acts


def _check_args(args: argparse.Namespace) -> None:
    from spade_lens.errors import SpadeLensError

    for flag, value, minimum in (("--width", args.width, 1), ("--batch-size", args.batch_size, 1),
                                 ("--eval-tokens", args.eval_tokens, 2), ("--warmup-steps", args.warmup_steps, 0),
                                 ("--checkpoint-every", args.checkpoint_every, 0),
                                 ("--sparsity-warmup-steps", args.sparsity_warmup_steps, 0)):
        if value < minimum:
            raise SpadeLensError(f"{flag}: received {value}; expected an integer >= {minimum}")
    if args.tokens is not None and args.tokens < 1:
        raise SpadeLensError(f"--tokens: received {args.tokens}; expected a positive integer")
    if args.k is not None and args.k < 1:
        raise SpadeLensError(f"--k: received {args.k}; expected a positive integer")
    if args.resume and args.overwrite:
        raise SpadeLensError("--resume and --overwrite: expected at most one (continue the checkpoint, or start "
                             "afresh)")


def _check_fresh(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to train over a checkpoint or finished SAEs without --resume or --overwrite; --overwrite clears
    what this command wrote there before."""
    from spade_lens.errors import SpadeLensError
    from spade_lens.saes.io import CFG_FILENAME
    from spade_lens.training.checkpoint import checkpoint_path

    if resume:
        return
    trained = sorted(p.name for p in out.iterdir() if (p / CFG_FILENAME).is_file()) if out.is_dir() else []
    if not overwrite:
        if checkpoint_path(out).exists():
            raise SpadeLensError(f"--out: {str(out)!r} already holds a run (checkpoint.pt); pass --resume to continue "
                                 "it, --overwrite to train afresh, or choose another folder")
        if trained:
            raise SpadeLensError(f"--out: {str(out)!r} already holds trained SAEs ({', '.join(trained)}); pass "
                                 "--overwrite to replace them, or choose another folder")
        return
    checkpoint_path(out).unlink(missing_ok=True)
    for name in ("log.jsonl", "summary.json", "provenance.json"):
        (out / name).unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    from hooks.distributed import from_main, ranks
    from hooks.folders import writing
    from spade_lens.devices import check_device
    from spade_lens.errors import SpadeLensError
    from spade_lens.provenance import check_target
    from spade_lens.threads import check_threads
    from spade_lens.training.distributed import init_distributed

    _check_args(args)
    check_threads(args.threads)
    check_device(args.device, "--device")
    args.device = init_distributed(args.device)  # joins the torchrun group, if any; this rank's device
    out = from_main(lambda: check_target(args.out, "saes", inputs=[args.activations]), SpadeLensError)
    if ranks()[0] != 0:  # the other ranks train their share; rank 0 holds the folder and writes it
        return _train(args, out)
    with writing(out, what=f"--out {str(out)!r}", error=SpadeLensError):
        return _train(args, out)


def rank_stream(cache: Any, hook: str, batch_size: int, n_tokens: int, seed: int, rank: int | None = None,
                world_size: int | None = None) -> Callable[[], Iterator[Tensor]]:
    """Rank ``rank``'s batches (default: this process's) of a run of ``n_tokens`` tokens in combined batches of
    ``batch_size``: its share of each batch (the last one's too), from its share of the cache, across passes."""
    from hooks.distributed import ranks, share
    from spade_lens.training.distributed import per_rank_batch

    if rank is None or world_size is None:
        rank, world_size = ranks()
    steps = -(-n_tokens // batch_size)
    last = share(n_tokens - (steps - 1) * batch_size, rank, world_size)
    mine = per_rank_batch(batch_size, rank, world_size)
    total = (steps - 1) * mine + last[1] - last[0]
    return lambda: exact_batches(
        lambda: cache.batches(hook, mine, shuffle=True, seed=seed, rank=rank, world_size=world_size), mine, total)


def _train(args: argparse.Namespace, out: Path) -> int:
    from hooks import ActivationCache
    from hooks.cache import write_json_atomic
    from hooks.distributed import from_main, ranks
    from spade_lens.errors import SpadeLensError
    from spade_lens.provenance import folder_input
    from spade_lens.saes import create_sae, list_architectures
    from spade_lens.threads import apply_threads
    from spade_lens.training import SAETrainConfig, train_saes

    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    unknown = [a for a in archs if a not in list_architectures()]
    if not archs or unknown or len(set(archs)) != len(archs):
        raise SpadeLensError(
            f"--arch: received {args.arch!r}; expected distinct names among {list_architectures()}, comma-separated"
        )
    gamma = _parse_gamma(args.gamma, archs)
    if args.k is not None and "topk" not in archs:
        raise SpadeLensError(f"--k: received {args.k} but --arch {args.arch!r} has no topk")
    if "topk" in archs and args.k is None and args.width < 32:
        raise SpadeLensError(f"--k: TopK's default k=32 is more than --width {args.width}; pass --k (at most "
                             f"{args.width}) or a wider --width")
    if args.k is not None and args.k > args.width:
        raise SpadeLensError(f"--k: received {args.k}; expected at most --width ({args.width})")
    cache = ActivationCache(args.activations)
    from_main(lambda: _check_fresh(out, args.resume, args.overwrite), SpadeLensError)
    rank, world_size = ranks()
    hook = args.hook
    if hook is None:
        if len(cache.hook_names) != 1:
            raise SpadeLensError(f"--hook: the cache holds hooks {cache.hook_names}; expected --hook NAME")
        hook = cache.hook_names[0]
    if hook not in cache.hook_names:
        raise SpadeLensError(f"--hook: received {hook!r}; the cache holds {cache.hook_names}")
    d_in = cache.dims[hook]
    apply_threads(args.threads, work=args.batch_size * d_in * args.width)
    model_name = str(cache.metadata.get("model", {}).get("name", ""))
    saes = {}
    for arch in archs:
        kwargs: dict[str, Any] = {}
        if arch in gamma:
            kwargs[SPARSITY_FIELD[arch]] = gamma[arch]
        if arch == "topk" and args.k is not None:
            kwargs["k"] = args.k
        saes[arch] = create_sae(arch, d_in=d_in, d_sae=args.width, seed=args.seed, hook_name=hook,
                                model_name=model_name, device=args.device, **kwargs)
    total = args.tokens or cache.n_tokens
    if min(total, args.batch_size) < world_size:
        raise SpadeLensError(f"--batch-size / --tokens: received {args.batch_size} / {total}; expected at least one "
                             f"row per rank in each batch ({world_size} ranks)")
    short = (total - 1) % args.batch_size + 1  # rows of the last batch
    if total > args.batch_size and short < world_size:  # too few to give every rank one
        total -= short
        if rank == 0:
            print(f"note: the last {short} token(s) are left out: a batch must give each of the {world_size} ranks "
                  "at least one")
    cfg = SAETrainConfig(
        total_tokens=total, batch_size=args.batch_size, lr=args.lr, final_lr=args.final_lr,
        warmup_steps=args.warmup_steps, sparsity_warmup_steps=args.sparsity_warmup_steps,
        checkpoint_every=args.checkpoint_every, wandb=args.wandb, precision=args.precision,
    )
    metrics = train_saes(
        saes,
        rank_stream(cache, hook, args.batch_size, total, args.seed),
        cfg,
        out_dir=out,
        eval_batches=lambda: _limit(cache.batches(hook, args.batch_size, shuffle=False), args.eval_tokens),
        progress=not args.no_progress,
        resume=args.resume,
        inputs={"activations": folder_input(args.activations, "activations")},
        settings={"seed": args.seed, "hook": hook},
    )
    if rank != 0:
        return 0
    summary = {
        "activations": str(args.activations), "hook": hook, "d_in": d_in, "width": args.width,
        "steps": cfg.total_steps, "batch_size": args.batch_size,
        "saes": {
            name: {
                "l0": m["eval_l0"], "nmse": m["eval_nmse"], "explained_variance": m["eval_explained_variance"],
                "dead_fraction": m["eval_dead_fraction"], "loss": m.get("loss"), "tokens": m["tokens"],
                "tokens_per_s": m["tokens_per_s"], "folder": str(out / name),
            }
            for name, m in metrics.items()
        },
    }
    write_json_atomic(out / "summary.json", summary)
    print(f"trained {len(saes)} SAE(s) of width {args.width} on {hook} ({summary['saes'][archs[0]]['tokens']} "
          f"tokens each); evaluated on {min(args.eval_tokens, cache.n_tokens)} tokens")
    print(f"{'sae':<10} {'L0':>8} {'NMSE':>8} {'dead':>6} {'tokens/s':>10}")
    for name, row in summary["saes"].items():
        print(f"{name:<10} {row['l0']:>8.2f} {row['nmse']:>8.4f} {row['dead_fraction']:>6.3f} "
              f"{row['tokens_per_s']:>10,.0f}")
    print(f"wrote {', '.join(f'{out / n}/' for n in saes)} and {out / 'summary.json'}")
    return 0
