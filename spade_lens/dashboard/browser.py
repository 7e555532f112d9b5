"""A headless Chromium driven by selenium, offline: for screenshots of a dashboard and its browser test.

Needs the ``browser`` extra (selenium) and Chromium with its driver installed by the system (Debian:
``apt-get install chromium chromium-driver``). Selenium is given the installed chromedriver and browser binary, so
it never downloads a driver, and Chromium starts with its background networking, updates and sync switched off and
a fresh profile, so nothing reaches the network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from spade_lens.errors import SpadeLensError

CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless=new", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-default-apps", "--disable-extensions",
)


def chromium_paths() -> tuple[str, str] | None:
    """(browser binary, chromedriver) when both are installed (on PATH or in /usr/bin), else None."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    binary = binary or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    driver = driver or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
    return (binary, driver) if binary and driver else None


def browser_missing() -> str | None:
    """Why :func:`headless_chromium` cannot start here (None when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return 'selenium is not installed (pip install "spade-lens[browser]")'
    if chromium_paths() is None:
        return "chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)"
    return None


@contextmanager
def headless_chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A selenium ``WebDriver`` of a headless Chromium with a fresh profile, quit (and its profile removed) on exit."""
    reason = browser_missing()
    if reason is not None:
        raise SpadeLensError(f"browser: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium_paths()  # type: ignore[misc]
    profile = tempfile.mkdtemp(prefix="spade-lens-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to start its sandbox as root
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
