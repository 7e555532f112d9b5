"""``spade-lens harvest``: capture a saved model's activations over a saved corpus into an on-disk cache.

A thin wrapper over :func:`hooks.harvest`, which works for any TransformerLens model (a ``HookedTransformer``
you built or loaded yourself, or a ``TransformerBridge``) and any source of token ids; from Python::

    from hooks import harvest, ActivationCache
    cache = harvest(model, dataset["train"], ["blocks.0.hook_resid_post"], "runs/acts")

Under ``torchrun --nproc-per-node N`` each process harvests its own slice of the split (on the GPU of its
``LOCAL_RANK`` when there are GPUs) and rank 0 joins them into one cache (:mod:`hooks.harvest_parallel`).
"""

from __future__ import annotations

import argparse

import torch

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "harvest",
        help="cache a model's activations (with per-token labels) over a corpus, resumably",
        description="Run the model saved in --model (`spade-lens train-lm`) over one split of the corpus in "
        "--corpus (`spade-lens corpus`) and write the activations at each --hook, with every token's "
        "labels (pos, phrase, depth, token id, position, sequence index), as safetensors shards plus "
        "manifest.json in --out. --model may also be a Hugging Face BERT or GPT-2 folder. The tokenizer's special "
        "tokens (BOS, EOS, [CLS], [SEP]) and padding are left out. The corpus must use the model's tokenizer. Run "
        "the same command again to resume an interrupted harvest; a finished one is reused when it was made from "
        "the same model, corpus split and settings (otherwise it is refused; --overwrite replaces it).",
    )
    p.add_argument("--model", required=True,
                   help="model folder: from `spade-lens train-lm`, or a Hugging Face BERT/GPT-2 folder (config.json, "
                   "weights, tokenizer), loaded offline into TransformerLens")
    p.add_argument("--corpus", required=True,
                   help="corpus folder (from `spade-lens corpus`; for a Hugging Face model, built with its "
                   "tokenizer: `spade-lens corpus --tokenizer DIR`)")
    p.add_argument("--hook", action="append", default=None, metavar="NAME",
                   help="hook point, e.g. blocks.0.hook_resid_post (repeat for several; one forward serves all)")
    p.add_argument("--layer", action="append", type=int, default=None, metavar="N",
                   help="the residual stream after N blocks (0: embeddings), named right for the model: on a BERT "
                   "encoder (post-LayerNorm) blocks.{N-1}.hook_normalized_resid_post; repeat for several")
    p.add_argument("--out", required=True, help="cache folder to write (or resume)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a cache in --out made from another model, corpus, split or settings")
    p.add_argument("--split", default="train", help="corpus split (default: train)")
    p.add_argument("--max-tokens", type=int, default=None, help="stop after N tokens (default: whole split)")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per forward pass (default: 64)")
    p.add_argument("--shard-tokens", type=int, default=2**16, help="rows per shard (default: 65536)")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default=None,
                   help="stored dtype (default: the model's)")
    p.add_argument("--device", default=None,
                   help="torch device (default: cuda if available, else cpu; under torchrun each rank takes the GPU "
                   "of its LOCAL_RANK)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run, interrupted="the shards written so far are kept: run the same command again to "
                   "resume the harvest")


def run(args: argparse.Namespace) -> int:
    from hooks import harvest, load_hf_model, residual_hook
    from hooks.distributed import from_main, ranks
    from hooks.hf_model import is_hf_model_dir
    from pcfg import load_corpus
    from spade_lens.devices import check_device
    from spade_lens.errors import SpadeLensError
    from spade_lens.lm import load_lm
    from spade_lens.lm.io import load_lm_grammar
    from spade_lens.provenance import check_target, folder_input
    from spade_lens.training.distributed import init_distributed

    check_device(args.device, "--device")
    if not args.hook and not args.layer:
        raise SpadeLensError("--hook / --layer: received neither; expected at least one hook name or layer")
    args.device = init_distributed(args.device)  # joins the torchrun group, if any; this rank's device
    out = from_main(lambda: check_target(args.out, "activations", inputs=[args.model, args.corpus]), SpadeLensError)
    corpus = load_corpus(args.corpus)
    if args.split not in corpus.dataset:
        raise SpadeLensError(f"--split: the corpus has no split {args.split!r}; splits: {sorted(corpus.dataset)}")
    if corpus.dataset[args.split].num_rows == 0:
        raise SpadeLensError(f"--split: split {args.split!r} of {args.corpus!r} has no sentences (the corpus was "
                             "made with --val-fraction 0 or a tiny --n); expected a split with sentences")
    hf = is_hf_model_dir(args.model)
    model = load_hf_model(args.model, device=args.device) if hf else load_lm(args.model, device=args.device)
    hooks = [*(args.hook or []), *(residual_hook(model, n) for n in args.layer or [])]
    cache = harvest(model, corpus.dataset[args.split], hooks, out, max_tokens=args.max_tokens,
                    shard_tokens=args.shard_tokens, batch_size=args.batch_size,
                    dtype=_DTYPES[args.dtype] if args.dtype else None, progress=not args.no_progress,
                    source_tokenizer=corpus.tokenizer_identity, overwrite=args.overwrite,
                    inputs={"lm": folder_input(args.model, "hf_model" if hf else "lm"),
                            "corpus": folder_input(args.corpus, "corpus")})
    if ranks()[0] != 0:
        return 0
    dims = ", ".join(f"{h} (d={d})" for h, d in cache.dims.items())
    stored = (cache.metadata.get("source") or {}).get("split") or args.split
    print(f"harvested {cache.n_tokens} tokens of split {stored!r} in {len(cache.shard_rows)} shards: {dims}")
    print(f"labels: {', '.join(cache.label_columns)} (+ token_id, position, seq_index) -> {cache.path}")
    if not hf and load_lm_grammar(args.model).text != corpus.grammar.text:
        print(f"note: the corpus' grammar {corpus.grammar.name!r} is not the one the model was trained on (same "
              "vocabulary); its activations are the model's response to other sentence structures")
    return 0
