"""Finding runs on disk: a run directory holds the config.yaml `ajet train` wrote (and its run.json, metrics.jsonl
and store file). A RUN_DIR given to `ajet view` is one run or a folder of runs, searched a few levels deep; the
search runs again on each request, so a run started after the viewer appears on the next page load."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ajet.core.store import DEFAULT_STORE_NAME

#: how deep below a RUN_DIR runs are looked for: runs/<name> and runs/<sweep>/<name> (and one more level)
SEARCH_DEPTH = 3
#: folders inside a run directory that never hold another run: not worth listing (a checkpoint holds thousands)
_NOT_RUNS = frozenset({"checkpoints", "tensorboard", "wandb", "__pycache__", "node_modules"})


@dataclass(frozen=True)
class RunDir:
    """One run directory as found on disk. `key` names it in the viewer's URLs."""

    key: str
    path: Path
    config: dict[str, Any]
    config_text: str
    run_id: str | None  # from run.json; None for a run written before run ids were kept
    base_dir: str | None  # from run.json: the directory of the config the run was started with
    store_path: Path | None  # None: the run kept its episodes in memory (store: memory), or the file is gone
    store_note: str = ""  # why there is no store file, shown instead of the episodes

    @property
    def name(self) -> str:
        name = self.config.get("name")
        return str(name) if name else self.path.name

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"


def is_run_dir(path: Path) -> bool:
    """A directory `ajet train` (or `ajet eval`) wrote: a config.yaml beside its run.json, metrics or store."""
    if not (path / "config.yaml").is_file():
        return False
    return any((path / name).exists() for name in ("run.json", "metrics.jsonl", DEFAULT_STORE_NAME))


def find_run_dirs(roots: list[Path], depth: int = SEARCH_DEPTH) -> list[Path]:
    """Every run directory in or below `roots` (a root may itself be a run), in a stable order, no duplicates."""
    found: list[Path] = []
    seen: set[Path] = set()

    def visit(directory: Path, level: int) -> None:
        resolved = directory.resolve()
        if resolved in seen:
            return
        seen.add(resolved)
        if is_run_dir(directory):
            found.append(directory)
        if level >= depth:
            return
        try:
            children = sorted(
                entry.path
                for entry in os.scandir(directory)
                if entry.is_dir() and not entry.name.startswith(".") and entry.name not in _NOT_RUNS
            )
        except OSError:  # removed or unreadable meanwhile: nothing to list there
            return
        for child in children:
            visit(Path(child), level + 1)

    for root in roots:
        visit(root, 0)
    return found


def load_run_dir(path: Path, key: str) -> RunDir:
    """Read what the run directory says about itself. A broken config.yaml still lists the run (with the
    parse error as its note) instead of hiding it."""
    text = _read_text(path / "config.yaml")
    try:
        loaded = yaml.safe_load(text)
        config = loaded if isinstance(loaded, dict) else {}
        note = "" if isinstance(loaded, dict) else "config.yaml is not a mapping"
    except yaml.YAMLError as exc:
        config, note = {}, f"config.yaml does not parse: {exc}"
    info = _read_json(path / "run.json")
    run_id = info.get("run_id") if isinstance(info.get("run_id"), str) else None
    base_dir = info.get("base_dir") if isinstance(info.get("base_dir"), str) else None
    store_path, store_note = locate_store(path, config.get("store"), base_dir)
    return RunDir(
        key=key,
        path=path,
        config=config,
        config_text=text,
        run_id=run_id,
        base_dir=base_dir,
        store_path=store_path,
        store_note=note or store_note,
    )


def locate_store(run_dir: Path, spec: Any, base_dir: str | None) -> tuple[Path | None, str]:
    """The store file a run's config names (see `ajet.core.store.open_store`), or None and the reason.

    A relative `store:` path was opened relative to the working directory of `ajet train`, which nothing
    records: it is looked for relative to the viewer's working directory, then to the config's directory."""
    if spec is None or spec == "":
        candidate = run_dir / DEFAULT_STORE_NAME
        if candidate.is_file():
            return candidate, ""
        return None, f"no store file yet ({candidate})"
    if not isinstance(spec, str):
        return None, f"config.yaml: store is {spec!r}, not a path"
    if spec in ("memory", ":memory:"):
        return None, f"store: {spec} (the episodes were kept in memory, not recorded)"
    path = Path(spec).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path]
    if not path.is_absolute() and base_dir is not None:
        candidates.append(Path(base_dir) / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate, ""
    return None, f"store file not found: {' or '.join(str(c) for c in candidates)}"


def discover(roots: list[Path]) -> dict[str, RunDir]:
    """The runs under `roots` by key: the directory's name, with -2, -3... where two runs share a name."""
    runs: dict[str, RunDir] = {}
    for path in find_run_dirs(roots):
        key = _slug(path.name)
        suffix = 2
        while key in runs:
            key = f"{_slug(path.name)}-{suffix}"
            suffix += 1
        runs[key] = load_run_dir(path, key)
    return runs


def _slug(name: str) -> str:
    # keys travel in URL paths: keep letters, digits, dot, dash and underscore
    cleaned = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "-" for c in name).strip("-.")
    return cleaned or "run"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
