"""Dashboard speed: build time for a run's SAEs, and how fast the page opens in headless Chromium.

    python benchmarks/bench_dashboard.py --run runs/default [--repeats 3] [--threads 2]

Builds the latent browser of every SAE in ``RUN/saes`` on ``RUN/activations/validation`` (with the model's logit
lens and links to ``RUN/report``'s figures) into a temporary folder, interleaved with the peer it rides on, the
plain probe pass (``probe_saes``, co-occurrence included, as ``spade-lens probe`` runs it), and prints the median
times and their ratio. Then it opens the index ``--opens`` times in a fresh headless Chromium page and prints the
browser's own timing (Navigation Timing ``loadEventEnd``, and ``performance.mark`` of the rendered table), and the
time from a click-equivalent hash change to a rendered latent (its data block loaded on demand).
Targets (issue 13): build under 60 s for the default run's four SAEs on a 2-core CPU; index open under 2 s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def build_once(run: Path, out: Path, saes: dict, cache, corpus, model) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads)."""
    from spade_lens.dashboard import build_dashboard

    start, cpu = time.perf_counter(), time.process_time()
    build_dashboard(saes, cache, corpus, out, model=model, split="validation", report_dir=run / "report",
                    progress=False)
    return time.perf_counter() - start, time.process_time() - cpu


def probe_once(saes: dict, cache) -> tuple[float, float]:
    from spade_lens.probe import probe_saes

    hook = next(iter(saes.values())).cfg.hook_name
    start, cpu = time.perf_counter(), time.process_time()
    probe_saes(saes, cache.batches(hook, 4096, shuffle=False), label="pos", label_names=cache.label_names["pos"],
               progress=False)
    return time.perf_counter() - start, time.process_time() - cpu


def browser_timings(index: Path, opens: int, latent_hash: str) -> list[dict[str, float]]:
    from spade_lens.dashboard.browser import headless_chromium

    out = []
    with headless_chromium() as driver:
        for _ in range(opens):
            driver.get("about:blank")
            start = time.perf_counter()
            driver.get(index.as_uri())
            driver.execute_script("return 0")
            wall = time.perf_counter() - start
            timing = driver.execute_script(
                "const nav = performance.getEntriesByType('navigation')[0];"
                "const ready = performance.getEntriesByName('spade-lens-index-ready')[0];"
                "return [nav.domContentLoadedEventEnd, nav.loadEventEnd, ready ? ready.startTime : -1,"
                " document.querySelectorAll('#latents tbody tr').length];")
            driver.execute_script("performance.clearMarks(); window.__t0 = performance.now();"
                                  f"location.hash = {latent_hash!r};")
            latent_ms = driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "const poll = () => { const m = performance.getEntriesByName('spade-lens-latent-ready')[0];"
                " if (m) done(m.startTime - window.__t0); else setTimeout(poll, 5); }; poll();")
            out.append({"dom_ms": timing[0], "load_ms": timing[1], "table_ms": timing[2], "rows": timing[3],
                        "latent_ms": latent_ms, "selenium_wall_s": wall})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/default", help="a `spade-lens run` folder (read only)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved builds and probe passes (default 3)")
    parser.add_argument("--opens", type=int, default=5, help="page opens in the browser (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from hooks import ActivationCache
    from pcfg import load_corpus
    from spade_lens.dashboard.browser import browser_missing
    from spade_lens.lm import load_lm
    from spade_lens.pipeline import ARCHITECTURES
    from spade_lens.saes import load_sae

    run = Path(args.run)
    saes = {arch: load_sae(run / "saes" / arch) for arch in ARCHITECTURES}
    cache = ActivationCache(run / "activations" / "validation")
    t = time.perf_counter()
    corpus, model = load_corpus(run / "corpus"), load_lm(run / "lm")
    load_s = time.perf_counter() - t
    print(f"run {run}: {len(saes)} SAEs x {next(iter(saes.values())).cfg.d_sae} latents, {cache.n_tokens} "
          f"validation tokens; torch threads {torch.get_num_threads()}; corpus + model load {load_s:.1f} s")
    builds, probes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dashboard"
        for _ in range(args.repeats):
            probes.append(probe_once(saes, cache))
            builds.append(build_once(run, out, saes, cache, corpus, model))
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        files = sum(1 for f in out.rglob("*") if f.is_file())
        for name, runs in (("build_dashboard", builds), ("peer probe_saes pass", probes)):
            wall, cpu = [r[0] for r in runs], [r[1] for r in runs]
            print(f"{name}: median wall {statistics.median(wall):.2f} s of {[round(x, 2) for x in wall]}, median CPU "
                  f"{statistics.median(cpu):.2f} s{' (target < 60 s wall)' if name == 'build_dashboard' else ''}")
        ratio = statistics.median(b[0] for b in builds) / statistics.median(p[0] for p in probes)
        print(f"dashboard / probe wall = {ratio:.2f}x; dashboard folder: {files} files, {size / 1e6:.2f} MB")
        missing = browser_missing()
        if missing:
            print(f"browser timing skipped: {missing}")
            return
        spade = saes["spade"]
        timings = browser_timings(out / "index.html", args.opens, f"#sae=spade&latent={spade.cfg.d_sae // 2}")
        for key, label in (("load_ms", "index loadEventEnd"), ("table_ms", "index table rendered"),
                           ("latent_ms", "latent opened (block loaded + rendered)")):
            values = [t[key] for t in timings]
            print(f"{label}: median {statistics.median(values):.0f} ms of {[round(v) for v in values]} "
                  f"(browser's own clock{'; target < 2000 ms' if key != 'latent_ms' else ''})")
        print(f"rows in the table: {timings[0]['rows']}; selenium wall per open (driver overhead included): "
              f"median {statistics.median(t['selenium_wall_s'] for t in timings):.2f} s")


if __name__ == "__main__":
    main()
