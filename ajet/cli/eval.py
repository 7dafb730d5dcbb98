"""`ajet eval -c CONFIG [--model PATH|base ...] [--run RUN_DIR ...] [--k K] [--split val]`: score models with
pass@k, K samples per task, side by side, as tables and a JSON file; the episodes are stored (phase eval)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ajet.cli.errors import fail
from ajet.cli.overrides import SET_HELP, parse_overrides
from ajet.core.config import AjetConfig, ConfigError, load_config
from ajet.core.engines.base import EngineUnavailableError
from ajet.core.engines.vllm_server import VllmServerError
from ajet.core.loading import load_workflow_factory
from ajet.core.models import ModelNotFoundError
from ajet.core.plugins import PluginError, PluginRegistry, load_registry
from ajet.core.preflight import check_run, source_error
from ajet.core.tasks import TaskSourceError, load_tasks
from ajet.core.types import Episode, LabeledTask
from ajet.core.workflow import Workflow
from ajet.eval.report import EvalReport, EvalResults, deltas, episode_succeeded
from ajet.eval.subjects import EvalError, EvalSubject, resolve_subjects
from ajet.eval.tables import LEGEND, summary_table, task_table

SPLITS = ("train", "val")


def eval_command(
    config_path: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="the YAML config (workflow, data, sampling); default: the first --run's own",
    ),
    model: list[str] | None = typer.Option(
        None,
        "--model",
        "-m",
        help="a model to evaluate, repeatable: a Hugging Face model directory, a .gguf file, or 'base' for the "
        "config's model.path (the default when neither --model nor --run is given)",
    ),
    run: list[Path] | None = typer.Option(
        None,
        "--run",
        "-r",
        help="a training run to evaluate, repeatable: RUN_DIR (its latest checkpoint) or "
        "RUN_DIR/checkpoints/step-NNNNNN; its episodes are stored in the run's own store",
    ),
    k: int = typer.Option(8, "--k", "-k", help="samples per task (K); pass@k is reported for k = 1..K"),
    split: str = typer.Option("val", help="the config's data split to take tasks from: val or train"),
    tasks: int | None = typer.Option(
        None, "--tasks", "-n", help="evaluate only the first N tasks of the split"
    ),
    temperature: float | None = typer.Option(
        None,
        help="sampling temperature of the calls that set none themselves (default: rollout.sampling.temperature); "
        "pass@k needs > 0",
    ),
    seed: int | None = typer.Option(
        None, help="base sampling seed, the same for every model (default: the config's seed)"
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="the JSON file to write (default: RUN_DIR/eval/eval-<time>.json of the first --run, else "
        "eval.json in the eval directory beside the config's run_dir)",
    ),
    show_tasks: int = typer.Option(
        30, "--show-tasks", min=0, help="print at most N rows of the per-task table"
    ),
    set_fields: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show log messages"),
) -> None:
    """Score models on held-out tasks: K samples per task, pass@1..K (the unbiased estimator), mean reward and
    success, side by side with the change from the first model; a JSON file with every number."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    console = Console()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        if k < 1:
            raise EvalError(
                f"--k {k}: K is the number of samples per task and must be at least 1, e.g. --k 8"
            )
        if tasks is not None and tasks < 1:
            raise EvalError(f"--tasks {tasks}: give at least 1 task, or leave it out for the whole split")
        config = _config(config_path, run or [], set_fields)
        make_workflow = load_workflow_factory(config)
        registry = load_registry()
        check_run(config, registry, splits=[split] if split in SPLITS else [])
        task_list = _tasks(config, split, tasks)
        subjects = resolve_subjects(config, model or [], run or [], _eval_dir(config, stamp))
        _check_engine(config, subjects)
        temperature = config.rollout.sampling.temperature if temperature is None else temperature
        if temperature < 0:
            raise EvalError(f"--temperature {temperature:g}: a temperature cannot be negative")
        seed = config.seed if seed is None else seed
        out = output or _default_output(subjects, stamp)
    except (ConfigError, PluginError, EvalError) as exc:
        fail(console, "configuration error", exc)
    if temperature == 0:
        console.print(
            "[yellow]warning:[/yellow] temperature 0 is greedy decoding: the K samples of a task are the same "
            "answer, so pass@k equals pass@1 for every k; give --temperature 1.0 (or set "
            "rollout.sampling.temperature) to measure pass@k"
        )
    try:
        reports = asyncio.run(
            _evaluate_all(
                config, registry, make_workflow, subjects, task_list, k, split, temperature, seed, console
            )
        )
    except ModelNotFoundError as exc:
        fail(console, "configuration error", f"model.path: {exc}")
    except (ConfigError, PluginError, ValueError) as exc:
        fail(console, "error", exc)
    except (EngineUnavailableError, VllmServerError) as exc:
        fail(console, "engine error", exc)
    results = EvalResults(
        config=str(config_path or (run or [Path()])[0] / "config.yaml"),
        split=split,
        k=k,
        tasks=len(task_list),
        temperature=temperature,
        seed=seed,
        created_at=time.time(),
        reports=reports,
        deltas=deltas(reports),
    )
    console.print(summary_table(reports))
    console.print(LEGEND, style="dim", markup=False, soft_wrap=True)
    if show_tasks:
        console.print(task_table(reports, show_tasks))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(results.model_dump_json(indent=2) + "\n", encoding="utf-8")
    for report in reports:
        console.print(
            f"{report.label}: {report.episodes} episodes in {report.store} (run {report.run_id}, phase eval"
            + (f", step {report.step})" if report.step is not None else ")"),
            markup=False,
            soft_wrap=True,
        )
    console.print(f"wrote {out}", markup=False, soft_wrap=True)


def _config(config_path: Path | None, runs: list[Path], set_fields: list[str] | None) -> AjetConfig:
    overrides = parse_overrides(set_fields)
    if config_path is not None:
        return load_config(config_path, overrides)
    if not runs:
        raise EvalError("give a config (-c CONFIG), or a run (--run RUN_DIR) whose own config is used")
    config_file = runs[0] / "config.yaml"
    if not config_file.is_file():
        raise EvalError(f"--run {runs[0]}: no config.yaml there; give the config with -c CONFIG")
    from ajet.trainer.run_files import load_run_config

    config = load_run_config(runs[0])
    if overrides:
        from ajet.cli.train import load_config_with

        config = load_config_with(config, overrides)
    return config


def _tasks(config: AjetConfig, split: str, limit: int | None) -> list[LabeledTask]:
    configured = [name for name in SPLITS if getattr(config.data, name) is not None]
    if split not in SPLITS:
        raise EvalError(
            f"--split {split}: unknown split; the config's data section has {', '.join(configured) or 'none'}"
        )
    spec = getattr(config.data, split)
    if spec is None:
        raise EvalError(
            f"--split {split}: data.{split} is not set in the config; it has: {', '.join(configured) or 'none'} "
            f"(add data.{split}, e.g. data: {{{split}: {{path: tasks.jsonl}}}})"
        )
    try:
        found = load_tasks(spec, config.base_dir)
    except TaskSourceError as exc:
        raise source_error(split, exc) from None
    if not found:
        raise EvalError(f"data.{split}: the task source produced no tasks")
    return found[:limit] if limit else found


def _check_engine(config: AjetConfig, subjects: list[EvalSubject]) -> None:
    """Another model needs an engine that loads model.path: not a remote endpoint, not a server you run."""
    others = [s.label for s in subjects if s.source != "base"]
    fixed = config.engine.kind == "openai" or (config.engine.kind == "vllm" and config.engine.base_url)
    if others and fixed:
        raise EvalError(
            f"engine.kind {config.engine.kind} with base_url serves the server's own model, so {others[0]} cannot "
            "be loaded into it; evaluate it with engine.kind transformers, or vllm with engine.launch"
        )


def _eval_dir(config: AjetConfig, stamp: str) -> Path:
    """Where base and --model episodes are stored: beside the config's run directory (runs/ by default)."""
    return config.resolved_run_dir().parent / f"eval-{config.name}-{stamp}"


def _default_output(subjects: list[EvalSubject], stamp: str) -> Path:
    for subject in subjects:
        if subject.source == "run":
            return subject.run_dir / "eval" / f"eval-{stamp}.json"
    return subjects[0].run_dir.parent / "eval.json"


async def _evaluate_all(
    config: AjetConfig,
    registry: PluginRegistry,
    make_workflow: Callable[[], Workflow],
    subjects: list[EvalSubject],
    tasks: list[LabeledTask],
    k: int,
    split: str,
    temperature: float,
    seed: int,
    console: Console,
) -> list[EvalReport]:
    from ajet.eval.run import evaluate

    reports = []
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[summary]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        for subject in subjects:
            bar = progress.add_task(
                escape(f"eval {subject.label}"), total=None, summary="loading the model ..."
            )
            tally = _Tally()

            def ready(total: int, bar: int = bar) -> None:
                progress.update(bar, total=total, summary="")

            def done(episode: Episode, bar: int = bar, tally: _Tally = tally) -> None:
                progress.update(bar, advance=1, summary=tally.add(episode))

            reports.append(
                await evaluate(
                    config,
                    subject,
                    tasks,
                    k=k,
                    split=split,
                    temperature=temperature,
                    seed=seed,
                    make_workflow=make_workflow,
                    registry=registry,
                    on_ready=ready,
                    on_done=done,
                )
            )
    return reports


class _Tally:
    """The running numbers the progress bar shows."""

    def __init__(self) -> None:
        self.episodes = self.successes = self.unfinished = 0
        self.rewards: list[float] = []

    def add(self, episode: Episode) -> str:
        self.episodes += 1
        self.successes += episode_succeeded(episode)
        self.unfinished += episode.status != "ok"
        if episode.reward is not None:
            self.rewards.append(episode.reward)
        reward = f"{sum(self.rewards) / len(self.rewards):.3f}" if self.rewards else "-"
        return f"success {self.successes / self.episodes:.0%}  reward {reward}  failed {self.unfinished}"
