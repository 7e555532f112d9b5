"""The bad-input audit: every subcommand and the public API fed inputs a new user gets wrong.

Each case must end in one line naming the argument or file (exit code 2, or the project's exception from the
API), never a traceback, never a silent wrong answer, and must leave the user's files as they were. A few
inputs that used to crash now work (their expected code is 0, with a note). ``tests/test_bad_inputs.py``
asserts every row; ``python tests/_bad_inputs.py`` prints the table (input, exit code, message).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

HOOK = "blocks.0.hook_resid_post"
HOLD_LOCK = ("import sys; from hooks.folders import writing\n"
             "with writing(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()\n")


@dataclass
class Outcome:
    code: int | str
    """Exit code (API: 2 for the project's exception, 0 for none), or "traceback"."""
    message: str
    lines: int
    """Lines the command wrote to stderr (its error) besides warnings."""
    changed: list[str] = field(default_factory=list)
    """Protected files or folders that were changed or deleted."""


@dataclass
class Case:
    name: str
    given: str
    """What the user did, as the table shows it."""
    run: Callable[[World], Any]
    """Prepares the inputs and returns CLI argv (a list) or a callable that makes the API call."""
    expect: str
    """A substring of the message."""
    code: int = 2
    keep: Callable[[World], list[Path]] = lambda w: []
    """Paths that must be the same after the case."""
    around: Callable[[World], Any] | None = None
    """A context manager the case runs inside (e.g. another process holding the folder)."""


class World:
    """The folders the cases start from: tiny corpora, a model, activation caches, SAEs, in ``root``."""

    def __init__(self, root: Path) -> None:
        from hooks import harvest
        from pcfg import build_corpus, load_grammar, save_corpus
        from spade_lens.lm import LMConfig, LMTrainConfig, train_lm
        from spade_lens.saes import create_sae
        from spade_lens.training import SAETrainConfig, train_saes

        self.root = root
        english = load_grammar("english")
        corpus = build_corpus(english, n=200, seed=0, max_length=12, progress=False)
        self.corpus = save_corpus(corpus, root / "corpus")
        self.corpus_seed1 = save_corpus(build_corpus(english, n=200, seed=1, max_length=12, progress=False),
                                        root / "corpus_seed1")
        self.rich = save_corpus(build_corpus(load_grammar("rich"), n=40, seed=0, max_length=12, progress=False),
                                root / "corpus_rich")
        self.corpus_val0 = save_corpus(build_corpus(english, n=20, seed=0, val_fraction=0, progress=False),
                                       root / "corpus_val0")
        lm_cfg = LMConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32)
        self.lm = root / "lm"
        model = train_lm(corpus, lm_cfg, LMTrainConfig(steps=3, batch_size=16, warmup_steps=1), self.lm,
                         progress=False)
        self.acts = root / "acts"
        cache = harvest(model, corpus.dataset["train"], [HOOK], self.acts, shard_tokens=256, progress=False,
                        source_tokenizer=corpus.tokenizer)
        self.acts_val = root / "acts_val"
        harvest(model, corpus.dataset["validation"], [HOOK], self.acts_val, progress=False,
                source_tokenizer=corpus.tokenizer)
        self.saes = root / "saes"
        saes = {"relu": create_sae("relu", d_in=16, d_sae=16, hook_name=HOOK),
                "topk": create_sae("topk", d_in=16, d_sae=16, k=4, hook_name=HOOK)}
        train_saes(saes, lambda: cache.batches(HOOK, 64, seed=0), SAETrainConfig(steps=4, batch_size=64),
                   out_dir=self.saes, progress=False)
        self.sae = self.saes / "relu"
        self.quick_run = root / "quick_run"  # a run folder whose first stage is done (a --quick corpus)
        save_corpus(build_corpus(english, n=600, seed=0, progress=False), self.quick_run / "corpus")
        self._n = 0

    def scratch(self, name: str) -> Path:
        """A new path (not created) under ``root/scratch``."""
        self._n += 1
        return self.root / "scratch" / f"{self._n:02d}-{name}"

    def copy(self, source: Path, name: str) -> Path:
        target = self.scratch(name)
        shutil.copytree(source, target)
        return target

    def user_file(self, name: str = "notes.txt") -> Path:
        path = self.scratch(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("a user's file that must survive\n")
        return path

    def user_folder(self) -> Path:
        path = self.scratch("thesis")
        path.mkdir(parents=True)
        (path / "chapter1.tex").write_text("precious\n")
        return path


# ---------------------------------------------------------------------------------------------------- damage
def _first(folder: Path, pattern: str) -> Path:
    return sorted(folder.rglob(pattern))[0]


def _truncate(path: Path, keep: int = 300) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _set_tensor(file: Path, name: str, value: float) -> None:
    tensors = load_file(file)
    tensors[name].view(-1)[0] = value
    save_file(tensors, file)


def truncated_shard(w: World) -> Path:
    acts = w.copy(w.acts, "acts_truncated")
    _truncate(_first(acts / "acts", "*.safetensors"), 500)
    return acts


def missing_shard(w: World) -> Path:
    acts = w.copy(w.acts, "acts_missing")
    _first(acts / "labels", "*.safetensors").unlink()
    return acts


def legacy_truncated_shard(w: World) -> Path:
    """A cache of an earlier version (no recorded shard sizes, no provenance) with a truncated shard."""
    import json

    acts = w.copy(w.acts_val, "acts_legacy")
    manifest = json.loads((acts / "manifest.json").read_text())
    for shard in manifest["shards"]:
        shard.pop("bytes", None)
    (acts / "manifest.json").write_text(json.dumps(manifest))
    (acts / "provenance.json").unlink()
    _truncate(_first(acts / "acts", "*.safetensors"), 500)
    return acts


def corpus_damaged(w: World, how: str) -> Path:
    corpus = w.copy(w.corpus, f"corpus_{how}")
    arrow = _first(corpus / "train", "*.arrow")
    if how == "missing":
        arrow.unlink()
    else:
        _truncate(arrow)
    return corpus


def sae_damaged(w: World, how: str) -> Path:
    sae = w.copy(w.sae, f"sae_{how}")
    weights = sae / "sae_weights.safetensors"
    if how == "missing":
        weights.unlink()
    elif how == "truncated":
        _truncate(weights)
    elif how == "edited":
        _set_tensor(weights, "W_enc", 123.0)
    elif how == "nan":
        _set_tensor(sae / "spade_lens_state.safetensors", "W_enc", float("nan"))
        _set_tensor(weights, "W_enc", float("nan"))
    return sae


def lm_damaged(w: World, how: str) -> Path:
    lm = w.copy(w.lm, f"lm_{how}")
    weights = lm / "model.safetensors"
    if how == "nan":
        _set_tensor(weights, "embed.W_E", float("inf"))
    else:
        _truncate(weights)
    return lm


def grammar_file(w: World, how: str) -> Path:
    path = w.scratch(f"{how}.pcfg")
    path.parent.mkdir(parents=True, exist_ok=True)
    english = (w.corpus / "grammar.pcfg").read_text(encoding="utf-8")
    if how == "latin1":
        path.write_bytes(english.replace("quickly", "rápido").encode("latin-1"))
    else:
        path.write_bytes(bytes(range(256)) * 4)
    return path


def _text_file(w: World, name: str, text: str) -> Path:
    path = w.scratch(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def incomplete_cache(w: World) -> Path:
    import json

    acts = w.copy(w.acts, "acts_incomplete")
    manifest = json.loads((acts / "manifest.json").read_text())
    manifest["complete"] = False  # as if the harvest were killed
    (acts / "manifest.json").write_text(json.dumps(manifest))
    return acts


def with_checkpoint(w: World) -> Path:
    lm = w.copy(w.lm, "lm_interrupted")
    for path in lm.iterdir():  # as after a Ctrl-C: only the checkpoint is there
        if path.name != "checkpoint":
            path.unlink()
    return lm


@contextlib.contextmanager
def other_writer(path: Path) -> Iterator[None]:
    """Another process holding the write lock of ``path`` for the duration of the block."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield
    finally:
        proc.communicate("", timeout=60)


# ---------------------------------------------------------------------------------------------------- cases
def _cases() -> list[Case]:
    S, Q = str, "--no-progress"
    probe = ["probe", "--no-plots", Q]

    def sae_args(w: World) -> list[str]:
        return ["--sae", S(w.sae), "--activations", S(w.acts_val)]

    def harvest(w: World, corpus: Path, out: Path | None = None, *extra: str) -> list[str]:
        return ["harvest", "--model", S(w.lm), "--corpus", S(corpus), "--hook", HOOK,
                "--out", S(out or w.scratch("acts")), Q, *extra]

    def train_sae(w: World, acts: Path, out: Path | None = None, *extra: str) -> list[str]:
        return ["train-sae", "--activations", S(acts), "--out", S(out or w.scratch("saes")), "--arch", "relu",
                "--width", "16", "--tokens", "256", "--batch-size", "64", Q, *extra]

    def train_lm(w: World, corpus: Path, out: Path | None = None, *extra: str) -> list[str]:
        return ["train-lm", "--corpus", S(corpus), "--out", S(out or w.scratch("lm")), "--steps", "2",
                "--n-layers", "1", "--d-model", "16", "--n-heads", "2", "--d-head", "8", "--d-mlp", "32",
                "--judge", "0", Q, *extra]

    def sweep(w: World, arch: str = "relu") -> list[str]:
        return ["sweep", "--activations", S(w.acts), "--eval-activations", S(w.acts_val), "--arch", arch,
                "--width", "16", "--steps", "2", "--batch-size", "64", "--balanced", "0", Q]

    def api_probe_report(w: World, target: Path) -> Callable[[], Any]:
        from hooks import ActivationCache
        from spade_lens.probe import probe_saes
        from spade_lens.report import write_report
        from spade_lens.saes import load_sae

        cache = ActivationCache(w.acts_val)
        results = probe_saes({"relu": load_sae(w.sae)}, cache.batches(HOOK, 256, shuffle=False), label="pos",
                             progress=False)
        return partial(write_report, results, target, plots=False)

    import pcfg
    import spade_lens as sl
    from hooks import ActivationCache

    cases = [
        # ---- corpus
        Case("corpus-out-file", "corpus --out <an existing file>",
             lambda w: ["corpus", "--n", "10", "--out", S(w.user_file()), Q], "is a file",
             keep=lambda w: [w.root / "scratch"]),
        Case("corpus-out-folder", "corpus --out <a folder of the user's files>",
             lambda w: ["corpus", "--n", "10", "--out", S(w.user_folder()), Q], "holds other files (chapter1.tex)",
             keep=lambda w: [w.root / "scratch"]),
        Case("corpus-out-under-file", "corpus --out <file>/sub (cannot be created)",
             lambda w: ["corpus", "--n", "10", "--out", S(w.user_file() / "sub"), Q], "is a file, not a folder"),
        Case("corpus-out-unwritable", "corpus --out /sys/spade-lens-audit (not writable)",
             lambda w: ["corpus", "--n", "10", "--out", "/sys/spade-lens-audit", Q], "cannot write in '/sys'"),
        Case("corpus-out-grammar", "corpus --grammar my.pcfg --out my.pcfg",
             lambda w: ["corpus", "--n", "10", "--grammar", S(p := grammar_file(w, "latin1")), "--out", S(p), Q],
             "is the input"),
        Case("corpus-binary-grammar", "corpus --grammar <a binary file>",
             lambda w: ["corpus", "--n", "10", "--grammar", S(grammar_file(w, "binary")), "--out",
                        S(w.scratch("c")), Q], "is not UTF-8 text"),
        Case("corpus-latin1-grammar", "corpus --grammar <a Latin-1 .pcfg>",
             lambda w: ["corpus", "--n", "10", "--grammar", S(grammar_file(w, "latin1")), "--out",
                        S(w.scratch("c")), Q], "is not UTF-8 text (byte 0xe1"),
        Case("corpus-no-grammar", "corpus --grammar englsh",
             lambda w: ["corpus", "--n", "10", "--grammar", "englsh", "--out", S(w.scratch("c")), Q],
             "is neither a built-in grammar"),
        Case("corpus-n-zero", "corpus --n 0", lambda w: ["corpus", "--n", "0", "--out", S(w.scratch("c")), Q],
             "n: expected"),
        Case("corpus-n-absurd", "corpus --n 99999999999",
             lambda w: ["corpus", "--n", "99999999999", "--out", S(w.scratch("c")), Q], "expected a smaller --n"),
        Case("corpus-max-length", "corpus --max-length 1 (no sentence of the grammar is that short)",
             lambda w: ["corpus", "--n", "10", "--max-length", "1", "--out", S(w.scratch("c")), Q],
             "expected a larger max_length"),
        Case("corpus-val-fraction", "corpus --val-fraction 1.5",
             lambda w: ["corpus", "--n", "10", "--val-fraction", "1.5", "--out", S(w.scratch("c")), Q],
             "val_fraction: expected a number in [0, 1)"),
        Case("corpus-val0", "corpus --val-fraction 0 (used to write an unloadable split)",
             lambda w: ["corpus", "--n", "10", "--val-fraction", "0", "--out", S(w.scratch("c")), Q],
             "note: the validation split is empty", code=0),
        Case("corpus-concurrent", "corpus --out X while another process writes X",
             lambda w: ["corpus", "--n", "10", "--out", S(w.root / "contested"), Q], "another process (pid",
             around=lambda w: other_writer(w.root / "contested")),
        # ---- grammar
        Case("grammar-binary", "grammar check <a binary file>",
             lambda w: ["grammar", "check", S(grammar_file(w, "binary"))], "is not UTF-8 text"),
        Case("grammar-probabilities", "grammar check <rules of S summing to 0.5>",
             lambda w: ["grammar", "check", S(_text_file(w, "half.pcfg", "S -> 'a' [0.5]\n"))],
             "probabilities of the rules of 'S' sum to 0.5"),
        Case("grammar-folder", "grammar check <a folder>", lambda w: ["grammar", "check", S(w.root)],
             "is neither a built-in grammar"),
        # ---- train-lm
        Case("lm-no-corpus", "train-lm --corpus <missing>", lambda w: train_lm(w, w.root / "nope"),
             "does not exist or is not a folder"),
        Case("lm-corpus-is-cache", "train-lm --corpus <an activation cache>", lambda w: train_lm(w, w.acts),
             "is not a corpus: missing"),
        Case("lm-corpus-truncated", "train-lm --corpus <corpus with a truncated .arrow file>",
             lambda w: train_lm(w, corpus_damaged(w, "truncated")), "data-00000-of-00001.arrow' cannot be read"),
        Case("lm-corpus-missing-arrow", "train-lm --corpus <corpus with a missing .arrow file>",
             lambda w: train_lm(w, corpus_damaged(w, "missing")), "data-00000-of-00001.arrow' is missing"),
        Case("lm-out-file", "train-lm --out <an existing file>", lambda w: train_lm(w, w.corpus, w.user_file()),
             "is a file", keep=lambda w: [w.root / "scratch"]),
        Case("lm-out-corpus", "train-lm --out <its own --corpus>", lambda w: train_lm(w, w.corpus, w.corpus),
             "is the input", keep=lambda w: [w.corpus]),
        Case("lm-checkpoint", "train-lm into an interrupted run's folder, no --resume",
             lambda w: train_lm(w, w.corpus, with_checkpoint(w)), "holds the checkpoint of an interrupted training (step 3); pass"),
        Case("lm-model-exists", "train-lm --out <a trained model>, no --overwrite",
             lambda w: train_lm(w, w.corpus, w.lm), "holds a trained model; pass overwrite", keep=lambda w: [w.lm]),
        Case("lm-device", "train-lm --device cuda:3 (no GPU)",
             lambda w: train_lm(w, w.corpus, None, "--device", "cuda:3"), "--device: 'cuda:3'"),
        Case("lm-steps", "train-lm --steps 0", lambda w: train_lm(w, w.corpus, None, "--steps", "0"), "steps"),
        Case("lm-absurd", "train-lm --d-model 200000 --d-head 100000 (used to end in an allocator traceback)",
             lambda w: train_lm(w, w.corpus, None, "--d-model", "200000", "--d-head", "100000"),
             "LMConfig: training a model of"),
        Case("lm-resume-overwrite", "train-lm --resume --overwrite",
             lambda w: train_lm(w, w.corpus, None, "--resume", "--overwrite"), "expected at most one"),
        Case("lm-val0", "train-lm on a corpus with an empty validation split (used to crash)",
             lambda w: train_lm(w, w.corpus_val0), "", code=0),
        # ---- sample
        Case("sample-no-model", "sample --model <missing>", lambda w: ["sample", "--model", S(w.root / "nope")],
             "does not exist"),
        Case("sample-nan", "sample --model <weights with inf>",
             lambda w: ["sample", "--model", S(lm_damaged(w, "nan")), "--n", "5"], "NaN/inf value(s)"),
        Case("sample-truncated", "sample --model <truncated model.safetensors>",
             lambda w: ["sample", "--model", S(lm_damaged(w, "truncated")), "--n", "5"],
             "model.safetensors: not a safetensors file"),
        Case("sample-absurd", "sample --n 10000000000 (used to run until killed)",
             lambda w: ["sample", "--model", S(w.lm), "--n", "10000000000"], "n: 10,000,000,000 samples would need"),
        Case("sample-device", "sample --device nonsense",
             lambda w: ["sample", "--model", S(w.lm), "--device", "nonsense"], "is not a torch device"),
        # ---- harvest
        Case("harvest-other-grammar", "harvest an english model on a `rich` corpus",
             lambda w: harvest(w, w.rich), "source_tokenizer: the source's token ids come from another tokenizer"),
        Case("harvest-other-split", "harvest --split train into a cache of the validation split",
             lambda w: harvest(w, w.corpus, w.copy(w.acts_val, "acts"), "--split", "train"),
             "holds a harvest of another source (split 'validation'"),
        Case("harvest-other-corpus", "harvest another corpus (seed 1) into an existing cache",
             lambda w: harvest(w, w.corpus_seed1, w.copy(w.acts, "acts")), "holds a harvest of another source"),
        Case("harvest-no-split", "harvest --split test", lambda w: harvest(w, w.corpus, None, "--split", "test"),
             "the corpus has no split 'test'"),
        Case("harvest-empty-split", "harvest --split validation of a --val-fraction 0 corpus",
             lambda w: harvest(w, w.corpus_val0, None, "--split", "validation"), "has no sentences"),
        Case("harvest-bad-hook", "harvest --hook blocks.9.hook_resid_post",
             lambda w: ["harvest", "--model", S(w.lm), "--corpus", S(w.corpus), "--hook",
                        "blocks.9.hook_resid_post", "--out", S(w.scratch("a")), Q], "is not a hook point"),
        Case("harvest-out-corpus", "harvest --out <its own --corpus>", lambda w: harvest(w, w.corpus, w.corpus),
             "is the input", keep=lambda w: [w.corpus]),
        Case("harvest-out-file", "harvest --out <an existing file>",
             lambda w: harvest(w, w.corpus, w.user_file()), "is a file", keep=lambda w: [w.root / "scratch"]),
        Case("harvest-device", "harvest --device cuda (no GPU)",
             lambda w: harvest(w, w.corpus, None, "--device", "cuda"), "sees no CUDA device"),
        Case("harvest-max-tokens", "harvest --max-tokens 0", lambda w: harvest(w, w.corpus, None, "--max-tokens", "0"),
             "max_tokens: expected a positive integer, got 0"),
        # ---- train-sae
        Case("sae-missing-shard", "train-sae --activations <cache with a deleted shard>",
             lambda w: train_sae(w, missing_shard(w)), "labels/shard-00000.safetensors is missing"),
        Case("sae-truncated-shard", "train-sae --activations <cache with a truncated shard>",
             lambda w: train_sae(w, truncated_shard(w)), "(truncated?)"),
        Case("sae-out-file", "train-sae --out <an existing file>", lambda w: train_sae(w, w.acts, w.user_file()),
             "is a file", keep=lambda w: [w.root / "scratch"]),
        Case("sae-out-acts", "train-sae --out <its own --activations>", lambda w: train_sae(w, w.acts, w.acts),
             "is the input", keep=lambda w: [w.acts]),
        Case("sae-arch", "train-sae --arch relu,nope", lambda w: train_sae(w, w.acts, None, "--arch", "relu,nope"),
             "--arch: received 'relu,nope'"),
        Case("sae-k-default", "train-sae --arch topk --width 16 (default k=32 > width)",
             lambda w: train_sae(w, w.acts, None, "--arch", "topk"), "--k: TopK's default k=32 is more than"),
        Case("sae-width-absurd", "train-sae --width 1000000000",
             lambda w: train_sae(w, w.acts, None, "--width", "1000000000"), "GiB of memory; "),
        Case("sae-device", "train-sae --device cuda (no GPU)",
             lambda w: train_sae(w, w.acts, None, "--device", "cuda"), "sees no CUDA device"),
        Case("sae-exists", "train-sae --out <trained SAEs>, no --overwrite",
             lambda w: train_sae(w, w.acts, w.saes), "already holds trained SAEs (relu, topk); pass --overwrite",
             keep=lambda w: [w.saes]),
        Case("sae-resume-nothing", "train-sae --resume into a new folder",
             lambda w: train_sae(w, w.acts, None, "--resume"), "resume=True but there is no checkpoint"),
        Case("sae-tokens", "train-sae --tokens 0", lambda w: train_sae(w, w.acts, None, "--tokens", "0"),
             "--tokens: received 0"),
        # ---- probe
        Case("probe-out-file", "probe --out <an existing file> (used to delete it, exit 0)",
             lambda w: [*probe, *sae_args(w), "--out", S(w.user_file())], "is a file",
             keep=lambda w: [w.root / "scratch"]),
        Case("probe-out-folder", "probe --out <a folder of the user's files> (used to delete it)",
             lambda w: [*probe, *sae_args(w), "--out", S(w.user_folder())], "holds other files",
             keep=lambda w: [w.root / "scratch"]),
        Case("probe-out-sae", "probe --out <the SAE folder being probed> (used to delete it)",
             lambda w: [*probe, *sae_args(w), "--out", S(w.sae)], "is the input", keep=lambda w: [w.saes]),
        Case("probe-out-acts", "probe --out <its --activations> (used to delete them)",
             lambda w: [*probe, *sae_args(w), "--out", S(w.acts_val)], "is the input", keep=lambda w: [w.acts_val]),
        Case("probe-out-parent", "probe --out <the folder holding the SAEs>",
             lambda w: [*probe, *sae_args(w), "--out", S(w.saes)], "holds the input", keep=lambda w: [w.saes]),
        Case("probe-sae-no-weights", "probe --sae <folder without sae_weights.safetensors> (used to exit 0)",
             lambda w: [*probe, "--sae", S(sae_damaged(w, "missing")), "--activations", S(w.acts_val), "--out",
                        S(w.scratch("r"))], "missing file"),
        Case("probe-sae-truncated", "probe --sae <truncated sae_weights.safetensors> (used to exit 0)",
             lambda w: [*probe, "--sae", S(sae_damaged(w, "truncated")), "--activations", S(w.acts_val),
                        "--out", S(w.scratch("r"))], "not a valid safetensors file"),
        Case("probe-sae-edited", "probe --sae <sae_weights.safetensors changed after saving> (used to exit 0)",
             lambda w: [*probe, "--sae", S(sae_damaged(w, "edited")), "--activations", S(w.acts_val), "--out",
                        S(w.scratch("r"))], "the folder was changed after it was saved"),
        Case("probe-sae-nan", "probe --sae <NaN weights> (report used to show NMSE n/a)",
             lambda w: [*probe, "--sae", S(sae_damaged(w, "nan")), "--activations", S(w.acts_val), "--out",
                        S(w.scratch("r"))], "NaN/inf value(s)"),
        Case("probe-legacy-truncated", "probe --activations <old-format cache, truncated shard>",
             lambda w: [*probe, "--sae", S(w.sae), "--activations", S(legacy_truncated_shard(w)), "--out",
                        S(w.scratch("r"))], "cannot be read"),
        Case("probe-incomplete", "probe --activations <an interrupted harvest>",
             lambda w: [*probe, "--sae", S(w.sae), "--activations", S(incomplete_cache(w)), "--out",
                        S(w.scratch("r"))], "is incomplete"),
        Case("probe-label", "probe --label tense", lambda w: [*probe, *sae_args(w), "--label", "tense", "--out",
                                                              S(w.scratch("r"))], "--label: 'tense'"),
        Case("probe-device", "probe --device cuda:0 (no GPU)",
             lambda w: [*probe, *sae_args(w), "--device", "cuda:0", "--out", S(w.scratch("r"))],
             "sees no CUDA device"),
        # ---- sweep
        Case("sweep-out-file", "sweep --out <an existing file>",
             lambda w: [*sweep(w), "--out", S(w.user_file())], "is a file", keep=lambda w: [w.root / "scratch"]),
        Case("sweep-out-folder", "sweep --out <a folder of the user's files>",
             lambda w: [*sweep(w), "--out", S(w.user_folder())], "holds other files",
             keep=lambda w: [w.root / "scratch"]),
        Case("sweep-out-activations", "sweep --out <its own --activations>",
             lambda w: [*sweep(w), "--out", S(w.acts)], "is the input", keep=lambda w: [w.acts]),
        Case("sweep-no-heldout", "sweep --activations <a training cache, no held-out one>",
             lambda w: ["sweep", "--activations", S(w.acts), "--arch", "relu", "--out", S(w.scratch("sw")), Q],
             "expected held-out activations"),
        Case("sweep-eval-is-train", "sweep --eval-activations <the training cache itself>",
             lambda w: ["sweep", "--activations", S(w.acts), "--eval-activations", S(w.acts), "--arch", "relu",
                        "--out", S(w.scratch("sw")), Q], "probing on training data"),
        Case("sweep-arch-key", "sweep --arch topk:q=1,2",
             lambda w: [*sweep(w, "topk:q=1,2"), "--out", S(w.scratch("sw"))], "are not settings of 'topk'"),
        Case("sweep-arch-name", "sweep --arch spades:kds_coefficient=0.1",
             lambda w: [*sweep(w, "spades:kds_coefficient=0.1"), "--out", S(w.scratch("sw"))],
             "unknown SAE architecture 'spades'"),
        Case("sweep-seeds", "sweep --seeds 0,x",
             lambda w: [*sweep(w), "--seeds", "0,x", "--out", S(w.scratch("sw"))], "--seeds: received '0,x'"),
        Case("sweep-balanced-too-many", "sweep --balanced 100000 (more tokens per concept than held out)",
             lambda w: [*sweep(w), "--balanced", "100000", "--out", S(w.scratch("sw"))],
             "fewer tokens of some concepts"),
        Case("sweep-device", "sweep --device cuda (no GPU)",
             lambda w: [*sweep(w), "--device", "cuda", "--out", S(w.scratch("sw"))], "sees no CUDA device"),
        # ---- dashboard
        Case("dashboard-out-activations", "dashboard --out <inside its --activations>",
             lambda w: ["dashboard", "--sae", S(w.sae), "--activations", S(w.acts_val), "--corpus", S(w.corpus),
                        "--out", S(w.acts_val / "dash"), Q], "is, holds or lies inside the input",
             keep=lambda w: [w.acts_val]),
        Case("dashboard-out-folder", "dashboard --out <a folder of the user's files>",
             lambda w: ["dashboard", "--sae", S(w.sae), "--activations", S(w.acts_val), "--corpus", S(w.corpus),
                        "--out", S(w.user_folder()), Q], "is a non-empty folder that is not a dashboard",
             keep=lambda w: [w.root / "scratch"]),
        Case("dashboard-corpus", "dashboard --corpus <another corpus than the activations'>",
             lambda w: ["dashboard", "--sae", S(w.sae), "--activations", S(w.acts_val), "--corpus",
                        S(w.corpus_seed1), "--out", S(w.scratch("dash")), Q], "were not harvested from this corpus"),
        # ---- run
        Case("run-out-file", "run --out <an existing file>",
             lambda w: ["run", "--quick", Q, "--out", S(w.user_file())], "is a file",
             keep=lambda w: [w.root / "scratch"]),
        Case("run-out-folder", "run --out <a folder of the user's files>",
             lambda w: ["run", "--quick", Q, "--out", S(w.user_folder())], "holds other files",
             keep=lambda w: [w.root / "scratch"]),
        Case("run-grammar", "run --quick --grammar rich into an english run (used to reuse it)",
             lambda w: ["run", "--quick", Q, "--grammar", "rich", "--out", S(w.quick_run)],
             "grammar: recorded 'english", keep=lambda w: [w.quick_run]),
        Case("run-seed", "run --quick --seed 1 into a seed-0 run (used to reuse it)",
             lambda w: ["run", "--quick", Q, "--seed", "1", "--out", S(w.quick_run)], "seed: recorded 0, requested 1",
             keep=lambda w: [w.quick_run]),
        Case("run-full-into-quick", "run (full) into a --quick run folder (used to print the quick results)",
             lambda w: ["run", Q, "--out", S(w.quick_run)], "n: recorded 600, requested 100000",
             keep=lambda w: [w.quick_run]),
        Case("run-device", "run --device cuda:1 (no GPU)",
             lambda w: ["run", "--quick", Q, "--device", "cuda:1", "--out", S(w.scratch("run"))],
             "--device: 'cuda:1' asked for a GPU"),
        # ---- Python API
        Case("api-load-sae-missing", "load_sae(<folder without sae_weights.safetensors>)",
             lambda w: partial(sl.load_sae, sae_damaged(w, "missing")), "missing file"),
        Case("api-load-sae-nan", "load_sae(<NaN weights>)",
             lambda w: partial(sl.load_sae, sae_damaged(w, "nan")), "NaN/inf value(s)"),
        Case("api-cache-truncated", "ActivationCache(<cache with a truncated shard>)",
             lambda w: partial(ActivationCache, truncated_shard(w)), "(truncated?)"),
        Case("api-load-corpus", "load_corpus(<corpus with a truncated .arrow file>)",
             lambda w: partial(pcfg.load_corpus, corpus_damaged(w, "truncated")), "cannot be read"),
        Case("api-harvest-tokenizer", "harvest(model, rich['train'], ..., source_tokenizer=rich.tokenizer)",
             lambda w: partial(_harvest_rich, w), "come from another tokenizer"),
        Case("api-write-report-file", "write_report(results, <an existing file>)",
             lambda w: api_probe_report(w, w.user_file()), "is a file", keep=lambda w: [w.root / "scratch"]),
        Case("api-save-sae-folder", "sae.save(<a folder of the user's files>)",
             lambda w: partial(sl.load_sae(w.sae).save, w.user_folder()), "holds other files",
             keep=lambda w: [w.root / "scratch"]),
        Case("api-load-lm-nan", "load_lm(<weights with inf>)",
             lambda w: partial(sl.load_lm, lm_damaged(w, "nan")), "NaN/inf value(s)"),
        Case("api-train-lm-checkpoint", "train_lm(corpus, out_dir=<interrupted run>) without resume",
             lambda w: partial(sl.train_lm, w.corpus, out_dir=with_checkpoint(w), progress=False),
             "holds the checkpoint of an interrupted training"),
        Case("api-run-pipeline-file", "run_pipeline(<an existing file>)",
             lambda w: partial(sl.run_pipeline, w.user_file()), "is a file", keep=lambda w: [w.root / "scratch"]),
        Case("api-build-corpus-absurd", "build_corpus(english, n=10**12, seed=0)",
             lambda w: partial(pcfg.build_corpus, pcfg.load_grammar("english"), n=10**12, seed=0),
             "of memory to build"),
        Case("api-create-sae-device", "create_sae('spade', d_in=8, d_sae=8, device='cuda')",
             lambda w: partial(sl.create_sae, "spade", d_in=8, d_sae=8, device="cuda"), "sees no CUDA device"),
    ]
    return cases


def _harvest_rich(w: World) -> None:
    from hooks import harvest
    from pcfg import load_corpus
    from spade_lens.lm import load_lm

    rich = load_corpus(w.rich)
    harvest(load_lm(w.lm), rich.dataset["train"], [HOOK], w.scratch("a"), progress=False,
            source_tokenizer=rich.tokenizer)


CASES: list[Case] = _cases()


# ---------------------------------------------------------------------------------------------------- running
def _fingerprint(paths: list[Path]) -> dict[str, str]:
    out = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        if not root.exists():
            out[str(root)] = "missing"
    return out


def attempt(case: Case, world: World) -> Outcome:
    """Run one case; its exit code, its message (the error line, or a note for a case that now works)."""
    from spade_lens.cli import main
    from spade_lens.errors import USER_ERRORS

    err, out = io.StringIO(), io.StringIO()
    before: dict[str, str] = {}
    with case.around(world) if case.around else contextlib.nullcontext():
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                action = case.run(world)
                before = _fingerprint(case.keep(world))
                code: int | str = main(action) if isinstance(action, list) else (action(), 0)[1]
            message = ""
        except USER_ERRORS as e:
            code, message = 2, str(e)
        except SystemExit as e:  # argparse
            code, message = int(e.code or 0), ""
        except BaseException as e:  # noqa: BLE001 - the audit records every escape as a traceback
            code, message = "traceback", f"{type(e).__name__}: {e}"
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("spade-lens") or "Traceback" in ln]
    if not message:
        printed = [ln for ln in err.getvalue().splitlines() if ln.startswith("spade-lens")]
        notes = [ln for ln in out.getvalue().splitlines() if ln.startswith("note:")]
        message = (printed or notes or out.getvalue().splitlines() or [""])[-1]
    changed = [p for p, h in before.items() if _fingerprint([Path(p)]).get(p) != h]
    return Outcome(code, message, len(lines), changed)


def table(rows: list[tuple[Case, Outcome]], root: Path | None = None) -> str:
    """A markdown table of the outcomes; paths under ``root`` are shown relative to it."""
    def show(text: str) -> str:
        text = text.replace(f"{root}/", "").replace(str(root), ".") if root is not None else text
        return text.replace("|", "/")

    head = "| # | input | exit | message |\n|---|---|---|---|"
    body = [f"| {i} | {show(c.given)} | {o.code} | {show(o.message)} |" for i, (c, o) in enumerate(rows, 1)]
    return "\n".join([head, *body])


if __name__ == "__main__":
    import tempfile

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp))
        rows = [(case, attempt(case, world)) for case in CASES]
        print(table(rows, world.root))
    bad = [c.name for c, o in rows if o.code != c.code or c.expect not in o.message or o.changed]
    print(f"\n{len(rows)} inputs; tracebacks: {sum(o.code == 'traceback' for _, o in rows)}; "
          f"user files changed: {sum(bool(o.changed) for _, o in rows)}; not as expected: {bad or 'none'}")
