"""``spade-lens train-lm``: train the small HookedTransformer on a saved corpus and save it (resumable)."""

from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, fields

from spade_lens.lm.config import LMConfig, LMTrainConfig
from spade_lens.threads import add_threads_option

# Config fields that are not command-line options: the position embedding has one choice; d_vocab comes
# from the corpus tokenizer; eval_sequences is a detail.
_SKIP = {"positional", "d_vocab", "eval_sequences"}


def _add_config_options(group: argparse._ArgumentGroup, cls: type, prefix: str) -> None:
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in _SKIP:
            continue
        hint, default = hints[f.name], f.default if f.default is not MISSING else None
        kwargs: dict[str, typing.Any] = {"default": None, "dest": f"{prefix}{f.name}", "metavar": f.name.upper()}
        if typing.get_origin(hint) is typing.Literal:
            kwargs.update(choices=list(typing.get_args(hint)), type=str, metavar=None)
        else:
            kwargs["type"] = float if isinstance(default, float) else int
        flag = "--" + f.name.replace("_", "-")
        group.add_argument(flag, help=f"{cls.__name__}.{f.name} (default: "
                           f"{'from the corpus' if default is None else default})", **kwargs)


def _overrides(args: argparse.Namespace, prefix: str) -> dict[str, typing.Any]:
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-lm",
        help="train the small HookedTransformer on a corpus (resumable) and save it",
        description="Train a TransformerLens HookedTransformer (default: 2 layers, d_model 128, 2 heads, MLP 512, "
        "GELU, learned positions) on the sentences of a corpus folder written by `spade-lens corpus`. "
        "OUT receives config.json, model.safetensors, tokenizer.json and grammar.pcfg; checkpoints go to "
        "OUT/checkpoint (also on Ctrl-C), and --resume continues from there. At the end, samples are judged "
        "by the grammar.",
    )
    p.add_argument("--corpus", required=True, help="corpus folder (from `spade-lens corpus`)")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if it exists")
    p.add_argument("--overwrite", action="store_true",
                   help="train afresh over the model or checkpoint in OUT (without it, and without --resume, "
                   "an existing one is refused)")
    p.add_argument("--judge", type=int, default=1000, metavar="N",
                   help="judge N samples at the end (default: 1000; 0: skip)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_threads_option(p, "torch's own, one per core")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_options(p.add_argument_group("model (LMConfig)"), LMConfig, "lm_")
    _add_config_options(p.add_argument_group("training (LMTrainConfig)"), LMTrainConfig, "train_")
    p.set_defaults(func=run, interrupted="the checkpoint of the last finished step is kept in OUT/checkpoint: run "
                   "the same command with --resume to continue")


def run(args: argparse.Namespace) -> int:
    from hooks.folders import writing
    from spade_lens.devices import resolve_device
    from spade_lens.errors import SpadeLensError
    from spade_lens.lm import judge_lm, load_lm_grammar, train_lm
    from spade_lens.provenance import check_target
    from spade_lens.threads import apply_threads, check_threads

    if args.resume and args.overwrite:
        raise SpadeLensError("--resume and --overwrite: expected at most one (continue the checkpoint, or start "
                             "afresh)")
    args.device = resolve_device(args.device, "--device")
    threads = check_threads(args.threads)
    lm_cfg = LMConfig(**_overrides(args, "lm_"))
    train_cfg = LMTrainConfig(**_overrides(args, "train_"))
    out = check_target(args.out, "lm", inputs=[args.corpus])
    apply_threads(threads)
    with writing(out, what=f"--out {str(out)!r}", error=SpadeLensError):
        model = train_lm(args.corpus, lm_cfg, train_cfg, out, progress=not args.no_progress,
                         resume=args.resume, device=args.device, overwrite=args.overwrite)
    n_params = sum(p.numel() for p in model.parameters())
    c = model.cfg
    print(f"trained {c.n_layers} layers, d_model {c.d_model}, n_ctx {c.n_ctx}, d_vocab {c.d_vocab} "
          f"({n_params:,} parameters) for {train_cfg.steps} steps -> {args.out}")
    if args.judge > 0:
        verdict = judge_lm(model, load_lm_grammar(args.out), n=args.judge, seed=train_cfg.seed)
        print(f"grammatical samples: {verdict.grammaticality:.1%} of {args.judge}; loss on fresh grammar "
              f"sentences {verdict.loss:.4f} nats/token (grammar entropy {verdict.entropy:.4f})")
    return 0
