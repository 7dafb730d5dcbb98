"""Screenshots of each `ajet view` page of a run, in headless Chromium (the system's: apt-get install chromium
chromium-driver; pip install selenium), for the docs:

    python scripts/viewer-screenshots.py runs/arithmetic docs/images

Writes viewer-runs.png, viewer-run.png, viewer-curves.png, viewer-episodes.png and viewer-episode.png into the folder.
"""

from __future__ import annotations

import base64
import shutil
import sys
import threading
import time
from pathlib import Path

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from ajet.core.gateway.app import listening_socket
from ajet.viewer import create_app


def main(run_dir: Path, out: Path) -> None:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        sys.exit("needs chromium and chromedriver: apt-get install -y chromium chromium-driver")
    out.mkdir(parents=True, exist_ok=True)
    sock = listening_socket("127.0.0.1", 0)
    # the folder of runs, as `ajet view runs/` serves it
    server = uvicorn.Server(uvicorn.Config(create_app([run_dir.parent]), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    wait = WebDriverWait(browser, 30)
    try:
        name = run_dir.name

        def shoot(path: str, css: str, file: str, max_height: int = 1300) -> None:
            browser.get(url + path)
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, css))
            time.sleep(1.0)  # the charts draw after their data arrives
            # the whole page down to max_height, beyond the window (Chrome DevTools' capture)
            size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": 1400, "height": min(size["height"], max_height), "scale": 1}
            shot = browser.execute_cdp_cmd(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
            )
            (out / file).write_bytes(base64.b64decode(shot["data"]))
            print(f"{out / file}: {url + path}")

        shoot("/", "table", "viewer-runs.png", 300)
        shoot(f"/runs/{name}", ".uplot", "viewer-run.png", 1000)
        shoot(f"/compare?run={name}", ".uplot", "viewer-curves.png")
        shoot(f"/runs/{name}/episodes?phase=train", "#episodes tbody tr", "viewer-episodes.png", 900)
        browser.get(url + f"/runs/{name}/episodes?phase=train&reward_min=1")
        first = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#episodes tbody tr a"))[0]
        shoot(first.get_attribute("href").removeprefix(url), ".tokens span.tr", "viewer-episode.png", 2000)
    finally:
        browser.quit()
        server.should_exit = True


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
