"""`ajet train -c CONFIG` and `ajet train --resume RUN_DIR`, on one process or N (`--nproc N`, or under torchrun).

`--nproc N` (train.distributed.nproc) with N > 1 re-executes this same command under
`python -m torch.distributed.run --standalone --nproc-per-node N -m ajet.cli ...`: torchrun then owns the ranks
(Ctrl-C or SIGTERM stops them all; its exit status is the command's). Started by torchrun directly, the ranks
come from its environment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ajet.cli.errors import fail
from ajet.cli.overrides import SET_HELP, parse_overrides
from ajet.core.config import AjetConfig, ConfigError, load_config, parse_config
from ajet.core.engines.base import EngineUnavailableError
from ajet.core.engines.vllm_server import VllmServerError
from ajet.core.loading import load_workflow_factory
from ajet.core.models import ModelNotFoundError
from ajet.core.plugins import PluginError, PluginRegistry, load_registry
from ajet.core.preflight import check_run
from ajet.core.runtime import Runtime, build_runtime, new_run_id
from ajet.core.store.base import close_unfinished
from ajet.core.store.records import EpisodeQuery
from ajet.core.tasks import TaskSourceError
from ajet.core.workflow import Workflow
from ajet.trainer.weight_sync.base import WeightSyncError

if TYPE_CHECKING:
    from ajet.trainer.checkpoint import Checkpoint
    from ajet.trainer.distributed import Ranks


def train_command(
    config_path: Path | None = typer.Option(None, "--config", "-c", help="the run's YAML config"),
    resume: Path | None = typer.Option(None, "--resume", help="continue the run in this run directory"),
    steps: int | None = typer.Option(None, "--steps", min=1, help="override train.steps"),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="override run_dir (default runs/<name>)"),
    set_fields: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
    nproc: int | None = typer.Option(
        None, "--nproc", min=1, help="training processes (ranks), e.g. 2: sets train.distributed.nproc"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show log messages"),
) -> None:
    """Train the workflow's model with RL (or SFT): a progress bar, metrics in TensorBoard and metrics.jsonl,
    checkpoints that resume exactly."""
    run_training(config_path, resume, steps, run_dir, set_fields, nproc, verbose)


def run_training(
    config_path: Path | None,
    resume: Path | None,
    steps: int | None,
    run_dir: Path | None,
    set_fields: list[str] | None,
    nproc: int | None,
    verbose: bool,
    serve: dict[str, object] | None = None,
) -> None:
    """`ajet train`, and `ajet serve` with `serve` = the settings it forces (rollout.backend: remote, the
    gateway's host and port), set as overrides so that the saved run config keeps them."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    console = Console()
    from ajet.trainer.run_files import load_run_config, load_run_id, save_run_config

    try:
        if resume is not None:
            # Imported here: it imports torch (seconds), and a new run's config mistakes are told without it.
            from ajet.trainer.checkpoint import latest_checkpoint

            config = load_run_config(resume)
            run_id = load_run_id(resume) or _last_run_id(config)
            if nproc is not None:
                _set_nproc(config, nproc)
            if serve:
                config = load_config_with(config, serve)
            checkpoint = latest_checkpoint(resume)
            if checkpoint is None:
                console.print(f"no checkpoint in {resume} yet: starting that run from step 0", markup=False)
        elif config_path is not None:
            overrides = parse_overrides(set_fields)
            if run_dir is not None:
                overrides["run_dir"] = str(run_dir)
            if nproc is not None:
                overrides["train.distributed.nproc"] = nproc
            overrides.update(serve or {})
            config = load_config(config_path, overrides)
            checkpoint = None
            run_id = new_run_id()
        else:
            raise ConfigError("give a config (-c CONFIG) or a run to continue (--resume RUN_DIR)")
        if resume is not None and set_fields:
            raise ConfigError("--set applies to a new run (-c CONFIG); a resumed run keeps its saved config")
        if steps is not None:
            config.train.steps = steps
        # `ajet serve` runs no workflow here (its clients do); one the config names is still checked.
        make_workflow = None if serve and config.workflow is None else load_workflow_factory(config)
        registry = load_registry()
        # Everything the config names is checked before the model loads: a mistake costs no wait.
        check_run(config, registry, training=True)
        launched = int(os.environ["WORLD_SIZE"]) if os.environ.get("WORLD_SIZE") else None  # set by torchrun
        ranks_wanted = launched or config.train.distributed.nproc
        if checkpoint is not None:
            try:
                checkpoint.check_world_size(ranks_wanted)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if int(os.environ.get("RANK", "0")) == 0:
            run_id = save_run_config(config.resolved_run_dir(), config, run_id)
    except (ConfigError, PluginError, FileNotFoundError, TaskSourceError) as exc:
        fail(console, "configuration error", exc)
    if launched is None and config.train.distributed.nproc > 1:
        relaunch_under_torchrun(config.train.distributed.nproc)
    from ajet.trainer.distributed import init_ranks

    ranks = init_ranks(config)
    if ranks.master_process and launched is not None and launched != config.train.distributed.nproc:
        console.print(
            f"train.distributed.nproc is {config.train.distributed.nproc}, and torchrun started {launched} "
            f"ranks: training on {launched}",
            markup=False,
        )
    if ranks.device.type == "cuda":
        config.model.device = str(ranks.device)  # rank 0's engine, and each rank's policy: cuda:LOCAL_RANK
    try:
        asyncio.run(_train(config, registry, make_workflow, checkpoint, console, ranks, run_id))
        # Only after a clean run: a rank that fails just exits (torchrun then stops the others), where a
        # barrier would wait for ranks that are waiting in another collective.
        ranks.close()
    except ModelNotFoundError as exc:  # a hub id that could not be downloaded
        fail(console, "configuration error", f"model.path: {exc}")
    except (ConfigError, PluginError, ValueError) as exc:
        fail(console, "error", exc)
    except (EngineUnavailableError, VllmServerError, WeightSyncError) as exc:
        where = config.resolved_run_dir()
        fail(
            console,
            "engine error",
            f"{exc}\nThe run stopped before training on the failed step; continue it with: "
            f"ajet train --resume {where}",
        )


def _last_run_id(config: AjetConfig) -> str | None:
    """The run id of a run directory written before run.json kept it: that of its newest episode."""
    from ajet.core.store import open_store

    store = open_store(config.store, config.resolved_run_dir())
    try:
        newest = store.episodes_page(EpisodeQuery(order="-seq", limit=1))
    finally:
        store.close()
    return newest[0].run_id if newest else None


def close_interrupted_episodes(runtime: Runtime) -> int:
    """Episodes left pending or running by the process that stopped (a crash, a killed server): recorded as
    failed with the reason. The resumed run redraws their tasks from its checkpoint."""
    return close_unfinished(
        runtime.store, "the run stopped before this episode finished (it is re-offered after --resume)"
    )


def announce_server(runtime: Runtime, console: Console) -> None:
    """For `ajet serve`: where clients connect, and with which token."""
    from ajet.core.rollout_backends.remote import RemoteBackend

    backend = runtime.rollouts
    if not isinstance(backend, RemoteBackend) or runtime.advertised_url is None:
        return
    server = runtime.advertised_url.removesuffix("/v1")
    console.print(
        f"serving episodes at {server} (token: {backend.token_source}); run them with\n"
        f"  ajet worker --server {server} -c CONFIG      (your Workflow class)\n"
        "  or ajet.remote.EpisodeClient in your own code; the API: docs/remote.md, "
        f"{runtime.advertised_url}/ajet/openapi.json",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def load_config_with(config: AjetConfig, settings: dict[str, object]) -> AjetConfig:
    """A loaded config with dotted `settings` set (validated again)."""
    data = config.model_dump(mode="json", exclude_unset=True)
    for dotted, value in settings.items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return parse_config(data, base_dir=config.base_dir)


def relaunch_under_torchrun(nproc: int) -> NoReturn:
    """Replace this process by torchrun running the same command on `nproc` ranks (its children see
    WORLD_SIZE and do not relaunch). exec, not a child process: signals reach torchrun directly, which stops
    every rank, and torchrun's exit status is the command's."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "--",  # the rest is ajet's: torchrun's parser would take `--nproc` for an abbreviation of its own
        "ajet.cli",
        *sys.argv[1:],
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


def _set_nproc(config: AjetConfig, nproc: int) -> None:
    # Assigned level by level so that the saved config (what was set, see save_run_config) keeps it.
    config.train.distributed.nproc = nproc
    config.train.distributed = config.train.distributed
    config.train = config.train


async def _train(
    config: AjetConfig,
    registry: PluginRegistry,
    make_workflow: Callable[[], Workflow] | None,
    checkpoint: Checkpoint | None,
    console: Console,
    ranks: Ranks,
    run_id: str | None,
) -> None:
    from ajet.trainer.loop import Trainer

    if not ranks.master_process:  # the other ranks only train: no gateway, engine or store
        quiet = Console(quiet=True)
        follower = Trainer(
            config, None, make_workflow, resume=checkpoint, console=quiet, ranks=ranks, registry=registry
        )
        await follower.run()
        return
    if config.engine.kind == "vllm":  # the server start shows its own progress
        runtime = await build_runtime(config, registry, run_id=run_id)
    else:
        with console.status(escape(f"loading {config.model.path} ...")):
            runtime = await build_runtime(config, registry, run_id=run_id)
    try:
        if checkpoint is not None:
            interrupted = close_interrupted_episodes(runtime)
            if interrupted:
                console.print(
                    f"{interrupted} episodes were still running when the run stopped: recorded as failed; "
                    "their tasks are rolled out again",
                    markup=False,
                )
        trainer = Trainer(
            config, runtime, make_workflow, resume=checkpoint, console=console, ranks=ranks, registry=registry
        )
        if checkpoint is not None:
            console.print(f"resuming {runtime.run_dir} from step {checkpoint.step}", markup=False)
        announce_server(runtime, console)
        result = await trainer.run()
    finally:
        await runtime.close()
    for row in result.validation:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "step")
        console.print(f"validation at step {int(row['step'])}: {shown}", markup=False)
    console.print(f"done: step {result.final_step}; run directory {runtime.run_dir}", markup=False)
