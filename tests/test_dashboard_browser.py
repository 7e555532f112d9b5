"""The dashboard in a real headless Chromium: sort the table, open a latent, and read the probe's numbers off the page.

Skipped where selenium or Chromium is missing. Screenshots go to ``$SPADE_LENS_ARTIFACTS`` (CI keeps them), else
to the test's temporary folder.
"""

from __future__ import annotations

import os
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pytest
import torch
from _dashboard_helpers import HOOK, shared_tiny_run
from _threads import torch_threads

from hooks import ActivationCache
from pcfg import load_corpus
from spade_lens.dashboard import build_dashboard
from spade_lens.dashboard.browser import browser_missing, headless_chromium
from spade_lens.probe import probe_saes
from spade_lens.saes import load_sae

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=f"no headless browser: {browser_missing()}")


def fixed(v: float, digits: int) -> str:
    """JavaScript's ``v.toFixed(digits)``: the exact binary value rounded half away from zero."""
    return str(Decimal(float(v)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def pct(v: float, digits: int) -> str:
    return fixed(100 * float(v), digits) + "%"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    run = shared_tiny_run()
    saes = {arch: load_sae(path) for arch, path in run.saes.items()}
    out = tmp_path_factory.mktemp("browser") / "dashboard"
    with torch_threads(1), torch.no_grad():
        build_dashboard(saes, run.acts, run.corpus, out, model=run.lm, progress=False)
        cache = ActivationCache(run.acts)
        probe = probe_saes(saes, cache.batches(HOOK, 4096, shuffle=False), label="pos",
                           label_names=cache.label_names["pos"], progress=False)
        z = {name: torch.cat([sae.encode(b.acts) for b in cache.batches(HOOK, 4096, shuffle=False)])
             for name, sae in saes.items()}
    return run, out, probe, z, cache.load(HOOK)


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SPADE_LENS_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait(driver, css: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 20).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def _texts(driver, css: str) -> list[str]:
    return driver.execute_script(f"return [...document.querySelectorAll({css!r})].map(e => e.textContent)")


def test_index_shows_the_probes_headline_and_sorts_and_filters_the_latents(site, browser, tmp_path):
    run, out, probe, z, rows = site
    browser.get((out / "index.html").as_uri())
    _wait(browser, "#latents tbody tr")
    assert browser.execute_script("return document.querySelectorAll('#latents tbody tr').length") == 4 * 24
    concepts = probe["relu"].concept_names
    for name, r in probe.items():
        row = f"#headline-table tr[data-sae='{name}']"
        assert _texts(browser, f"{row} td.l0") == [fixed(r.l0, 2)]
        assert _texts(browser, f"{row} td.nmse") == [fixed(r.nmse, 3)]
        assert _texts(browser, f"{row} td.best") == [fixed(r.best_f1[c], 3) for c in range(len(concepts))]
    every_rate = [float(v) for r in probe.values() for v in r.firing_rate]
    header = browser.find_element("css selector", "#latents th[data-key='firing_rate']")
    header.click()  # descending first
    assert _texts(browser, "#latents td.rate") == [pct(v, 2) for v in sorted(every_rate, reverse=True)]
    header.click()
    assert _texts(browser, "#latents td.rate") == [pct(v, 2) for v in sorted(every_rate)]
    browser.find_element("css selector", "#latents th[data-key='f1']").click()
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "filter-sae")).select_by_value("spade")
    Select(browser.find_element("id", "filter-concept")).select_by_visible_text("N")
    n = concepts.index("N")
    spade = probe["spade"]
    want = sorted((float(spade.f1[n, i]) for i in range(spade.width) if int(spade.latent_concept[i]) == n),
                  reverse=True)
    assert _texts(browser, "#latents td.f1") == [fixed(v, 3) for v in want]
    Select(browser.find_element("id", "filter-sae")).select_by_value("")
    Select(browser.find_element("id", "filter-concept")).select_by_value("")
    browser.find_element("id", "search").send_keys("7")  # a number finds that latent of every SAE
    shown = browser.execute_script("return [...document.querySelectorAll('#latents tbody tr')].map("
                                   "r => [r.dataset.sae, r.dataset.latent])")
    assert sorted(shown) == sorted([name, "7"] for name in probe)
    browser.save_screenshot(str(_artifacts(tmp_path) / "dashboard-index.png"))


def test_a_latent_opened_from_the_headline_shows_the_probes_numbers_and_its_top_tokens(site, browser, tmp_path):
    run, out, probe, z, rows = site
    browser.get((out / "index.html").as_uri())
    _wait(browser, "#headline-table")
    n = probe["spade"].concept_names.index("N")
    best = int(probe["spade"].best_latent[n])
    browser.find_element("css selector", "#headline-table tr[data-sae='spade'] td[data-concept='N'] a").click()
    _wait(browser, "#examples")
    assert browser.find_element("id", "latent-title").text.startswith(f"spade · latent {best}")
    r, zz = probe["spade"], z["spade"][:, best].numpy()
    stat = {k: _texts(browser, f"#latent-stats tr[data-key='{k}'] td")[0] for k in
            ("rate", "max", "concept", "f1", "precision", "recall")}
    assert stat == {"rate": pct(r.firing_rate[best], 2), "max": fixed(zz.max(), 3), "concept": "N",
                    "f1": fixed(r.f1[n, best], 3), "precision": fixed(r.precision[n, best], 3),
                    "recall": fixed(r.recall[n, best], 3)}
    for c, concept in enumerate(r.concept_names):
        row = f"#concept-table tr[data-concept='{concept}']"
        assert _texts(browser, f"{row} td.f1") == [fixed(r.f1[c, best], 3)]
        assert _texts(browser, f"{row} td.precision") == [fixed(r.precision[c, best], 3)]
        assert _texts(browser, f"{row} td.recall") == [fixed(r.recall[c, best], 3)]
        on = rows.labels["pos"][torch.from_numpy(zz > 1e-6)]
        assert _texts(browser, f"{row} td.tp") == [str(int((on == c).sum()))]
    # The examples: the brute-force top 20 rows, each centred on its token, with every token's gold label.
    on = np.nonzero(zz > 1e-6)[0]
    order = on[np.lexsort((on, -zz[on].astype(np.float64)))][:20]
    assert _texts(browser, "#examples .example .value") == [fixed(zz[i], 3) for i in order]
    corpus = load_corpus(run.corpus)
    vocab, names = corpus.tokenizer.vocab, corpus.label_names["pos"]
    centres = browser.execute_script(
        "return [...document.querySelectorAll('#examples .tok.centre')].map(e => [e.textContent, e.title, "
        "e.dataset.label, e.style.backgroundColor])")
    assert len(centres) == len(order)
    for (text, title, label, colour), i in zip(centres, order, strict=True):
        gold = names[int(rows.labels["pos"][i])]
        assert text == vocab[int(rows.labels["token_id"][i])] and label == gold
        assert title.startswith(f"{text}: gold label {gold}, activation ")
        alpha = float(colour.rstrip(")").split(",")[-1]) if colour.count(",") == 3 else 1.0
        assert alpha == pytest.approx(min(1.0, float(f"{zz[i]:.4g}") / zz.max()), abs=2e-3)
    browser.save_screenshot(str(_artifacts(tmp_path) / "dashboard-latent.png"))
