"""The viewer in a real headless Chromium, on a run made by `ajet train` (2 steps of the tiny model): the runs page
lists it and draws its curves, an episode page shows its tokens with the trained ones marked, a filter narrows
the episode table, an open page shows new steps and runs. Screenshots are saved (and copied to
$AJET_SCREENSHOT_DIR when set)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ajet.core.store import SqliteStore
from ajet.viewer import create_app
from tests.examples.cli import explain, run_ajet
from tests.test_trainer import make_config
from tests.viewer.browser import browser_or_skip, headless_chromium, save_screenshot, served
from tests.viewer.fill import make_run

pytestmark = pytest.mark.browser
WAIT_S = 20


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    return browser_or_skip()  # before the train, so a machine without a browser skips at once


@pytest.fixture(scope="module")
def trained_run(chromium: tuple[str, str], tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    """`ajet train` for 2 steps with validation, the store in the run directory (the default)."""
    root = tmp_path_factory.mktemp("browser")
    data = make_config(root, tiny_dir, val_every=1)
    data.pop("store")  # <run_dir>/ajet.sqlite
    data["run_dir"] = str(root / "runs" / "tiny")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(data))
    result = run_ajet("train", "-c", str(config))
    assert result.returncode == 0, explain(result)
    return root / "runs"


@pytest.fixture(scope="module")
def site(trained_run: Path) -> Iterator[str]:
    with served(create_app([trained_run], poll_s=1.0)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(chromium: tuple[str, str]) -> Iterator[Any]:
    with headless_chromium(*chromium) as browser:
        yield browser


def wait_for(browser: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, css))


def apply_filters(browser: Any) -> list[Any]:
    """Submit the filter form and wait for the new page's table rows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.ID, "episodes")
    browser.find_element(By.ID, "apply").click()
    WebDriverWait(browser, WAIT_S).until(expected_conditions.staleness_of(old))
    wait_for(browser, "#count")
    return browser.find_elements(By.CSS_SELECTOR, "#episodes tbody tr")


def test_runs_page_lists_the_trained_run_and_draws_its_curves(
    site: str, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site + "/")
    row = wait_for(browser, 'tr[data-run="tiny"]')[0]
    assert row.find_element(By.CSS_SELECTOR, "a.run-link").text == "tiny"
    assert row.find_element(By.CSS_SELECTOR, '[data-field="status"]').text.startswith("finished")
    assert row.find_element(By.CSS_SELECTOR, '[data-field="step"]').text == "2 / 2"
    assert "best" in row.find_element(By.CSS_SELECTOR, '[data-field="validation"]').text
    save_screenshot(browser, tmp_path, "runs")

    row.find_element(By.CSS_SELECTOR, "a.run-link").click()
    charts = wait_for(browser, "#charts .chart canvas")  # uPlot drew them from /api/curves
    titles = [c.get_attribute("data-chart") for c in browser.find_elements(By.CSS_SELECTOR, "#charts .chart")]
    assert {"reward", "loss", "validation"} <= set(titles), titles
    assert charts[0].size["width"] > 300
    save_screenshot(browser, tmp_path, "run-curves")


def test_episode_page_shows_the_tokens_with_the_trained_ones_marked(
    site: str, browser: Any, trained_run: Path, tmp_path: Path
) -> None:

    store = SqliteStore(trained_run / "tiny" / "ajet.sqlite", read_only=True)
    try:
        trained = next(e for e in store.episodes() if store.samples(e.episode_id))
        sample = store.samples(trained.episode_id)[0]
    finally:
        store.close()
    browser.get(f"{site}/runs/tiny/episodes?phase=train&step={trained.step}")
    wait_for(browser, f'a.episode-link[href$="/{trained.episode_id}"]')[0].click()
    tokens = wait_for(browser, "#sample-0 .tokens span")
    trained_spans = [t for t in tokens if "tr" in t.get_attribute("class").split()]
    context_spans = [t for t in tokens if "cx" in t.get_attribute("class").split()]
    assert len(trained_spans) == sum(sample.loss_mask)
    assert len(context_spans) == len(sample.input_ids) - sum(sample.loss_mask)
    title = trained_spans[0].get_attribute("title")
    assert re.fullmatch(r"id \d+ · #\d+ · logprob -?\d+\.\d{3} · advantage -?\d+\.\d{3}", title), title
    first = sample.loss_mask.index(1)
    assert title.startswith(f"id {sample.input_ids[first]} · #{first} ·")
    # marked: the trained tokens are underlined and shaded, the context ones are not
    assert trained_spans[0].value_of_css_property("box-shadow") != "none"
    assert context_spans[0].value_of_css_property("box-shadow") == "none"
    assert trained_spans[0].text or trained_spans[0].get_attribute("textContent")  # decoded, not blank
    assert "[" not in context_spans[0].get_attribute("textContent"), "the tokenizer decoded the ids"
    browser.execute_script("arguments[0].scrollIntoView()", tokens[0])
    save_screenshot(browser, tmp_path, "episode-tokens")


def test_a_filter_narrows_the_episode_table(site: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(site + "/runs/tiny/episodes")
    everything = wait_for(browser, "#episodes tbody tr")
    assert len(everything) > 5
    Select(browser.find_element(By.NAME, "phase")).select_by_visible_text("val")
    rows = apply_filters(browser)
    assert browser.current_url.endswith("/episodes?phase=val")  # the empty fields left out of the link
    assert 0 < len(rows) < len(everything)
    phases = {r.find_elements(By.TAG_NAME, "td")[1].text for r in rows}
    assert phases == {"val"}
    step = browser.find_element(By.NAME, "step")
    step.clear()
    step.send_keys("1")
    narrowed = apply_filters(browser)
    assert 0 < len(narrowed) < len(rows)
    assert {r.find_elements(By.TAG_NAME, "td")[2].text for r in narrowed} == {"1"}
    save_screenshot(browser, tmp_path, "episodes-filtered")


def test_new_steps_and_runs_appear_in_an_open_page(browser: Any, tmp_path: Path) -> None:
    """A run still training: the open page polls, so a new step reaches the charts and a new run the runs
    table, with no reload."""
    from selenium.webdriver.support.ui import WebDriverWait

    root = tmp_path / "runs"
    run_dir = make_run(root, "live", "no/model", episodes=3, steps=2)
    with served(create_app([root], poll_s=0.5)) as url:
        browser.get(url + "/runs/live")
        wait_for(browser, "#charts .chart canvas")
        status = browser.find_element("id", "charts-status")
        assert status.text.startswith("live step 2")
        with (run_dir / "metrics.jsonl").open("a") as out:
            out.write(
                json.dumps({"step": 3, "time": 0.0, "rollout/reward_mean": 0.9, "train/loss": 0.1}) + "\n"
            )
        WebDriverWait(browser, WAIT_S).until(lambda b: status.text.startswith("live step 3"))

        browser.get(url + "/")
        wait_for(browser, 'tr[data-run="live"]')
        make_run(root, "later", "no/model", episodes=1, steps=1)
        wait_for(browser, 'tr[data-run="later"]')
