"""Check a ``--device`` / ``device=`` argument before any work is done."""

from __future__ import annotations

from typing import Any

from spade_lens.errors import SpadeLensError


def check_device(device: Any, arg: str = "device") -> Any:
    """``device`` unchanged when torch can use it (None passes); SpadeLensError naming ``arg`` otherwise.

    Checked before any work: an unknown name, CUDA without a CUDA build or GPU, an index past the GPU count,
    MPS where there is none.
    """
    if device is None:
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise SpadeLensError(f"{arg}: {device!r} is not a torch device ({str(err).splitlines()[0][:80]}); "
                             "expected e.g. 'cpu', 'cuda' or 'cuda:0'") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SpadeLensError(f"{arg}: {device!r} asked for a GPU, but torch {torch.__version__} sees no CUDA "
                                 "device here; expected 'cpu' (or install a CUDA build of torch on a GPU machine)")
        if dev.index is not None and dev.index >= count:
            raise SpadeLensError(f"{arg}: {device!r}: this machine has {count} CUDA device(s) (0..{count - 1})")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SpadeLensError(f"{arg}: {device!r}: MPS is not available on this machine; expected 'cpu'")
    elif dev.type not in ("cpu", "cuda", "mps", "meta"):
        raise SpadeLensError(f"{arg}: {device!r}: spade-lens runs on 'cpu', 'cuda' or 'mps' devices")
    return device


def resolve_device(device: Any, arg: str = "device") -> str:
    """``device`` once checked (:func:`check_device`), or the default: ``cuda`` when torch sees a GPU, else ``cpu``."""
    checked = check_device(device, arg)
    if checked is not None:
        return str(checked)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation on this machine (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(what: str, n_bytes: int, device: Any = None) -> None:
    """SpadeLensError naming ``what`` when ``n_bytes`` exceed the memory available on a CPU ``device``."""
    import torch

    if device is not None and torch.device(device).type != "cpu":
        return
    free = available_memory()
    if free is not None and n_bytes > free:
        raise SpadeLensError(f"{what} would need about {n_bytes / 2**30:.3g} GiB of memory; {free / 2**30:.3g} GiB is "
                             "available; expected a smaller size")
