"""Tiny randomly initialised BERT and GPT-2 folders in Hugging Face format, built from configs (no download).

The BERT tokenizer is a WordPiece vocabulary over a grammar's words: words of up to four letters are whole
tokens, longer ones are spelled from their first four letters and ``##`` single letters, so they split into
several sub-tokens. The GPT-2 tokenizer is a byte-level BPE trained on a few of the grammar's sentences.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pcfg import load_grammar, sample_sentences

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def wordpiece_vocab(words: list[str]) -> list[str]:
    """Specials, whole short words, four-letter prefixes of long words, then ``##`` + every letter."""
    vocab = list(SPECIALS)
    for w in sorted(words):
        head = w if len(w) <= 4 else w[:4]
        if head not in vocab:
            vocab.append(head)
    for c in sorted({c for w in words for c in w}):
        vocab.append("##" + c)
    return vocab


def bert_tokenizer(folder: Path, words: list[str]):
    from transformers import BertTokenizerFast

    vocab = wordpiece_vocab(words)
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)


def make_bert_dir(folder: Path, grammar: str = "real", *, head: str = "none", seed: int = 0,
                  n_layers: int = 2) -> Path:
    """A tiny BERT folder whose tokenizer covers ``grammar``'s words. ``head``: ``none`` saves a ``BertModel``
    (encoder only, as sentence-transformers ship MiniLM), ``pretraining`` a ``BertForPreTraining``."""
    from transformers import BertConfig, BertForPreTraining, BertModel

    tok = bert_tokenizer(folder, load_grammar(grammar).terminals)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=n_layers, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=256, pad_token_id=0)
    torch.manual_seed(seed)
    model = (BertModel if head == "none" else BertForPreTraining)(config).eval()
    _perturb_layer_norms(model)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def _perturb_layer_norms(model: torch.nn.Module) -> None:
    """LayerNorm gains and biases away from their 1 / 0 start, so a misplaced LayerNorm shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or ".ln_" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.5 * torch.randn_like(p))


def make_gpt2_dir(folder: Path, grammar: str = "real", *, seed: int = 0) -> Path:
    """A tiny GPT-2 (``GPT2LMHeadModel``) folder with a byte-level BPE tokenizer trained on ``grammar``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    text = [" ".join(s.words) for s in sample_sentences(load_grammar(grammar), 300, seed=0)]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    raw.train_from_iterator(text, trainer)
    tok = GPT2TokenizerFast(tokenizer_object=raw, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                            unk_token="<|endoftext|>")
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=256,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    _perturb_layer_norms(model)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder
