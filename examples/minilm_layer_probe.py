"""Which layer of a pretrained model should the SAEs read? A quick per-layer part-of-speech probe.

Harvests the residual stream after every block (``hooks.residual_hook_names``) for sentences of the ``real``
grammar in the model's own sub-tokens (labels on each word's first sub-token), and on held-out sentences
reports per layer:

- linear: a multinomial logistic regression (L-BFGS, standardised inputs) trained on the training sentences;
- centroid: nearest class mean (Euclidean, standardised inputs): does each part of speech form one compact
  cluster? (what a dictionary of directions or prototypes can pick up);
- both restricted to the words of two parts of speech (``saw``: noun or verb; ``fast``, ``late``, ``early``,
  ``hard``: adjective or adverb), whose tag only the context tells.

    python examples/minilm_layer_probe.py                   # all-MiniLM-L6-v2 (minilm extra)
    python examples/minilm_layer_probe.py --model DIR        # any Hugging Face BERT/GPT-2 folder

About 3 minutes on 2 CPU threads for the default 3,000 sentences (most of it the forward passes).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings

import torch

AMBIGUOUS = ("saw", "fast", "late", "early", "hard")


def layer_data(cache, hook):
    (batch,) = list(cache.batches(hook, 10**9, shuffle=False))
    keep = batch.labels["pos"] >= 0
    return batch.acts[keep].float(), batch.labels["pos"][keep], batch.labels["token_id"][keep]


def probe(xt, yt, xv, yv, n_classes):
    """(linear predictions, centroid predictions) on ``xv``."""
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    xt, xv = (xt - mu) / sd, (xv - mu) / sd
    w = torch.zeros(xt.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + 1e-4 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    centroids = torch.stack([xt[yt == k].mean(0) for k in range(n_classes)])
    with torch.no_grad():
        return (xv @ w + b).argmax(1), torch.cdist(xv, centroids).argmin(1)


def main() -> None:
    from hooks import harvest, load_hf_model, residual_hook_names
    from pcfg import build_subtoken_corpus, load_grammar
    from spade_lens.pretrained import resolve_model_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm", help="minilm or a Hugging Face folder (default: minilm)")
    parser.add_argument("--n", type=int, default=3000, help="sentences (default: 3000, a tenth held out)")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default: 1; the run uses 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = load_hf_model(resolve_model_dir(args.model))
    corpus = build_subtoken_corpus(load_grammar("real"), model.tokenizer, n=args.n, seed=args.seed, progress=False)
    names, n_classes = residual_hook_names(model), len(corpus.label_names["pos"])
    ambiguous = torch.tensor(model.tokenizer.convert_tokens_to_ids(list(AMBIGUOUS)))
    with tempfile.TemporaryDirectory() as tmp:
        train = harvest(model, corpus.dataset["train"], names, f"{tmp}/train", progress=False)
        val = harvest(model, corpus.dataset["validation"], names, f"{tmp}/val", progress=False)
        print(f"{train.n_tokens} training / {val.n_tokens} held-out sub-tokens; accuracy on held-out words")
        print("| after blocks | hook | linear | linear, ambiguous words | centroid | centroid, ambiguous words |")
        print("|---|---|---|---|---|---|")
        for layer, hook in enumerate(names):
            xt, yt, _ = layer_data(train, hook)
            xv, yv, tv = layer_data(val, hook)
            amb = torch.isin(tv, ambiguous)
            lin, cen = probe(xt, yt, xv, yv, n_classes)
            acc = [float((p[m] == yv[m]).float().mean()) for p in (lin, cen) for m in (slice(None), amb)]
            print(f"| {layer} | {hook} | {acc[0]:.4f} | {acc[1]:.4f} | {acc[2]:.4f} | {acc[3]:.4f} |")
        print(f"({int(amb.sum())} held-out ambiguous words)")


if __name__ == "__main__":
    main()
