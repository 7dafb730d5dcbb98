"""A real headless Chromium for the viewer's browser tests: the system's chromium and chromedriver (Debian:
apt-get install chromium chromium-driver), driven by Selenium with that driver, so Selenium Manager never
downloads one. Without them the tests skip, saying why, unless AJET_REQUIRE_BROWSER=1 (CI), where they fail."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

INSTALL = {
    "chromium": "apt-get install -y chromium",
    "chromedriver": "apt-get install -y chromium-driver",
    "the selenium package": "pip install selenium",
}


def browser_or_skip() -> tuple[str, str]:
    """The chromium and chromedriver executables; skips (or fails when AJET_REQUIRE_BROWSER=1) without them."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        hints = "; ".join(INSTALL[name] for name in missing)
        reason = f"browser tests need {', '.join(missing)} ({hints})"
        if os.environ.get("AJET_REQUIRE_BROWSER") == "1":
            pytest.fail(f"AJET_REQUIRE_BROWSER=1 and {reason}")
        pytest.skip(reason)
    assert chromium is not None and driver is not None
    return chromium, driver


@contextmanager
def headless_chromium(chromium: str, driver: str) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI containers run as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",  # small /dev/shm in containers
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


@contextmanager
def served(app: Any) -> Iterator[str]:
    """`app` served by uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    from ajet.core.gateway.app import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the viewer's server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def save_screenshot(browser: Any, directory: Path, name: str) -> Path:
    """A PNG of the page under `directory` (the test's tmp dir), copied to $AJET_SCREENSHOT_DIR when set."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    browser.get_screenshot_as_file(str(path))
    assert path.stat().st_size > 10_000, "a screenshot of a rendered page is more than a blank PNG"
    target = os.environ.get("AJET_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
    return path
