"""Headless Chromium (Debian packages ``chromium`` and ``chromium-driver``) driven by selenium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def find_browser() -> tuple[str, str] | None:
    """Paths of chromium and chromedriver, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return None
    return browser, driver


def require_browser() -> tuple[str, str]:
    """The browser, else a skip (a failure in CI, where it must be installed)."""
    found = find_browser()
    missing = None
    if found is None:
        missing = "chromium and chromium-driver are not installed (apt-get install them)"
    else:
        try:
            import selenium  # noqa: F401
        except ImportError:
            missing = "selenium is not installed"
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    return found  # type: ignore[return-value]


def start_chromium(user_data_dir: Path, width: int = 1400, height: int = 900):
    """A selenium driver of a fresh headless Chromium profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if found is None:
        raise RuntimeError("chromium and chromedriver are needed")
    browser, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))
