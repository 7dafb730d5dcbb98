"""What `ajet eval` evaluates, resolved from the command line before any model loads, so that a wrong path is
one line of error in well under a second:

- `--model base` (or no --model/--run at all): the config's own model.path, as training starts from it (step 0);
- `--model PATH`: a Hugging Face model directory (an `ajet export`, a hub download) or a .gguf file;
- `--run RUN_DIR`: the run's latest checkpoint; `--run RUN_DIR/checkpoints/step-000010`: that checkpoint.
  A LoRA run's checkpoint holds only its adapter, merged into the run's model.path when it is evaluated.

A run's episodes go into that run's own store, under its run id, so that they sit beside its training. Each
other model gets a run directory of its own (config.yaml, run.json, ajet.sqlite) in the command's eval
directory, e.g. runs/eval-arithmetic-20261203-090610/base/, which `ajet view` lists as an eval run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ajet.core.config import AjetConfig
from ajet.core.models import ModelNotFoundError, check_model_spec
from ajet.core.runtime import new_run_id
from ajet.eval.report import Source

BASE = "base"


class EvalError(ValueError):
    """A command-line mistake: the message names the flag and the fix."""


@dataclass
class EvalSubject:
    label: str
    source: Source
    #: the model spec the engine loads: the config's model.path, a directory, or a checkpoint's model/
    model: str
    #: the run directory whose store receives the episodes (for base and --model: one in the eval directory)
    run_dir: Path
    #: that directory's store setting: None (<run_dir>/ajet.sqlite), 'memory', or a SQLite path
    store: str | None
    run_id: str
    step: int | None = None
    checkpoint: Path | None = None
    #: a LoRA checkpoint: the base model its adapter is merged into (the run's model.path), and its dtype
    adapter_base: str | None = None
    adapter_dtype: str = "float32"

    @property
    def store_path(self) -> str:
        if self.store == "memory":
            return "memory (not kept)"
        return str(Path(self.store) if self.store else self.run_dir / "ajet.sqlite")


def resolve_subjects(
    config: AjetConfig, models: list[str], runs: list[Path], eval_dir: Path
) -> list[EvalSubject]:
    """The --model ones in the order given, then the --run ones; only the base model without either."""
    if not models and not runs:
        models = [BASE]
    store = "memory" if config.store == "memory" else None
    subjects = [model_subject(config, spec, eval_dir, store) for spec in models]
    subjects += [run_subject(path) for path in runs]
    seen: dict[str, int] = {}
    for subject in subjects:  # the same model twice still gets two columns
        seen[subject.label] = seen.get(subject.label, 0) + 1
        if seen[subject.label] > 1:
            subject.label = f"{subject.label} #{seen[subject.label]}"
        if subject.source != "run":  # one run directory per model, as `ajet view` lists runs
            subject.run_dir = eval_dir / _slug(subject.label)
    return subjects


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.") or "model"


def model_subject(config: AjetConfig, spec: str, eval_dir: Path, store: str | None) -> EvalSubject:
    if spec == BASE:
        return EvalSubject(
            label=BASE, source="base", model=config.model.path, run_dir=eval_dir, store=store,
            run_id=new_run_id(), step=0,
        )  # fmt: skip
    path = Path(spec).expanduser()
    if _is_run_dir(path) or _is_checkpoint(path):
        raise EvalError(
            f"--model {spec}: that is a training run or checkpoint; evaluate it with --run {spec}"
        )
    try:
        check_model_spec(spec)
    except ModelNotFoundError as exc:
        raise EvalError(f"--model {spec}: {exc}; or write --model base for the config's model.path") from None
    label = path.name if path.exists() else spec
    return EvalSubject(
        label=label, source="model", model=spec, run_dir=eval_dir, store=store, run_id=new_run_id()
    )


def run_subject(path: Path) -> EvalSubject:
    from ajet.trainer.checkpoint import latest_checkpoint, load_checkpoint
    from ajet.trainer.run_files import load_run_config

    if not path.exists():
        raise EvalError(f"--run {path}: no such directory; give the run_dir of an `ajet train` run")
    if _is_checkpoint(path):
        run_dir = path.parent.parent
        if path.parent.name != "checkpoints" or not _is_run_dir(run_dir):
            raise EvalError(
                f"--run {path}: a checkpoint outside its run directory (no {run_dir / 'config.yaml'}); give "
                f"the run directory, or its model with --model {path / 'model'} (a full, not LoRA, checkpoint)"
            )
        checkpoint = load_checkpoint(path)
    elif _is_run_dir(path):
        run_dir = path
        found = latest_checkpoint(path)
        if found is None:
            raise EvalError(
                f"--run {path}: the run has no checkpoint yet ({path / 'checkpoints' / 'latest'} is missing). "
                "A run writes one at its end and every train.checkpoint_every steps: finish it with "
                f"`ajet train --resume {path}`, or evaluate its starting model with --model base"
            )
        checkpoint = found
    else:
        raise EvalError(
            f"--run {path}: not an ajet run directory (no config.yaml) nor one of its checkpoints; give the "
            "run_dir of an `ajet train` run, or a model directory with --model"
        )
    run_config = load_run_config(run_dir)
    lora = checkpoint.is_adapter
    return EvalSubject(
        label=f"{run_dir.name}@{checkpoint.step}",
        source="run",
        model=str(checkpoint.model_dir),
        run_dir=run_dir,
        store=run_config.store,
        run_id=run_id_of(run_dir, run_config.store),
        step=checkpoint.step,
        checkpoint=checkpoint.path,
        adapter_base=run_config.model.path if lora else None,
        adapter_dtype=run_config.model.dtype,
    )


def run_id_of(run_dir: Path, store: str | None) -> str:
    """The run's id, as `ajet train` keeps it in run.json; for a run from before it did, that of its newest
    episode (as `ajet train --resume` finds it); a new one for a run that stored none."""
    from ajet.core.store import open_store
    from ajet.core.store.records import EpisodeQuery
    from ajet.trainer.run_files import load_run_id

    run_id = load_run_id(run_dir)
    if run_id:
        return run_id
    opened = open_store(store, run_dir)
    try:
        newest = opened.episodes_page(EpisodeQuery(order="-seq", limit=1))
    finally:
        opened.close()
    return newest[0].run_id if newest else new_run_id()


def _is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "run.json").is_file()


def _is_checkpoint(path: Path) -> bool:
    from ajet.trainer.checkpoint import is_checkpoint_dir

    return path.is_dir() and is_checkpoint_dir(path)
