"""The `ray` rollout backend: episodes run in `rollout.workers` Ray actors, on this machine or anywhere on a
Ray cluster. Each worker imports the workflow itself (its framework and its tools live in the worker), gets
an `EpisodeAccess` per episode, and talks to the gateway over HTTP with that episode's keys.

    rollout: {backend: ray, workers: 4, address: auto}     # None: start a local Ray instance

A worker that dies mid-episode (killed, out of memory, its node gone) makes its episodes raise
`WorkerLostError`; the executor records them as failed and reruns each once on another worker. Ray restarts
the dead actor, so the pool keeps its size.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from pathlib import Path
from typing import Any

from ajet.core.config import AjetConfig, ConfigError
from ajet.core.episode_access import EpisodeAccess
from ajet.core.episode_runner import EpisodeOutcome, run_episode, this_process
from ajet.core.rollout_backends.base import RolloutBackend, WorkerLostError
from ajet.core.types import EpisodeStatus

logger = logging.getLogger(__name__)
RAY_HINT = "install it with: pip install 'ray[default]==2.60.0' (or pip install 'ajet[ray]')"


class EpisodeWorker:
    """The Ray actor: one per worker process. Async, so one worker runs many episodes at once."""

    def __init__(self, name: str, config_json: str, base_dir: str) -> None:
        from ajet.core.loading import load_workflow_factory
        from ajet.core.plugins import load_registry

        config = AjetConfig.model_validate_json(config_json)
        # The config's files resolve as on the driver; on a node with a shipped working_dir, against it.
        config._base_dir = Path(base_dir) if Path(base_dir).is_dir() else Path.cwd()
        self.name = name
        self.registry = load_registry()
        self.make_workflow: Any = load_workflow_factory(config)

    def where(self) -> dict[str, Any]:
        import ray

        return {**this_process("ray", self.name), "node": ray.get_runtime_context().get_node_id()}

    async def run(self, access: EpisodeAccess) -> EpisodeOutcome:
        return await run_episode(access, self.make_workflow, self.registry, worker=self.where())


class RayBackend(RolloutBackend):
    def __init__(self, config: AjetConfig) -> None:
        self.config = config
        rollout = config.rollout
        self.workers = rollout.workers
        # Episodes at once per worker, so that all of them together run rollout.max_concurrency.
        self.per_worker = max(1, math.ceil(rollout.max_concurrency / rollout.workers))
        self.max_concurrency = self.per_worker * self.workers
        self._actors: list[Any] = []
        self._names: list[str] = []
        self._load: list[int] = []
        self._up: list[
            asyncio.Event
        ] = []  # set while the worker is alive; cleared from its loss until Ray restarts it
        self._owns_ray = False
        self._started = asyncio.Lock()
        self._restarts: set[asyncio.Future[None]] = set()

    def describe(self) -> str:
        where = self.config.rollout.address or "a local Ray instance"
        return f"ray ({self.workers} workers x {self.per_worker} episodes, on {where})"

    async def start(self) -> None:
        async with self._started:
            if self._actors:
                return
            ray = _import_ray()
            rollout = self.config.rollout
            if not ray.is_initialized():
                # On this thread, not a helper one: Ray installs its signal handlers only from the main thread.
                # It blocks the loop for the ~10 s a local instance takes to start, before any episode runs.
                self._init_ray(ray)
            actor = ray.remote(EpisodeWorker).options(
                max_concurrency=self.per_worker,
                num_cpus=rollout.ray.num_cpus,
                max_restarts=-1,  # a dead worker comes back; its lost episodes are retried by the executor
                max_task_retries=0,  # never rerun an episode behind the executor's back (it would count twice)
                runtime_env=rollout.ray.runtime_env or None,
            )
            config_json = self.config.model_dump_json()
            base_dir = str(self.config.base_dir)
            self._names = [f"ray-worker-{i}" for i in range(self.workers)]
            self._actors = [actor.remote(name, config_json, base_dir) for name in self._names]
            self._load = [0] * self.workers
            self._up = [asyncio.Event() for _ in self._names]
            for up in self._up:
                up.set()
            try:
                places = await asyncio.wait_for(
                    asyncio.gather(*(a.where.remote() for a in self._actors)), rollout.ray.init_timeout_s
                )
            except TimeoutError:
                await self.aclose()
                raise ConfigError(
                    f"rollout.workers: {self.workers} Ray workers were not all up within "
                    f"{rollout.ray.init_timeout_s:g} s (rollout.ray.init_timeout_s); does the cluster have "
                    f"{rollout.ray.num_cpus:g} free CPUs per worker (rollout.ray.num_cpus)?"
                ) from None
            except ray.exceptions.RayActorError as exc:
                await self.aclose()
                raise ConfigError(f"rollout.backend ray: a worker failed to start: {_cause(exc)}") from None
            hosts = sorted({p["host"] for p in places})
            logger.info("ray rollouts: %d workers on %s", self.workers, ", ".join(hosts))

    def _init_ray(self, ray: Any) -> None:
        address = self.config.rollout.address
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "logging_level": logging.WARNING}
        if address is None:
            # "local" starts a new instance; Ray's own default would join any instance it finds on the machine
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            kwargs.update(include_dashboard=False)
        try:
            ray.init(address=address or "local", **kwargs)
        except ConnectionError as exc:
            raise ConfigError(f"rollout.address: could not connect to Ray at {address!r}: {exc}") from None
        self._owns_ray = address is None

    async def run(self, access: EpisodeAccess, *, avoid: str | None = None) -> EpisodeOutcome:
        ray = _import_ray()
        index = await self._pick(avoid)
        self._load[index] += 1
        try:
            ref = self._actors[index].run.remote(access)
            # The worker times the episode out itself; this is the backstop for a worker that cannot (a tool that
            # blocks its event loop): the episode is timed out and the stuck worker restarted.
            backstop = access.timeout_s + self.config.rollout.ray.hang_grace_s
            done, _ = await asyncio.wait({asyncio.ensure_future(_resolve(ref))}, timeout=backstop)
            if not done:
                self._restart(index)
                grace = self.config.rollout.ray.hang_grace_s
                return EpisodeOutcome(
                    status=EpisodeStatus.TIMED_OUT,
                    error=f"episode did not finish within {access.timeout_s:g} s (rollout.episode_timeout_s), "
                    f"and its worker {self._names[index]} did not answer for {grace:g} s more "
                    "(rollout.ray.hang_grace_s): a tool blocking the event loop? The worker was restarted.",
                    worker={"backend": "ray", "worker": self._names[index]},
                )
            return done.pop().result()
        except (
            ray.exceptions.RayActorError,
            ray.exceptions.ActorUnavailableError,
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError,
        ) as exc:
            self._lost(index)
            raise WorkerLostError(_cause(exc), self._names[index]) from None
        finally:
            self._load[index] -= 1

    async def _pick(self, avoid: str | None) -> int:
        """The least busy live worker, other than `avoid` when another is alive; waits while none is."""
        while True:
            alive = [i for i in range(self.workers) if self._up[i].is_set()]
            choices = [i for i in alive if self._names[i] != avoid] or alive
            if choices:
                return min(choices, key=lambda i: self._load[i])
            waits = [asyncio.ensure_future(up.wait()) for up in self._up]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for wait in pending:
                wait.cancel()

    def _restart(self, index: int) -> None:
        """Kill a stuck worker; Ray starts it again (its other episodes are lost, and retried elsewhere)."""
        ray = _import_ray()
        logger.warning("ray rollouts: restarting %s, which stopped answering", self._names[index])
        self._lost(index)
        ray.kill(self._actors[index], no_restart=False)

    def _lost(self, index: int) -> None:
        """Stop handing the worker episodes until Ray has restarted it (its actor answers again)."""
        if not self._up[index].is_set():
            return
        self._up[index].clear()
        task = asyncio.ensure_future(self._await_restart(index))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _await_restart(self, index: int) -> None:
        ray = _import_ray()
        deadline = asyncio.get_running_loop().time() + self.config.rollout.ray.init_timeout_s
        while asyncio.get_running_loop().time() < deadline:
            try:
                await self._actors[index].where.remote()
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                await asyncio.sleep(0.5)
                continue
            self._up[index].set()
            return
        logger.warning("ray rollouts: %s did not come back after its loss", self._names[index])

    async def aclose(self) -> None:
        if not self._actors and not self._owns_ray:
            return
        ray = _import_ray()
        for task in list(self._restarts):
            task.cancel()
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        self._actors = []
        if self._owns_ray:
            await asyncio.to_thread(ray.shutdown)
            self._owns_ray = False


async def _resolve(ref: Any) -> Any:
    return await ref


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"rollout.backend ray needs Ray: {RAY_HINT}") from None
    return ray


def _cause(exc: BaseException) -> str:
    """Ray's error messages run to many lines; the first says what happened."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
