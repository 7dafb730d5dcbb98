"""`Runtime`: everything a run needs, built from a config: plugins, store, engine, gateway.

async with Runtime.start(config) as runtime:
    episodes = await RolloutExecutor(runtime, ...).run(tasks)
"""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ajet.core.config import AjetConfig, ConfigError
from ajet.core.engines.base import InferenceEngine
from ajet.core.gateway.app import Gateway
from ajet.core.gateway.backends import ChatBackend, EngineChatBackend
from ajet.core.gateway.render import ChatRenderer
from ajet.core.judgers import Judge, make_judge
from ajet.core.plugins import PluginError, PluginRegistry, load_registry
from ajet.core.rollout_backends.base import RolloutBackend
from ajet.core.store import open_store
from ajet.core.store.base import Store
from ajet.core.tasks import import_object


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


@dataclass
class Runtime:
    config: AjetConfig
    registry: PluginRegistry
    store: Store
    backend: ChatBackend
    gateway: Gateway
    engine: InferenceEngine | None
    run_dir: Path
    judge: Judge | None = None
    #: where episodes run when not in this process (Ray workers); None: each executor runs them here
    rollouts: RolloutBackend | None = None
    #: the gateway URL handed to workers in other processes (None: only in-process clients)
    advertised_url: str | None = None
    run_id: str = field(default_factory=new_run_id)

    @classmethod
    def start(
        cls,
        config: AjetConfig,
        *,
        registry: PluginRegistry | None = None,
        store: Store | None = None,
        engine: InferenceEngine | None = None,
    ) -> _RuntimeContext:
        return _RuntimeContext(config, registry, store, engine)

    async def close(self) -> None:
        if self.rollouts is not None:
            await self.rollouts.aclose()
        await self.gateway.aclose()
        if self.engine is not None:
            await self.engine.aclose()
        self.store.close()


class _RuntimeContext:
    """`async with Runtime.start(config) as runtime:` builds the runtime and always tears it down."""

    def __init__(self, config: AjetConfig, registry: Any, store: Any, engine: Any) -> None:
        self._args = (config, registry, store, engine)
        self._runtime: Runtime | None = None

    async def __aenter__(self) -> Runtime:
        self._runtime = await build_runtime(*self._args)
        return self._runtime

    async def __aexit__(self, *exc: object) -> None:
        if self._runtime is not None:
            await self._runtime.close()


async def build_runtime(
    config: AjetConfig,
    registry: PluginRegistry | None = None,
    store: Store | None = None,
    engine: InferenceEngine | None = None,
    run_id: str | None = None,
) -> Runtime:
    """`run_id`: the run's identity in the store (a resumed run passes its own); default a new one."""
    registry = registry or load_registry()
    # The CLI runs the whole preflight before loading anything; library callers get at least the framework
    # check here, so a misspelled `framework:` fails now with "did you mean", not inside the first episode.
    from ajet.core.preflight import check_framework  # preflight imports this module

    check_framework(config.framework, registry)
    judge = load_judge(config, registry)
    run_dir = config.resolved_run_dir()
    store = store or open_store(config.store, run_dir)
    parser = registry.tool_parser_factory(config.gateway.tool_parser)()
    produced: Any = engine if engine is not None else registry.engine_factory(config.engine.kind)(config)
    if isinstance(produced, InferenceEngine):
        engine = produced
        backend: ChatBackend = EngineChatBackend(
            engine, ChatRenderer(engine.tokenizer), parser, default_sampling=config.rollout.sampling
        )
    elif isinstance(produced, ChatBackend):
        engine, backend = None, produced
    else:
        raise TypeError(
            f"engine {config.engine.kind!r} produced {produced!r}: expected an engine or chat backend"
        )
    gateway = Gateway(
        backend,
        store,
        max_request_bytes=config.gateway.max_request_bytes,
        model_name=config.model.served_name,
    )
    try:
        rollouts = registry.rollout_backend_factory(config.rollout.backend)(config, registry)
    except PluginError as exc:
        raise ConfigError(str(exc)) from None
    advertised_url = None
    if rollouts is not None:
        rollouts.mount(gateway)
    # Workers in other processes reach the gateway over HTTP, whatever gateway.http says.
    if config.gateway.http or rollouts is not None:
        bound = await gateway.start_http(
            config.gateway.host, config.gateway.port, allow_remote=config.gateway.allow_remote
        )
        advertised_url = config.gateway.advertise_url or reachable_url(bound)
    runtime = Runtime(
        config=config,
        registry=registry,
        store=store,
        backend=backend,
        gateway=gateway,
        engine=engine,
        run_dir=run_dir,
        judge=judge,
        rollouts=rollouts,
        advertised_url=advertised_url,
        run_id=run_id or new_run_id(),
    )
    if rollouts is not None:  # workers start with the run (Ray: ~10 s), not in the middle of its first step
        try:
            await rollouts.start()
        except BaseException:
            await runtime.close()
            raise
    return runtime


def reachable_url(bound: str) -> str:
    """The gateway's bound URL as another machine can use it: a wildcard host (0.0.0.0, ::) becomes this
    machine's address."""
    parts = urlsplit(bound)
    if parts.hostname not in ("0.0.0.0", "::"):
        return bound
    return urlunsplit(parts._replace(netloc=f"{outbound_address()}:{parts.port}"))


def outbound_address() -> str:
    """This machine's address on the network its default route uses. A UDP "connect" sends nothing; it only
    picks the interface. (The hostname's address is often 127.0.1.1 on Debian, useless to another machine.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return str(probe.getsockname()[0])
        except OSError:
            return socket.gethostbyname(socket.gethostname())


def load_judge(config: AjetConfig, registry: PluginRegistry) -> Judge | None:
    """The configured judger, from the plugin registry by name or imported from 'module:fn' / 'file.py:fn'."""
    if config.judger is None:
        return None
    path = config.judger.path
    if path in registry.judgers:
        target = registry.judgers[path].value
    else:
        try:
            target = import_object(path, config.base_dir)
        except (ImportError, AttributeError, FileNotFoundError, ValueError) as exc:
            known = ", ".join(sorted(registry.judgers))
            raise ConfigError(f"judger.path: {exc}. Built-in and plugin judgers: {known}") from None
    try:
        return make_judge(target, dict(config.judger.args))
    except TypeError as exc:
        raise ConfigError(f"judger.args do not fit {path!r}: {exc}") from None
