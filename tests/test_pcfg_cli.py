"""`spade-lens corpus` and `spade-lens grammar check`, run in-process."""

import datasets

from pcfg import load_corpus
from spade_lens.cli import main


def test_corpus_command_writes_a_loadable_corpus(tmp_path, capsys):
    out = tmp_path / "corpus"
    code = main(["corpus", "--grammar", "rich", "--n", "50", "--seed", "2", "--out", str(out),
                 "--val-fraction", "0.2", "--max-length", "20", "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "50 sentences (train 40, validation 10), seed 2" in text
    assert "words per sentence: min" in text and "Det (determiner)" in text and "phrase label counts" in text
    corpus = load_corpus(out)
    assert corpus.metadata["max_length"] == 20 and corpus.metadata["grammar"] == "rich"
    assert datasets.load_from_disk(str(out))["validation"].num_rows == 10


def test_corpus_command_with_a_grammar_file(tmp_path, capsys):
    path = tmp_path / "mini.pcfg"
    path.write_text("S -> 'a' S [0.3] | 'b' [0.7]\n")
    assert main(["corpus", "--grammar", str(path), "--n", "10", "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    assert "corpus of grammar 'mini'" in capsys.readouterr().out


def test_corpus_command_errors_exit_2(tmp_path, capsys):
    assert main(["corpus", "--grammar", "klingon", "--n", "5", "--out", str(tmp_path / "c")]) == 2
    assert "'klingon' is neither a built-in grammar" in capsys.readouterr().err
    assert main(["corpus", "--n", "0", "--out", str(tmp_path / "c")]) == 2
    assert "n: expected an int >= 1, got 0" in capsys.readouterr().err


def test_grammar_check_prints_symbols_length_entropy(capsys):
    assert main(["grammar", "check", "english"]) == 0
    text = capsys.readouterr().out
    assert "grammar 'english': OK" in text
    assert "parts of speech:  6: Adj (adjective), Adv (adverb), Conj (conjunction), N (noun)" in text
    assert "expected length:  7.5556 words per sentence" in text
    assert "entropy:" in text and "nats per sentence" in text


def test_grammar_check_bad_file_exits_2_with_the_error(tmp_path, capsys):
    path = tmp_path / "bad.pcfg"
    path.write_text("S -> S S [0.6] | 'a' [0.4]\n")
    assert main(["grammar", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "spade-lens grammar: error:" in err and "bad.pcfg" in err and "spectral radius 1.2 >= 1" in err
    path.write_text("S -> 'a' [0.5]\nS -> 'b' [0.4]\n")
    assert main(["grammar", "check", str(path)]) == 2
    assert "rules of 'S' sum to 0.9" in capsys.readouterr().err
