"""reuse_freed_memory: glibc's policy changes inside the block only, nested blocks share it, and it can be opted out."""

from __future__ import annotations

import platform

import pytest

from spade_lens.training import memory


@pytest.fixture
def glibc_calls(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append(("mallopt", param, value))
            return 1

        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return 1

    for name in ("SPADE_LENS_MALLOC", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(memory.platform, "system", lambda: "Linux")
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *a, **k: FakeLibc())
    return calls


def test_policy_set_on_entry_and_restored_on_exit_once_when_nested(glibc_calls):
    with memory.reuse_freed_memory() as changed:
        assert changed
        assert glibc_calls == [("mallopt", memory._M_MMAP_MAX, 0), ("mallopt", memory._M_TRIM_THRESHOLD,
                                                                      memory._HOLD_TRIM)]
        with memory.reuse_freed_memory():
            assert len(glibc_calls) == 2  # the inner block changes nothing
        assert len(glibc_calls) == 2  # nor restores anything on leaving
    assert glibc_calls[2:] == [("mallopt", memory._M_MMAP_MAX, memory._DEFAULT_MMAP_MAX),
                               ("mallopt", memory._M_TRIM_THRESHOLD, memory._DEFAULT_TRIM), ("trim", 0)]
    assert memory._depth == 0


def test_restored_after_an_error(glibc_calls):
    with pytest.raises(RuntimeError), memory.reuse_freed_memory():
        raise RuntimeError("boom")
    assert glibc_calls[-1] == ("trim", 0) and memory._depth == 0


@pytest.mark.parametrize("env", [("SPADE_LENS_MALLOC", "default"), ("MALLOC_MMAP_MAX_", "0"),
                                 ("MALLOC_TRIM_THRESHOLD_", "1000")])
def test_opt_out_and_user_policy_leave_glibc_alone(glibc_calls, monkeypatch, env):
    monkeypatch.setenv(*env)
    with memory.reuse_freed_memory() as changed:
        assert not changed
    assert glibc_calls == []


def test_other_platforms_do_nothing(glibc_calls, monkeypatch):
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("", ""))
    with memory.reuse_freed_memory() as changed:
        assert not changed
    assert glibc_calls == []


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_real_glibc_accepts_the_calls(monkeypatch):
    for name in ("SPADE_LENS_MALLOC", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    with memory.reuse_freed_memory() as changed:
        assert changed
        block = bytearray(80 << 20)  # above the mmap threshold: served from the heap inside
        del block


def test_disabled_block_leaves_glibc_alone(glibc_calls):
    with memory.reuse_freed_memory(enabled=False) as changed:
        assert not changed
    assert glibc_calls == []


@pytest.mark.parametrize(("width", "batch", "expected"), [(256, 64, False), (2048, 4096, True)])
def test_trainer_changes_the_policy_only_for_large_temporaries(monkeypatch, width, batch, expected):
    import torch

    from spade_lens.saes import create_sae
    from spade_lens.training import SAETrainConfig, train_saes

    seen = []
    real = memory.reuse_freed_memory

    def spy(enabled=True):
        seen.append(enabled)
        return real(False)

    monkeypatch.setattr("spade_lens.training.trainer.reuse_freed_memory", spy)
    sae = create_sae("relu", d_in=2, d_sae=width, seed=0)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    train_saes({"relu": sae}, [x], SAETrainConfig(steps=1, batch_size=batch, norm_batches=1), progress=False)
    assert seen == [expected]
