"""What a run directory remembers about how it was started, so `ajet train --resume RUN_DIR` needs nothing else:
the config as validated (config.yaml), the directory its relative paths are resolved against and the run's id
(run.json: a resumed run keeps its identity in the store)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ajet.core.config import AjetConfig, parse_config


def save_run_config(run_dir: Path, config: AjetConfig, run_id: str | None = None) -> str:
    """Write config.yaml and run.json; returns the run id (`run_id`, or a new one)."""
    from ajet.core.runtime import new_run_id

    run_id = run_id or new_run_id()
    run_dir.mkdir(parents=True, exist_ok=True)
    data = config.model_dump(mode="json", exclude_unset=True)  # what the user wrote, not every default
    data["run_dir"] = str(run_dir)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    run = {"base_dir": str(config.base_dir), "run_id": run_id}
    (run_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    return run_id


def load_run_id(run_dir: Path) -> str | None:
    """The id the run in `run_dir` was started with; None for a directory written before ids were kept."""
    path = run_dir / "run.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("run_id")


def load_run_config(run_dir: Path) -> AjetConfig:
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{run_dir} is not an ajet run directory (no config.yaml); pass the run_dir of a run"
        )
    base_dir = Path(json.loads((run_dir / "run.json").read_text())["base_dir"])
    data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    return parse_config(data, base_dir=base_dir, source=str(config_path))
