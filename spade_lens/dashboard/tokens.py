"""Token ids -> text through the corpus's own tokenizer, and the check that a cache came from a corpus split.

Any tokenizer works: the pcfg word-level one (``vocab``), a Hugging Face tokenizer (``convert_ids_to_tokens``),
a ``tokenizers.Tokenizer`` (``id_to_token``) or anything with ``decode([id])``. Sub-word markers are turned into
spacing: WordPiece's ``##x`` joins the previous token, byte-level BPE's ``Ġx`` and SentencePiece's ``▁x`` start a
new word (and then unmarked tokens join); with no markers every token is a word of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from spade_lens.errors import SpadeLensError

_WORD_START = ("Ġ", "▁")


def _raw_token(tokenizer: Any, token_id: int) -> str:
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        text = tokenizer.convert_ids_to_tokens(int(token_id))
    elif hasattr(tokenizer, "id_to_token"):
        text = tokenizer.id_to_token(int(token_id))
    elif isinstance(getattr(tokenizer, "vocab", None), list):
        vocab = tokenizer.vocab
        text = vocab[token_id] if 0 <= token_id < len(vocab) else None
    elif callable(getattr(tokenizer, "decode", None)):
        text = tokenizer.decode([int(token_id)])
        text = " ".join(text) if isinstance(text, list) else text
    else:
        raise SpadeLensError(f"tokenizer: a {type(tokenizer).__name__} has no vocab, convert_ids_to_tokens, "
                             "id_to_token or decode; expected the corpus's tokenizer")
    return f"#{token_id}" if text is None else str(text)


def token_texts(tokenizer: Any, ids: Iterable[int]) -> dict[int, tuple[str, bool]]:
    """``{id: (text, starts a word)}`` for the distinct ``ids`` (sub-word markers removed, see the module)."""
    raw = {int(i): _raw_token(tokenizer, int(i)) for i in sorted({int(i) for i in ids})}
    marked = any(t.startswith(_WORD_START) for t in raw.values())
    out: dict[int, tuple[str, bool]] = {}
    for i, t in raw.items():
        if t.startswith("##") and len(t) > 2:
            out[i] = (t[2:], False)
        elif t.startswith(_WORD_START):
            out[i] = (t[1:], True)
        else:
            out[i] = (t, not marked)
    return out


def matching_split(corpus: Any, cache: Any, split: str | None = None, samples: int = 64) -> str:
    """The split of ``corpus`` whose ``input_ids`` hold the cache's tokens at their (seq_index, position);
    ``split`` checks that one split only. :class:`SpadeLensError` when no split matches."""
    splits = list(corpus.dataset) if split is None else [split]
    if split is not None and split not in corpus.dataset:
        raise SpadeLensError(f"split: the corpus has no split {split!r}; it has {sorted(corpus.dataset)}")
    rows = _sample_rows(cache, samples)
    if rows is None:
        raise SpadeLensError(f"activations: {cache.path} holds no rows; expected a harvested activation cache")
    seq, pos, tok = rows
    problems = []
    for name in splits:
        data = corpus.dataset[name]
        if int(seq.max()) >= len(data):
            problems.append(f"{name!r} has {len(data)} sequences, the cache reaches sequence {int(seq.max())}")
            continue
        wanted = sorted(set(seq.tolist()))
        ids = dict(zip(wanted, data.select(wanted)["input_ids"], strict=True))
        bad = [(s, p, t) for s, p, t in zip(seq.tolist(), pos.tolist(), tok.tolist(), strict=True)
               if p >= len(ids[s]) or int(ids[s][p]) != t]
        if not bad:
            return name
        s, p, t = bad[0]
        problems.append(f"{name!r} differs at sequence {s}, position {p} (cache token {t})")
    raise SpadeLensError(f"corpus: the activations in {str(cache.path)!r} were not harvested from this corpus ("
                         f"{'; '.join(problems)}); expected the corpus (and split) the cache was harvested from")


def _sample_rows(cache: Any, samples: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(seq_index, position, token_id) of up to ``samples`` rows spread over the cache's first and last shard."""
    n_shards = len(cache.shard_rows)
    if n_shards == 0:
        return None
    hook = cache.hook_names[0]
    picked = []
    for index in sorted({0, n_shards - 1}):
        labels = cache.read_shard(hook, index).labels
        n = int(labels["token_id"].shape[0])
        if n == 0:
            continue
        take = torch.linspace(0, n - 1, min(samples, n)).long()
        picked.append([labels[c][take] for c in ("seq_index", "position", "token_id")])
    if not picked:
        return None
    seq, pos, tok = (torch.cat([p[i] for p in picked]) for i in range(3))
    return seq, pos, tok
