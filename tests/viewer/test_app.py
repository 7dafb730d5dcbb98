"""Every route of the viewer's app (Starlette TestClient) on run directories whose store is filled directly:
what each page shows, the filters, 404 for what does not exist, 400 for a bad filter, new steps and runs seen
without a restart, and the store left untouched."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ajet.core.store import SqliteStore
from ajet.viewer import create_app
from tests.viewer.fill import episode, make_run


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("runs")
    make_run(root, "demo", str(tiny_dir), episodes=120, steps=4)
    make_run(root / "sweep", "other", "no/such/model", episodes=5, steps=2)
    return root


@pytest.fixture(scope="module")
def client(runs_root: Path) -> Iterator[TestClient]:
    with TestClient(create_app([runs_root])) as client:
        yield client


def rows(html: str) -> list[str]:
    body = html.split('<table id="episodes"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'class="episode-link" href="[^"]+/episodes/([^"]+)"', body)


def test_runs_page_lists_every_run_with_its_step_status_and_validation(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert 'href="/runs/demo"' in html and 'href="/runs/other"' in html  # other is one level down (sweep/)
    demo = html.split('data-run="demo"', 1)[1].split("</tr>", 1)[0]
    assert "2 / 4" in demo  # the run record's step (the trainer's word), of train.steps
    assert "best 0.75" in demo and "@4" in demo
    assert "running" in demo
    assert "train 121" in demo and "(1 failed)" in demo and "val 1" in demo
    assert "lr 0.001" in demo and "group 4" in demo


def test_run_page_shows_the_config_and_links_to_its_episodes(client: TestClient) -> None:
    page = client.get("/runs/demo")
    assert page.status_code == 200
    assert "trainable_targets" in page.text  # config.yaml, verbatim
    assert 'href="/runs/demo/episodes?phase=val"' in page.text
    assert 'id="charts"' in page.text and "uPlot.iife.min.js" in page.text


def test_curves_json_has_a_line_per_run_and_metric(client: TestClient) -> None:
    data = client.get("/api/curves", params=[("run", "demo"), ("run", "other")]).json()
    charts = {chart["title"]: chart["lines"] for chart in data["charts"]}
    assert [line["run"] for line in charts["reward"]] == ["demo", "other"]
    demo = charts["reward"][0]
    assert demo["steps"] == [1, 2, 3, 4] and demo["values"] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert charts["validation"][0]["steps"] == [2, 4]
    assert data["steps"] == {"demo": 4, "other": 2}
    assert "train/entropy" in data["metrics"]
    extra = client.get("/api/curves", params={"run": "demo", "metric": "train/entropy"}).json()
    assert extra["charts"][-1]["title"] == "train/entropy" and len(extra["charts"][-1]["lines"]) == 1
    missing = client.get("/api/curves", params={"run": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    assert client.get("/compare", params=[("run", "demo"), ("run", "other")]).status_code == 200
    assert client.get("/compare", params={"run": "nope"}).status_code == 404


def test_episode_table_pages_by_50_newest_first(client: TestClient) -> None:
    first = client.get("/runs/demo/episodes")
    assert first.status_code == 200
    shown = rows(first.text)
    assert len(shown) == 50 and shown[0] == "ep-val"  # 122 episodes, the last added first
    assert "episodes 1–50 of 122" in first.text
    assert 'rel="next" href="?page=2"' in first.text
    last = client.get("/runs/demo/episodes", params={"page": 3})
    assert len(rows(last.text)) == 22 and rows(last.text)[-1] == "ep-00000"
    oldest = client.get("/runs/demo/episodes", params={"order": "seq"})
    assert rows(oldest.text)[0] == "ep-00000"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "failed"}, ["ep-00003"]),
        ({"phase": "val"}, ["ep-val"]),
        ({"role": "villager"}, ["ep-multi"]),
        (
            {"phase": "train", "step": "2", "reward_min": "0.75", "order": "seq"},
            ["ep-00008", "ep-00009", "ep-00013", "ep-00014"],
        ),
        ({"step": "1", "reward_max": "0", "order": "seq"}, ["ep-00000", "ep-00005"]),
    ],
)
def test_filters_narrow_the_table(client: TestClient, params: dict[str, str], expected: list[str]) -> None:
    page = client.get("/runs/demo/episodes", params=params)
    assert page.status_code == 200
    assert rows(page.text) == expected


def test_a_failed_episode_shows_its_error_and_traceback_in_the_table(client: TestClient) -> None:
    html = client.get("/runs/demo/episodes", params={"status": "failed"}).text
    assert '<details class="err"><summary>ZeroDivisionError: boom</summary>' in html
    assert "line 7, in execute" in html
    page = client.get("/runs/demo/episodes/ep-00003")
    assert page.status_code == 200 and 'id="error"' in page.text and "line 7, in execute" in page.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"step": "two"}, "step=&#39;two&#39; is not a whole number"),
        ({"phase": "training"}, "phase=&#39;training&#39; is not one of train, val, eval, debug"),
        ({"status": "done"}, "is not one of pending, running, ok, failed, timed_out"),
        ({"reward_min": "high"}, "reward_min=&#39;high&#39; is not a number"),
        ({"reward_min": "1", "reward_max": "0"}, "reward_min (1) is above reward_max (0)"),
        ({"page": "0"}, "page=0 is below 1"),
        ({"reward_max": "nan"}, "not a finite number"),
    ],
)
def test_a_bad_filter_is_a_400_that_says_what_is_wrong(
    client: TestClient, params: dict[str, str], message: str
) -> None:
    page = client.get("/runs/demo/episodes", params=params)
    assert page.status_code == 400
    assert message in page.text


def test_unknown_runs_and_episodes_are_404(client: TestClient) -> None:
    for path in (
        "/runs/nope",
        "/runs/nope/episodes",
        "/runs/nope/episodes/ep-00001",
        "/runs/demo/episodes/ep-x",
    ):
        page = client.get(path)
        assert page.status_code == 404, path
        assert 'id="error-message"' in page.text
    assert "no episode &#39;ep-x&#39; in run demo" in client.get("/runs/demo/episodes/ep-x").text


def test_multi_agent_episode_shows_calls_tools_roles_tokens_and_the_mismatch(client: TestClient) -> None:
    page = client.get("/runs/demo/episodes/ep-multi")
    assert page.status_code == 200
    html = page.text
    roles = html.split('id="role-rewards"', 1)[1].split("</table>", 1)[0]
    assert re.search(r"wolf</td><td class=\"num\">1<", roles) and re.search(
        r"villager</td><td class=\"num\">-1<", roles
    )
    calls = re.findall(r'<section class="call" id="call-(\d+)">', html)
    assert calls == ["0", "1", "2"]
    assert "<b>vote</b>" in html and "&#34;player&#34;: &#34;bob&#34;" in html  # the tool call, its arguments
    assert "bob was voted out" in html and "result of call-1" in html  # the tool result
    # the wolf's second call repeats 3 messages of its first one: they are collapsed
    second = html.split('id="call-2"', 1)[1].split("</section>", 1)[0]
    assert "3 earlier messages" in second
    # tokens: the trained ones with their id, log-prob and advantage; the context ones apart
    sample = html.split('id="sample-0"', 1)[1].split("</section>", 1)[0]
    trained = re.findall(
        r'<span class="tr (p\d)[^"]*" title="id (\d+) · #\d+ · logprob ([-\d.]+) · advantage 0.710">', sample
    )
    assert trained == [("p1", "13", "-0.200"), ("p5", "14", "-4.500")]
    assert len(re.findall(r'<span class="cx[^"]*" title="id \d+', sample)) == 3
    # the mismatch: marked in the wolf's first sample at position 3 (13 expected, 99 found), and on the call
    assert re.search(
        r'<span class="mm" title="completion_retokenized at #3: expected 13 [^"]*, found 99', sample
    )
    assert "⚠ completion_retokenized</span>" in sample and 'class="tr p1 mmtok"' in sample
    assert "this call started a new sample: completion_retokenized at #3" in second


def test_a_validation_episode_shows_its_completion_tokens_untrained(client: TestClient) -> None:
    html = client.get("/runs/demo/episodes/ep-val").text
    assert "completion tokens (not trained)" in html and "Trained samples" not in html
    assert "val question" in html


def test_tokens_show_as_ids_when_the_tokenizer_cannot_be_loaded(client: TestClient) -> None:
    html = client.get("/runs/other/episodes/ep-multi").text
    assert "the tokenizer of &#39;no/such/model&#39; could not be loaded" in html
    assert 'title="id 13 · #3 · logprob -0.200 · advantage 0.710">[13]</span>' in html


def test_episode_of_another_run_in_the_same_store_is_404(tmp_path: Path, tiny_dir: Path) -> None:
    run_dir = make_run(tmp_path, "shared", str(tiny_dir), episodes=2)
    store = SqliteStore(run_dir / "ajet.sqlite")
    store.add_episode(episode("run-elsewhere", 1, episode_id="ep-foreign"))
    store.close()
    with TestClient(create_app([run_dir])) as client:
        assert client.get("/runs/shared/episodes/ep-foreign").status_code == 404
        assert "ep-foreign" not in client.get("/runs/shared/episodes").text


def test_new_steps_episodes_and_runs_appear_without_a_restart_and_the_store_is_not_written(
    tmp_path: Path, tiny_dir: Path
) -> None:
    root = tmp_path / "runs"
    run_dir = make_run(root, "live", str(tiny_dir), episodes=3, steps=2)
    database = run_dir / "ajet.sqlite"
    with TestClient(create_app([root])) as client:
        assert client.get("/api/curves").json()["steps"] == {"live": 2}
        before = hashlib.sha256(database.read_bytes()).hexdigest()
        for path in ("/", "/runs/live", "/runs/live/episodes", "/runs/live/episodes/ep-multi", "/api/runs"):
            assert client.get(path).status_code == 200, path
        assert hashlib.sha256(database.read_bytes()).hexdigest() == before  # read-only

        with (run_dir / "metrics.jsonl").open("a") as out:
            out.write(json.dumps({"step": 3, "time": 0.0, "rollout/reward_mean": 0.9}) + "\n")
            out.write('{"step": 4, "rollout/rew')  # mid-write: not read yet
        writer = SqliteStore(database)
        writer.add_episode(episode("run-live", 50, episode_id="ep-new", step=3))
        writer.close()
        make_run(root, "later", str(tiny_dir), episodes=1, steps=1)

        curves = client.get("/api/curves", params={"run": "live"}).json()
        assert curves["steps"] == {"live": 3}
        assert rows(client.get("/runs/live/episodes").text)[0] == "ep-new"
        assert 'href="/runs/later"' in client.get("/").text
        with (run_dir / "metrics.jsonl").open("a") as out:
            out.write('ard_mean": 1.0}\n')  # the line completed
        assert client.get("/api/curves", params={"run": "live"}).json()["steps"] == {"live": 4}


def test_a_run_without_a_store_file_lists_with_a_note(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "memory-run", "no/model", episodes=1)
    (run_dir / "ajet.sqlite").unlink()
    (run_dir / "config.yaml").write_text("name: memory-run\nstore: memory\n")
    with TestClient(create_app([tmp_path])) as client:
        assert "store: memory (the episodes were kept in memory" in client.get("/").text
        page = client.get("/runs/memory-run/episodes")
        assert page.status_code == 200 and "no episodes match" in page.text
        assert client.get("/runs/memory-run/episodes/ep-1").status_code == 404


def test_a_running_run_whose_record_stopped_moving_is_flagged(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "killed", "no/model", episodes=1)
    store = SqliteStore(run_dir / "ajet.sqlite")
    store.put_run(store.get_run("run-killed").model_copy(update={"updated_at": time.time() - 3600}))
    store.close()
    with TestClient(create_app([tmp_path])) as client:
        assert "no update for 60 min" in client.get("/").text
        assert "no update for 60 min" in client.get("/runs/killed").text
        store = SqliteStore(run_dir / "ajet.sqlite")
        store.update_run("run-killed", status="finished")
        store.close()
        assert "no update for" not in client.get("/").text


def test_run_page_scores_its_stored_evaluations_with_pass_at_k(tmp_path: Path, tiny_dir: Path) -> None:
    run_dir = make_run(tmp_path, "evaluated", str(tiny_dir), episodes=4, steps=2)
    store = SqliteStore(run_dir / "ajet.sqlite")
    # step 2: two tasks x 4 samples with 1 and 4 successes (a failed episode counts as a miss); step 0: one
    # task, 0 of 4. pass@2 at step 2 = mean(1 - C(3,2)/C(4,2), 1) = mean(1 - 3/6, 1) = 0.75
    outcomes = {(2, "ga"): [True, False, False, None], (2, "gb"): [True] * 4, (0, "gc"): [False] * 4}
    index = 500
    for (step, group), successes in outcomes.items():
        for ok in successes:
            status = "failed" if ok is None else "ok"
            store.add_episode(
                episode(
                    "run-evaluated",
                    index,
                    phase="eval",
                    step=step,
                    group_id=group,
                    status=status,
                    is_success=ok,
                    reward=float(bool(ok)),
                )
            )
            index += 1
    store.close()
    with TestClient(create_app([tmp_path])) as client:
        html = client.get("/runs/evaluated").text
    table = html.split('<table id="evaluations"', 1)[1].split("</table>", 1)[0]
    assert [h for h in re.findall(r"<th>([^<]+)</th>", table)][-3:] == ["pass@1", "pass@2", "pass@4"]
    step0, step2 = re.findall(r"<tr><td>(.*?)</tr>", table, flags=re.S)
    cells = lambda row: re.findall(r"<td>([^<]*)</td>", row)  # noqa: E731
    # step 0: success 0; pass@k 0. step 2: success 5/8; pass@1 = mean(1/4, 1) = 0.625, pass@4 = 1
    assert cells(step0)[-4:] == ["0.000", "0.000", "0.000", "0.000"]
    assert cells(step2) == ["2 × 4", "1", "0.625", "0.625", "0.750", "1.000"]
