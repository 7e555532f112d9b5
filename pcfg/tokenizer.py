"""Word-level tokenizer over a grammar's terminals, with BOS/EOS/PAD/UNK, JSON I/O and a Hugging Face twin."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pcfg.errors import PCFGError
from pcfg.grammar import Grammar

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
"""Special tokens, always ids 0..3 in this order; the grammar's terminals follow, sorted."""

_FORMAT = "pcfg-word-tokenizer"


class Tokenizer:
    """Word-level vocabulary: ``[<pad>, <bos>, <eos>, <unk>] + sorted(terminals)``; one id per distinct word.

    A word that two parts of speech share (``saw`` as noun and verb) has one id: its part of speech comes
    from the derivation, not from the token.
    """

    def __init__(self, words: Iterable[str]) -> None:
        words = list(words)
        for w in words:
            if not isinstance(w, str) or not w or any(c.isspace() for c in w):
                raise PCFGError(f"words: {w!r} cannot be a word-level token; expected a non-empty string "
                                f"without whitespace")
            if w in SPECIAL_TOKENS:
                raise PCFGError(f"words: {w!r} clashes with a special token {list(SPECIAL_TOKENS)}")
        if len(set(words)) != len(words):
            dup = sorted({w for w in words if words.count(w) > 1})
            raise PCFGError(f"words: duplicate word(s) {dup}; expected each word once")
        self.vocab: list[str] = list(SPECIAL_TOKENS) + words
        self._ids = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 1, 2, 3

    @classmethod
    def from_grammar(cls, grammar: Grammar) -> Tokenizer:
        """The vocabulary of ``grammar``'s terminals (sorted) after the special tokens."""
        return cls(grammar.terminals)

    def __len__(self) -> int:
        return len(self.vocab)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.vocab == other.vocab

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={len(self)})"

    @property
    def special_ids(self) -> tuple[int, ...]:
        """Ids of ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``."""
        return (self.pad_id, self.bos_id, self.eos_id, self.unk_id)

    def token_id(self, word: str) -> int:
        """The id of one word; :class:`PCFGError` if it is not in the vocabulary."""
        try:
            return self._ids[word]
        except KeyError:
            raise PCFGError(f"word {word!r} is not in the vocabulary ({len(self)} tokens)") from None

    def encode(self, words: Sequence[str] | str, add_special: bool = True) -> list[int]:
        """``[BOS, id(w1), ..., id(wn), EOS]`` (without BOS/EOS if ``add_special`` is false).

        ``words`` is a sequence of words or one whitespace-separated string; unknown words raise.
        """
        if isinstance(words, str):
            words = words.split()
        ids = [self.token_id(w) for w in words]
        return [self.bos_id, *ids, self.eos_id] if add_special else ids

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> list[str]:
        """Words of ``ids``; special tokens are dropped when ``skip_special`` (default)."""
        out = []
        n = len(self.vocab)
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise PCFGError(f"ids: token id {i} out of range; expected 0 <= id < {n}")
            if skip_special and i < len(SPECIAL_TOKENS):
                continue
            out.append(self.vocab[i])
        return out

    # ------------------------------------------------------------------------------------------------ files
    def to_json(self) -> str:
        return json.dumps({"format": _FORMAT, "version": 1, "vocab": self.vocab}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> Tokenizer:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise PCFGError(f"{source}: not a tokenizer JSON file ({err})") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("vocab"), list):
            raise PCFGError(f"{source}: not a pcfg tokenizer file; expected a JSON object with "
                            f"format={_FORMAT!r} and a 'vocab' list")
        vocab = data["vocab"]
        if tuple(vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise PCFGError(f"{source}: vocab must start with {list(SPECIAL_TOKENS)}, got {vocab[:4]}")
        return cls(vocab[len(SPECIAL_TOKENS):])

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON (atomically)."""
        path = Path(path)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise PCFGError(f"tokenizer path {str(path)!r} does not exist; expected a tokenizer JSON file")
        return cls.from_json(path.read_text(encoding="utf-8"), source=str(path))

    # ------------------------------------------------------------------------------------------------ HF
    def to_hf(self) -> PreTrainedTokenizerFast:
        """The same vocabulary as a ``transformers.PreTrainedTokenizerFast`` (WordLevel, whitespace split).

        bos/eos/pad/unk tokens are set and are special tokens (so ``"<bos>she sees"`` splits correctly). It is
        built with ``add_bos_token=True``: like Llama's tokenizers it puts ``<bos>`` in front of every text and
        adds no ``<eos>`` (``hf("she sees").input_ids == [bos, id(she), id(sees)]``). TransformerLens needs
        that flag (its ``set_tokenizer`` otherwise reloads the tokenizer by name from the Hub) and detects the
        automatic BOS, so ``model.to_tokens("she sees")`` gives ``[[bos, she, sees]]`` and ``prepend_bos=False``
        drops it. Unknown words map to ``<unk>``; decoding joins words with single spaces.
        """
        from tokenizers import Tokenizer as RawTokenizer
        from tokenizers import models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        raw = RawTokenizer(models.WordLevel(vocab=dict(self._ids), unk_token=UNK))
        raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        raw.add_special_tokens(list(SPECIAL_TOKENS))
        return PreTrainedTokenizerFast(
            tokenizer_object=raw,
            bos_token=BOS,
            eos_token=EOS,
            pad_token=PAD,
            unk_token=UNK,
            name_or_path="pcfg-word-level",
            add_bos_token=True,
            clean_up_tokenization_spaces=False,
        )
