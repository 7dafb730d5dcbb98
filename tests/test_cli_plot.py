"""`ajet plot RUN_DIR`: sparklines in the terminal and an SVG chart from a run's metrics.jsonl."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.examples.cli import explain, run_ajet

SVG = "{http://www.w3.org/2000/svg}"


def write_run(run_dir: Path, rewards: list[float]) -> None:
    run_dir.mkdir(parents=True)
    rows = [{"step": i + 1, "time": 0.0, "rollout/reward_mean": r} for i, r in enumerate(rewards)]
    rows[-1]["val/success_rate"] = 0.75
    text = "".join(json.dumps(row) + "\n" for row in rows)
    (run_dir / "metrics.jsonl").write_text(text + '{"step": 9, "rollout/rew')  # killed mid-write


def test_plot_writes_an_svg_with_one_point_per_step(tmp_path: Path) -> None:
    write_run(tmp_path / "run", [0.1, 0.4, 0.3, 0.9])
    out = tmp_path / "curve.svg"
    result = run_ajet("plot", str(tmp_path / "run"), "--out", str(out), "--title", "demo")
    assert result.returncode == 0, explain(result)
    assert "rollout/reward_mean" in result.stdout and "first 0.1  last 0.9" in result.stdout
    root = ET.fromstring(out.read_text())
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 1  # reward; validation has a single point, drawn as a dot
    assert len(lines[0].get("points", "").split()) == 4
    assert len(root.findall(f"{SVG}circle")) == 1
    assert "demo" in [t.text for t in root.findall(f"{SVG}text")]


def test_plot_names_the_metrics_a_run_has_when_asked_for_a_missing_one(tmp_path: Path) -> None:
    write_run(tmp_path / "run", [0.5])
    result = run_ajet("plot", str(tmp_path / "run"), "-m", "train/los")
    assert result.returncode == 2
    assert "no values for train/los" in result.stdout and "rollout/reward_mean" in result.stdout
    missing = run_ajet("plot", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "metrics.jsonl not found" in missing.stdout
