"""The GPU check: a short smoke test of spade-lens on CUDA, then each benchmark's figures on the GPU.

Run it where a GPU is lent (it takes a few minutes); on a machine without CUDA it says so and exits 0:

    python benchmarks/gpu_check.py              # everything
    python benchmarks/gpu_check.py --only smoke,precision --timeout 120

Steps (each in its own process, with a time limit; a failing step is reported and the others still run):

- ``smoke``: a tiny HookedTransformer on the GPU, a harvest of its activations, the four SAEs trained on them on the
  GPU in float32 and in bfloat16 (losses within 1% of each other), evaluated, saved and loaded back;
- ``sae_training``: ``bench_sae_training.py`` (ours vs SAELens; ours only when sae_lens is not installed);
- ``spade_step``: ``bench_spade_step.py`` (SpaDE vs TopK step);
- ``sparsemax``: ``bench_sparsemax.py``;
- ``precision``: ``bench_precision.py`` (bfloat16 autocast vs float32);
- ``large_cache``: ``bench_large_cache.py`` on a 1 GiB cache (peak host RSS, streamed vs in-memory throughput);
- ``distributed``: ``bench_distributed.py`` with NCCL, one rank per GPU (needs 2 GPUs; says so otherwise).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def smoke(device: str = "cuda") -> None:
    """The pipeline's GPU path end to end on tiny shapes (raises on any failure); ``device`` only to try it elsewhere."""
    import warnings

    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from hooks import ActivationCache, harvest
    from spade_lens.metrics import evaluate_sae
    from spade_lens.saes import create_sae, load_sae
    from spade_lens.training import SAETrainConfig, train_saes

    hook = "blocks.0.hook_resid_post"
    cfg = HookedTransformerConfig(n_layers=2, d_model=64, n_heads=4, d_head=16, d_mlp=256, n_ctx=32, d_vocab=100,
                                  act_fn="gelu", seed=0, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg).eval()
    tokens = torch.randint(1, 100, (512, 32), generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        cache = harvest(model, tokens, [hook], Path(folder) / "acts", progress=False)
        print(f"  harvest on {next(model.parameters()).device}: {cache.n_tokens} rows in "
              f"{time.perf_counter() - start:.1f} s")
        losses = {}
        for precision in ("float32", "bfloat16"):
            saes = {a: create_sae(a, d_in=64, d_sae=1024, seed=0, hook_name=hook, device=device, **kw)
                    for a, kw in {"relu": {"l1_coefficient": 0.01}, "topk": {"k": 16}, "jumprelu": {},
                                  "spade": {}}.items()}
            start = time.perf_counter()
            found = train_saes(saes, lambda: ActivationCache(cache.path).batches(hook, 1024, seed=0),
                               SAETrainConfig(steps=100, batch_size=1024, lr=1e-3, precision=precision),
                               progress=False)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            losses[precision] = {a: m["loss"] for a, m in found.items()}
            print(f"  train 4 SAEs x 100 steps on {device}, {precision}: {time.perf_counter() - start:.1f} s; "
                  + ", ".join(f"{a} loss {m['loss']:.3f}" for a, m in found.items()))
        for arch, full in losses["float32"].items():
            rel = abs(losses["bfloat16"][arch] - full) / abs(full)
            if rel > 0.01:
                raise AssertionError(f"{arch}: bfloat16 loss {losses['bfloat16'][arch]} is {rel:.1%} from float32's")
        for arch, sae in saes.items():
            result = evaluate_sae(sae.eval(), cache.batches(hook, 1024, shuffle=False))
            sae.save(Path(folder) / arch)
            back = load_sae(Path(folder) / arch, device=device)
            x = next(cache.batches(hook, 256, shuffle=False)).acts.to(device)
            if not torch.allclose(back.encode(x), sae.encode(x), atol=1e-4):
                raise AssertionError(f"{arch}: saved and loaded SAE encodes differently")
            print(f"  {arch}: L0 {result.l0:.1f}, NMSE {result.nmse:.3f}, saved and loaded back on {device}")


def steps(args: argparse.Namespace) -> dict[str, list[str]]:
    py = [sys.executable]
    ours_only = [] if importlib.util.find_spec("sae_lens") else ["--ours-only"]
    return {
        "smoke": [*py, __file__, "--smoke"],
        "sae_training": [*py, str(HERE / "bench_sae_training.py"), "--device", "cuda", "--steps", "20", *ours_only],
        "spade_step": [*py, str(HERE / "bench_spade_step.py"), "--device", "cuda", "--steps", "20"],
        "sparsemax": [*py, str(HERE / "bench_sparsemax.py"), "--device", "cuda"],
        "precision": [*py, str(HERE / "bench_precision.py"), "--device", "cuda", "--steps", "20",
                      "--d-in", "768", "--width", "16384"],
        "large_cache": [*py, str(HERE / "bench_large_cache.py"), "--device", "cuda", "--gib", "1", "--repeats", "1",
                        "--skip-whole-shards", "--folder", str(Path(tempfile.gettempdir()) / "spade-lens-gpu-cache")],
        "distributed": [*py, str(HERE / "bench_distributed.py"), "--device", "cuda", "--ranks", "2"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=None, help="comma-separated steps to run (default: all)")
    p.add_argument("--timeout", type=int, default=240, help="seconds allowed per step (default 240)")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--smoke-on", default="cuda", help=argparse.SUPPRESS)  # to try the smoke step on a CPU
    args = p.parse_args()
    if args.smoke and (args.smoke_on != "cuda" or torch.cuda.is_available()):
        smoke(args.smoke_on)
        return
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, CUDA build: "
              f"{torch.version.cuda or 'none'}); nothing to check, skipped")
        return
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    print(f"gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, {len(names)} GPU(s): {', '.join(names)}")
    todo = steps(args)
    chosen = args.only.split(",") if args.only else list(todo)
    unknown = sorted(set(chosen) - set(todo))
    if unknown:
        raise SystemExit(f"--only: unknown steps {unknown}; expected some of {list(todo)}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(HERE.parent),
                                                                             os.environ.get("PYTHONPATH", "")])}
    verdicts = {}
    for name in chosen:
        print(f"\n=== {name}: {' '.join(Path(a).name if a.endswith('.py') else a for a in todo[name][1:])}",
              flush=True)
        start = time.perf_counter()
        try:
            done = subprocess.run(todo[name], capture_output=True, text=True, timeout=args.timeout, env=env,
                                  check=False)
            print(done.stdout[-6000:], end="")
            if done.returncode:
                print(done.stderr[-3000:], end="")
            verdicts[name] = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
        except subprocess.TimeoutExpired:
            verdicts[name] = f"timed out after {args.timeout} s"
        print(f"--- {name}: {verdicts[name]} in {time.perf_counter() - start:.0f} s", flush=True)
    print("\ngpu_check summary: " + "; ".join(f"{k} {v}" for k, v in verdicts.items()))


if __name__ == "__main__":
    main()
