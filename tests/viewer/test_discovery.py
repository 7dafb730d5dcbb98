"""Finding run directories (a run, a folder of runs, nested sweeps; two runs of one name) and reading a
metrics.jsonl that is still being written (partial lines wait, a rewritten file is read again)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ajet.viewer.curves import MetricsReader, validation
from ajet.viewer.runs import discover, locate_store
from tests.viewer.fill import write_run_files


def run(path: Path, **config: object) -> Path:
    write_run_files(path, f"run-{path.name}", {"name": path.name, **config}, [])
    return path


def test_a_run_a_folder_of_runs_and_nested_sweeps_are_found(tmp_path: Path) -> None:
    run(tmp_path / "runs" / "a")
    run(tmp_path / "runs" / "sweep" / "lr-1" / "a")  # same directory name, three levels down
    run(tmp_path / "runs" / "a" / "checkpoints" / "x")  # never a run: inside a checkpoint folder
    run(tmp_path / "runs" / "one" / "two" / "three" / "four")  # too deep
    (tmp_path / "runs" / "not-a-run").mkdir()
    (tmp_path / "runs" / "not-a-run" / "config.yaml").write_text("name: x\n")  # no run.json/metrics/store
    found = discover([tmp_path / "runs"])
    assert sorted(found) == ["a", "a-2"]
    assert found["a"].path == tmp_path / "runs" / "a"
    assert found["a-2"].path == tmp_path / "runs" / "sweep" / "lr-1" / "a"
    assert list(discover([tmp_path / "runs" / "a"])) == ["a"]  # RUN_DIR is the run itself
    assert list(discover([tmp_path / "runs" / "a", tmp_path / "runs"])) == ["a", "a-2"]  # no duplicates


def test_a_broken_config_still_lists_the_run_with_the_reason(tmp_path: Path) -> None:
    path = run(tmp_path / "broken")
    (path / "config.yaml").write_text("name: [unclosed\n")
    found = discover([tmp_path])["broken"]
    assert found.name == "broken" and "config.yaml does not parse" in found.store_note


def test_the_store_file_is_where_the_config_says(tmp_path: Path) -> None:
    path = run(tmp_path / "r")
    assert locate_store(path, None, None) == (None, f"no store file yet ({path / 'ajet.sqlite'})")
    (path / "ajet.sqlite").write_bytes(b"")
    assert locate_store(path, None, None) == (path / "ajet.sqlite", "")
    assert locate_store(path, "memory", None)[0] is None
    elsewhere = tmp_path / "configs" / "stores" / "s.sqlite"
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(b"")
    # relative: to the working directory of the viewer, else to the config's directory (run.json base_dir)
    assert locate_store(path, "stores/s.sqlite", str(tmp_path / "configs")) == (elsewhere, "")
    found, note = locate_store(path, "stores/missing.sqlite", str(tmp_path / "configs"))
    assert found is None and "store file not found" in note and "missing.sqlite" in note


def test_metrics_reader_takes_complete_lines_and_rereads_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    reader = MetricsReader(path)
    assert reader.rows() == []
    path.write_text(json.dumps({"step": 1, "train/loss": 2.0}) + "\n" + '{"step": 2, "train/lo')
    assert [r["step"] for r in reader.rows()] == [1]
    with path.open("a") as out:
        out.write('ss": 1.5}\n' + "not json\n" + json.dumps({"step": 3, "val/success_rate": 0.5}) + "\n")
    rows = reader.rows()
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[1]["train/loss"] == 1.5
    replacement = tmp_path / "new.jsonl"
    replacement.write_text(json.dumps({"step": 7, "train/loss": 0.1}) + "\n")
    os.replace(replacement, path)  # a new run in the same directory: another file
    assert [r["step"] for r in reader.rows()] == [7]


def test_validation_reports_the_best_and_the_last() -> None:
    rows = [{"step": 0.0, "val/success_rate": 0.5}, {"step": 5.0, "val/success_rate": 0.8}]
    rows.append({"step": 10.0, "val/success_rate": 0.6})
    assert validation(rows) == {
        "metric": "val/success_rate",
        "best": 0.8,
        "best_step": 5,
        "last": 0.6,
        "last_step": 10,
    }
    assert validation([{"step": 1.0, "train/loss": 1.0}]) is None
