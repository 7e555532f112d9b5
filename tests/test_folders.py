"""One writer per folder, crash leftovers cleaned, umask permissions (hooks.folders and pcfg's copy)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest
from _bad_inputs import other_writer

import pcfg._folders as pcfg_folders
from hooks import HooksError
from hooks.folders import clean_leftovers, lock_path, readable, user_entries, writing
from pcfg import PCFGError, build_corpus, load_corpus, load_grammar, save_corpus
from spade_lens.cli import main


def _cli(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "spade_lens", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)})


def test_two_concurrent_corpus_writers_cannot_both_report_success(tmp_path, capsys):
    out = tmp_path / "corpus"
    first = _cli("corpus", "--n", "20000", "--seed", "1", "--out", str(out), "--no-progress")
    deadline = time.monotonic() + 60
    while not lock_path(out).exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    second = main(["corpus", "--n", "10", "--seed", "2", "--out", str(out), "--no-progress"])
    first_out, first_err = first.communicate(timeout=300)
    assert not (first.returncode == 0 and second == 0), "both writers reported success"
    assert first.returncode == 0, first_err
    assert second == 2 and "another process (pid" in capsys.readouterr().err
    assert load_corpus(out).metadata["seed"] == 1  # the one that reported success is what is there
    assert not lock_path(out).exists() and user_entries(tmp_path) == ["corpus"]


def test_a_held_folder_is_refused_by_every_writer_and_free_again_after(tmp_path):
    corpus = build_corpus(load_grammar("english"), n=5, seed=0, progress=False)
    with other_writer(tmp_path / "c"):
        with pytest.raises(PCFGError, match="another process .* is writing it now"):
            save_corpus(corpus, tmp_path / "c")
        with pytest.raises(HooksError, match="another process"), writing(tmp_path / "c"):
            pass
    save_corpus(corpus, tmp_path / "c")  # the holder exited: the lock went with it
    assert load_corpus(tmp_path / "c").metadata["n"] == 5


def test_the_lock_is_reentrant_within_a_process_across_pcfg_and_hooks(tmp_path):
    target = tmp_path / "x"
    with writing(target), pcfg_folders.writing(target), writing(target):
        assert lock_path(target).read_text() == str(os.getpid())
    assert not lock_path(target).exists()


def test_leftovers_of_a_crash_are_cleaned_and_an_orphaned_previous_version_restored(tmp_path):
    dead = _dead_pid()
    target = tmp_path / "corpus"
    (tmp_path / f".corpus.tmp-{dead}").mkdir()  # a half-written folder of a killed writer
    (tmp_path / f".corpus.tmp-{dead}" / "data.arrow").write_bytes(b"half")
    old = tmp_path / f".corpus.old-{dead}"  # killed between the two renames of a swap: target missing
    save_corpus(build_corpus(load_grammar("english"), n=5, seed=0, progress=False), old)
    alive = tmp_path / f"corpus.tmp-{os.getpid()}"  # a live writer's (ours): left alone
    alive.mkdir()
    clean_leftovers(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", alive.name]
    assert load_corpus(target).metadata["n"] == 5


def test_save_corpus_cleans_leftovers_of_a_killed_save(tmp_path):
    dead = _dead_pid()
    (tmp_path / f".c.tmp-{dead}").mkdir()
    save_corpus(build_corpus(load_grammar("english"), n=5, seed=0, progress=False), tmp_path / "c")
    assert user_entries(tmp_path) == ["c"] and sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_files_get_the_umask_permissions(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    old = os.umask(0o027)
    try:
        readable(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(old)
    readable(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~old


def test_written_weights_and_shards_are_readable_by_others(tmp_path):
    import torch
    from _hooks_helpers import HOOK, coded_source, tiny_ht

    import spade_lens as sl
    from hooks import harvest

    old = os.umask(0o022)
    try:
        sl.create_sae("relu", d_in=4, d_sae=8).save(tmp_path / "sae")
        harvest(tiny_ht(), coded_source(4), [HOOK], tmp_path / "acts", progress=False)
    finally:
        os.umask(old)
    files = [*(tmp_path / "sae").glob("*.safetensors"), *(tmp_path / "acts").rglob("*.safetensors")]
    assert len(files) == 4 and torch.tensor([stat.S_IMODE(f.stat().st_mode) for f in files]).eq(0o644).all()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
