"""pcfg: probabilistic context-free grammars -> seeded sentences with gold labels -> corpora on disk.

    g = load_grammar("english")                      # or a .pcfg path, or Grammar.from_string(text)
    sentences = sample_sentences(g, n=100, seed=0)   # words, pos, phrase, depth, tree
    corpus = build_corpus(g, n=10_000, seed=0); save_corpus(corpus, "runs/corpus")
    corpus = build_subtoken_corpus(g, hf_tokenizer, n=10_000, seed=0)   # a pretrained model's sub-tokens
    is_grammatical(g, ["she", "sees"])

Imports nothing from ``spade_lens`` or ``hooks``.
"""

from pcfg.builtin import BUILTIN_GRAMMARS, load_grammar
from pcfg.corpus import LABEL_COLUMNS, NO_LABEL, Corpus, build_corpus, load_corpus, save_corpus
from pcfg.errors import PCFGError
from pcfg.grammar import POS_FULL_NAMES, Grammar, Rule
from pcfg.parser import grammaticality_rate, is_grammatical
from pcfg.sampler import Sentence, iter_sentences, sample_sentences
from pcfg.subtokens import LABEL_POLICIES, build_subtoken_corpus, vocab_fingerprint
from pcfg.tokenizer import Tokenizer

__all__ = [
    "BUILTIN_GRAMMARS",
    "LABEL_COLUMNS",
    "LABEL_POLICIES",
    "NO_LABEL",
    "POS_FULL_NAMES",
    "Corpus",
    "Grammar",
    "PCFGError",
    "Rule",
    "Sentence",
    "Tokenizer",
    "build_corpus",
    "build_subtoken_corpus",
    "grammaticality_rate",
    "is_grammatical",
    "iter_sentences",
    "load_corpus",
    "load_grammar",
    "sample_sentences",
    "save_corpus",
    "vocab_fingerprint",
]
