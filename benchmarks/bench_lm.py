"""Benchmark of the small LM: time to 99% grammatical samples, and throughput against the step before issue 14.

Trains the default :class:`LMConfig` with the default :class:`LMTrainConfig` (what ``spade-lens train-lm`` does:
progress bar, validation losses, checkpoints) on a fresh ``english`` corpus, judging 1,000 samples every
``--judge-every`` steps. Prints the time to reach 99%, the final rate, tokens per second (real tokens, padding
excluded), the loss on fresh grammar sentences beside the grammar's entropy per token, and the ratio of our
throughput to a reference loop's: the step as it was before issue 14 (TransformerLens' forward in float32, AdamW's
default implementation; same model size, same batches, same clipping; no scheduler, progress bar, evaluation or
checkpoints). The reference loop runs as short probes interleaved with training (at every judging
point, on its own model), so both see the same machine load; judging and probes are not counted as training.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lm.py                 # defaults
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lm.py --threads 2 --steps 3000 --batch-size 128
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch


class BareLoop:
    """The training step as it was before the packed loss (issue 14), on its own model: TransformerLens' forward in
    float32, clipping, AdamW with torch's default (foreach) implementation, under torch's deterministic mode with
    its default NaN-filling of new tensors (as the trainer ran then); no scheduler, progress bar, evaluation or
    checkpoints. Measures tokens/s."""

    def __init__(self, model, cfg) -> None:
        from spade_lens.lm.optim import param_groups

        self.model, self.cfg = model.train(), cfg
        self.optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                                           betas=(cfg.beta1, cfg.beta2))
        self.tokens, self.seconds = 0, 0.0

    def run(self, batches) -> None:
        from spade_lens.lm.data import lm_loss, lm_targets

        fill = torch.utils.deterministic.fill_uninitialized_memory
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = True
        start = time.perf_counter()
        try:
            for batch in batches:
                loss = lm_loss(self.model(batch.tokens), lm_targets(batch.tokens, batch.lengths))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                self.optimizer.step()
                self.tokens += int(batch.lengths.sum())
        finally:
            self.seconds += time.perf_counter() - start
            torch.use_deterministic_algorithms(False)
            torch.utils.deterministic.fill_uninitialized_memory = fill


def main() -> None:
    from pcfg import build_corpus, load_grammar
    from spade_lens.lm import LMConfig, LMTrainConfig, build_model, judge_lm, resolve_config, train_lm
    from spade_lens.lm.data import BatchOrder, pad_sequences, take

    defaults = LMTrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sentences", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--sort-window", type=int, default=defaults.sort_window)
    parser.add_argument("--min-lr-ratio", type=float, default=defaults.min_lr_ratio)
    parser.add_argument("--judge-every", type=int, default=250)
    parser.add_argument("--judge-from", type=int, default=500, help="first step judged")
    parser.add_argument("--n-judge", type=int, default=1000)
    parser.add_argument("--probe-steps", type=int, default=25, help="reference-loop steps per probe")
    parser.add_argument("--precision", default=defaults.precision, choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--show-bad", type=int, default=0, help="print this many ungrammatical samples")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    grammar = load_grammar("english")
    t0 = time.perf_counter()
    corpus = build_corpus(grammar, n=args.n_sentences, seed=args.seed, progress=False)
    print(f"corpus: {args.n_sentences} sentences in {time.perf_counter() - t0:.1f} s, "
          f"longest {corpus.metadata['max_seq_len']} tokens")
    train_cfg = LMTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                              warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
                              sort_window=args.sort_window, min_lr_ratio=args.min_lr_ratio, seed=args.seed,
                              precision=args.precision)
    lm_cfg = resolve_config(LMConfig(), longest_sequence=corpus.metadata["max_seq_len"],
                            vocab_size=len(corpus.tokenizer))

    data = pad_sequences([list(ids) for ids in corpus.dataset["train"]["input_ids"]], corpus.tokenizer.pad_id)
    order = BatchOrder(data.lengths, train_cfg.batch_size, train_cfg.seed, train_cfg.sort_window)
    bare = BareLoop(build_model(lm_cfg, corpus.tokenizer), train_cfg)
    judged: list[tuple[int, float, float]] = []  # (step, training seconds so far, rate)
    clock = {"start": 0.0, "excluded": 0.0, "tokens": 0}

    def callback(step: int, model) -> None:
        if step == 1:  # start the clock after the first step (warm-up)
            clock["start"] = time.perf_counter()
            return
        clock["tokens"] += int(order.lengths[order.indices(step - 1)].sum())
        due = step >= args.judge_from and (step % args.judge_every == 0 or step == train_cfg.steps)
        if not due:
            return
        t = time.perf_counter()
        seconds = t - clock["start"] - clock["excluded"]
        if not (judged and judged[-1][2] >= 0.99 and step != train_cfg.steps):
            rate = judge_lm(model, grammar, n=args.n_judge, seed=step, n_loss=1).grammaticality
            judged.append((step, seconds, rate))
            print(f"  step {step}: {rate:.3f} grammatical after {seconds:.1f} s of training", flush=True)
            model.train()
        bare.run([take(data, order.indices(s)) for s in range(step, step + args.probe_steps)])
        clock["excluded"] += time.perf_counter() - t

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        model = train_lm(corpus, LMConfig(), train_cfg, out, progress=True, callback=callback)
        total = time.perf_counter() - t0
    train_seconds = time.perf_counter() - clock["start"] - clock["excluded"]
    ours = clock["tokens"] / train_seconds
    bare_rate = bare.tokens / bare.seconds

    final = judge_lm(model, grammar, n=args.n_judge, seed=12345, n_loss=2000)
    bad = [" ".join(w) for w, ok in zip(final.samples, final.grammatical, strict=True) if not ok]
    for sentence in bad[: args.show_bad]:
        print(f"  ungrammatical: {sentence}")
    reached = next(((s, sec) for s, sec, r in judged if r >= 0.99), None)
    print()
    print(f"config: {lm_cfg}")
    print(f"train:  {train_cfg}")
    print(f"training time {train_seconds:.1f} s for {train_cfg.steps} steps (judging and probes excluded; "
          f"{total:.1f} s wall in all)")
    if reached:
        print(f"time to >= 99% grammatical: {reached[1]:.1f} s (step {reached[0]})")
    else:
        print(f"time to >= 99% grammatical: not reached (best {max(r for _, _, r in judged):.3f})")
    print(f"final grammaticality ({args.n_judge} samples, fresh seed): {final.grammaticality:.4f}")
    print(f"loss on fresh grammar sentences: {final.loss:.4f} nats/token; grammar entropy per token "
          f"{final.entropy:.4f} (difference {final.loss - final.entropy:+.4f}; the entropy counts parses, so it "
          "is an upper bound on the string entropy of this ambiguous grammar)")
    print(f"throughput: ours {ours:,.0f} tokens/s, the step before issue 14 {bare_rate:,.0f} tokens/s "
          f"({bare.tokens:,} tokens in interleaved probes); ratio ours/before {ours / bare_rate:.3f}")


if __name__ == "__main__":
    main()
