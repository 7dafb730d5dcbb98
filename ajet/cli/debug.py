"""`ajet debug -c CONFIG`: run the workflow on a few tasks without training, and show what happened."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ajet.cli.errors import fail
from ajet.cli.overrides import SET_HELP, parse_overrides
from ajet.core.config import AjetConfig, ConfigError, load_config
from ajet.core.gateway.keys import split_untrained
from ajet.core.loading import load_workflow_factory
from ajet.core.models import ModelNotFoundError
from ajet.core.plugins import PluginError, PluginRegistry, load_registry
from ajet.core.preflight import check_run, source_error
from ajet.core.rollout import RolloutExecutor, RolloutSettings
from ajet.core.runtime import build_runtime
from ajet.core.store.base import Store
from ajet.core.store.records import RunRecord, RunStatus
from ajet.core.tasks import TaskSourceError, load_tasks
from ajet.core.types import Episode, EpisodeStatus, LabeledTask
from ajet.core.workflow import Workflow

# What the "untrained" column counts, and what ajet cannot see at all.
UNTRAINED_CAPTION = (
    "untrained: calls of agents not in trainable_targets, counted but not recorded: served by the gateway (the "
    "policy or an OpenAIEndpoint debug_model), or made by a native debug_model (e.g. OpenAIChatModel(...)) that "
    "ajet wraps to count its calls and failures (not its tokens, nor retries inside it). Not seen at all: models "
    "an agent gets elsewhere than from the tuner, and native debug models of a framework whose adapter does not "
    "count them."
)

STATUS_STYLE = {
    EpisodeStatus.OK: "green",
    EpisodeStatus.FAILED: "red",
    EpisodeStatus.TIMED_OUT: "yellow",
}


def debug_command(
    config_path: Path = typer.Option(..., "--config", "-c", help="the run's YAML config"),
    tasks: int | None = typer.Option(None, "--tasks", "-n", min=1, help="run only the first N tasks"),
    split: str = typer.Option("train", help="which data split to take tasks from: train or val"),
    group_size: int | None = typer.Option(None, "--group-size", "-g", min=1, help="episodes per task"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write the trajectories as JSONL here"),
    store: str | None = typer.Option(None, help="'memory' or a SQLite path (default: <run_dir>/ajet.sqlite)"),
    set_fields: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
    strict: bool = typer.Option(False, help="exit with status 1 if any episode failed or timed out"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show log messages"),
) -> None:
    """Run the workflow without training: a progress bar, then a table of episodes (reward, status, calls,
    tokens)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    console = Console()
    try:
        overrides = parse_overrides(set_fields)
        if group_size is not None:
            overrides["rollout.group_size"] = group_size
        if store is not None:
            overrides["store"] = store
        config = load_config(config_path, overrides)
        make_workflow = load_workflow_factory(config)
        registry = load_registry()
        # Everything the config names is checked before the model loads: a mistake costs no wait.
        check_run(config, registry, splits=[split] if split in ("train", "val") else [])
        task_list = _load_split(config, split, tasks)
    except (ConfigError, PluginError) as exc:
        fail(console, "configuration error", exc)
    try:
        episodes = asyncio.run(_run(config, registry, make_workflow, task_list, console, out))
    except ModelNotFoundError as exc:  # a hub id that could not be downloaded
        fail(console, "configuration error", f"model.path: {exc}")
    except (ConfigError, PluginError) as exc:
        fail(console, "error", exc)
    if strict and any(e.status != EpisodeStatus.OK for e in episodes):
        raise typer.Exit(1)


def _load_split(config: AjetConfig, split: str, limit: int | None) -> list[LabeledTask]:
    if split not in ("train", "val"):
        raise ConfigError(f"--split must be 'train' or 'val', not {split!r}")
    spec = getattr(config.data, split)
    if spec is None:
        raise ConfigError(
            f"data.{split}: no task source configured; add one, e.g. data: {{{split}: {{path: ...}}}}"
        )
    try:
        task_list = load_tasks(spec, config.base_dir)
    except TaskSourceError as exc:  # e.g. a malformed row: the message names the file and line
        raise source_error(split, exc) from None
    if not task_list:
        raise ConfigError(f"data.{split}: the task source produced no tasks")
    return task_list[:limit] if limit else task_list


async def _run(
    config: AjetConfig,
    registry: PluginRegistry,
    make_workflow: Callable[[], Workflow],
    tasks: list[LabeledTask],
    console: Console,
    out: Path | None,
) -> list[Episode]:
    starting = f"starting engine '{config.engine.kind}' with model {config.model.path}"
    if config.rollout.backend != "local":
        starting += f" and {config.rollout.backend} rollout workers"
    with console.status(escape(starting + " ...")):
        runtime = await build_runtime(config, registry)
    record = RunRecord(
        run_id=runtime.run_id,
        name=config.name,
        kind="debug",
        run_dir=str(runtime.run_dir),
        config=config.model_dump(mode="json", exclude_unset=True),
    )
    runtime.store.put_run(record)
    status: RunStatus = "failed"
    try:
        executor = RolloutExecutor(runtime, make_workflow, RolloutSettings.from_config(config, phase="debug"))
        if runtime.rollouts is not None:
            console.print(f"episodes run on {runtime.rollouts.describe()}", markup=False)
        total = len(tasks) * executor.settings.group_size
        columns = (
            TextColumn("[bold]episodes"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[summary]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("episodes", total=total, summary="")
            counts = {status: 0 for status in STATUS_STYLE}
            rewards: list[float] = []

            def on_done(episode: Episode) -> None:
                counts[episode.status] += 1
                if episode.reward is not None:
                    rewards.append(episode.reward)
                mean = f"reward {sum(rewards) / len(rewards):.3f}" if rewards else "reward -"
                summary = f"{mean}  ok {counts[EpisodeStatus.OK]}  failed {counts[EpisodeStatus.FAILED]}"
                summary += f"  timed out {counts[EpisodeStatus.TIMED_OUT]}"
                progress.update(bar, advance=1, summary=summary)

            episodes = await executor.run(tasks, on_done=on_done)
        console.print(episode_table(episodes, runtime.store))
        _print_errors(console, episodes)
        _print_untrained_failures(console, episodes)
        if out is not None:
            written = runtime.store.export_jsonl(out, run_id=runtime.run_id)
            console.print(f"wrote {written} trajectories to {out}", markup=False)
        console.print(
            f"run {runtime.run_id} recorded in {runtime.config.store or runtime.run_dir / 'ajet.sqlite'}",
            markup=False,
        )
        status = "finished"
        return episodes
    except (KeyboardInterrupt, asyncio.CancelledError):
        status = "stopped"
        raise
    finally:
        runtime.store.update_run(runtime.run_id, status=status, finished_at=time.time())
        await runtime.close()


def episode_table(episodes: list[Episode], store: Store) -> Table:
    table = Table(title="episodes", caption=UNTRAINED_CAPTION, caption_justify="left")
    for column in (
        "task",
        "#",
        "status",
        "reward",
        "success",
        "calls",
        "untrained",
        "prompt tok",
        "completion tok",
        "time s",
    ):
        table.add_column(column, justify="right" if column not in ("task", "status") else "left")
    for episode in episodes:
        calls = store.calls(episode.episode_id)
        prompt_tokens = sum(len(c.prompt_ids or []) for c in calls)
        completion_tokens = sum(len(c.completion_ids or []) for c in calls)
        style = STATUS_STYLE.get(episode.status, "")
        table.add_row(
            escape(episode.task_id),
            str(episode.repeat_index),
            f"[{style}]{episode.status}[/{style}]",
            "-" if episode.reward is None else f"{episode.reward:.3f}",
            "-" if episode.is_success is None else ("yes" if episode.is_success else "no"),
            str(len(calls)),
            _untrained_cell(episode),
            str(prompt_tokens),
            str(completion_tokens),
            "-" if episode.duration_s is None else f"{episode.duration_s:.1f}",
        )
    return table


def _untrained_cell(episode: Episode) -> str:
    calls, failed = split_untrained(episode.untrained_calls)
    cell = str(sum(calls.values()))
    if failed:
        cell += f" [red]({sum(failed.values())} failed)[/red]"
    return cell


def _print_untrained_failures(console: Console, episodes: list[Episode]) -> None:
    # An episode can be "ok" although its untrained agents never got an answer: the workflow caught the error
    # (the seed's werewolves score such a game -0.1). Say so, whatever the table's width.
    for episode in episodes:
        _, failed = split_untrained(episode.untrained_calls)
        if failed:
            per_tag = ", ".join(f"{tag}: {n}" for tag, n in sorted(failed.items()))
            console.print(
                f"[yellow]{escape(episode.task_id)}#{episode.repeat_index}: {sum(failed.values())} untrained "
                f"call(s) failed ({escape(per_tag)})[/yellow]; its debug_model did not answer, and the "
                "workflow went on (see the log)",
                soft_wrap=True,
            )


def _print_errors(console: Console, episodes: list[Episode]) -> None:
    failed = [e for e in episodes if e.status != EpisodeStatus.OK]
    for episode in failed[:5]:
        # escaped: an error's own square brackets (e.g. `pip install 'ajet[agentscope1]'`) are not markup
        console.print(
            f"[red]{escape(episode.task_id)}#{episode.repeat_index} {episode.status}:[/red] "
            f"{escape(str(episode.error))}"
        )
        if episode.traceback:
            console.print(episode.traceback.rstrip().splitlines()[-1], style="dim", markup=False)
    if len(failed) > 5:
        console.print(f"... and {len(failed) - 5} more; see the store or --out for all errors")
