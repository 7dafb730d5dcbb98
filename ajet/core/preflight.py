"""Check a loaded config against this machine before anything heavy starts.

Validation (config.py) checks that each setting has the right shape; this checks that what the settings name
exists here: the framework's adapter, the engine and tool parser, the judger, the data, the model files and
the device. A mistake then fails in well under a second with a ConfigError that names the field and the fix,
instead of a traceback after the model has loaded (or after the first rollouts).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from ajet.core.config import AjetConfig, ConfigError
from ajet.core.models import ModelNotFoundError, check_model_spec
from ajet.core.plugins import PluginError, PluginRegistry, did_you_mean
from ajet.core.runtime import load_judge
from ajet.core.tasks import TaskSourceError, check_task_source, resolve_path


def check_run(
    config: AjetConfig,
    registry: PluginRegistry,
    *,
    splits: Iterable[str] = ("train", "val"),
    training: bool = False,
) -> None:
    """Raise ConfigError for the first setting that names something missing. `splits`: the data splits the
    run reads; `training`: also check what only `ajet train` needs (SFT demonstrations)."""
    check_framework(config.framework, registry)
    try:
        registry.engine_factory(config.engine.kind)
        registry.tool_parser_factory(config.gateway.tool_parser)
        registry.rollout_backend_factory(config.rollout.backend)
    except PluginError as exc:  # its message starts with the field: "engine.kind: unknown engine ..."
        raise ConfigError(str(exc)) from None
    _check_rollout_backend(config)
    _check_judger(config, registry)
    for split in splits:
        spec = getattr(config.data, split)
        if spec is None:
            continue
        generators = {name: r.value for name, r in registry.task_sources.items()}
        try:
            check_task_source(spec, config.base_dir, generators=generators)
        except TaskSourceError as exc:
            raise source_error(split, exc) from None
    _check_store(config.store)
    if training:
        _check_demonstrations(config)
        if config.engine.weight_sync != "auto":
            try:
                registry.weight_sync_factory(config.engine.weight_sync)
            except PluginError as exc:  # "engine.weight_sync: unknown weight sync ..."
                raise ConfigError(str(exc)) from None
    _check_vllm_launch(config)
    if config.engine.kind in ("transformers", "vllm"):  # engines that read model.path themselves
        try:
            check_model_spec(config.model.path)
        except ModelNotFoundError as exc:
            raise ConfigError(f"model.path: {exc}") from None
        check_device(config.model.device)


def _check_rollout_backend(config: AjetConfig) -> None:
    _check_gateway_host(config)
    if config.rollout.backend != "ray":
        return
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        from ajet.core.rollout_backends.ray_workers import RAY_HINT

        raise ConfigError(f"rollout.backend: 'ray' needs Ray, which is not installed; {RAY_HINT}")
    address = config.rollout.address
    if address is not None and address != "auto" and "://" not in address and ":" not in address:
        raise ConfigError(
            f"rollout.address: {address!r} is not a Ray address; write auto (the cluster this machine is in), "
            "ray://HOST:10001 (Ray Client), HOST:6379, or leave it out to start a local Ray instance"
        )


def _check_gateway_host(config: AjetConfig) -> None:
    """A non-loopback gateway (`ajet serve --host 0.0.0.0`) is refused at start; say so before the model loads."""
    from ajet.core.gateway.app import is_loopback

    gateway = config.gateway
    if (
        gateway.http
        and not gateway.allow_remote
        and gateway.host != "localhost"
        and not is_loopback(gateway.host)
    ):
        raise ConfigError(
            f"gateway.host: {gateway.host!r} is not a loopback address, and keys and tokens travel in clear "
            "text; set gateway.allow_remote: true to serve on it (a network you trust), or use 127.0.0.1"
        )


def _check_vllm_launch(config: AjetConfig) -> None:
    launch = config.engine.launch
    if launch is None:
        return
    program = launch.python or (launch.command[0] if launch.command else "")
    field = "engine.launch.python" if launch.python else "engine.launch.command"
    if shutil.which(program) is None and not Path(program).is_file():
        raise ConfigError(
            f"{field}: {program} not found; give the python of an environment with vLLM installed "
            "(bash scripts/setup-vllm-cpu.sh .venv-vllm builds one on CPU)"
        )


def source_error(split: str, exc: TaskSourceError) -> ConfigError:
    """A task-source problem as a config error naming the setting: `data.train.path: ...`."""
    field = f"data.{split}.{exc.field}" if exc.field else f"data.{split}"
    return ConfigError(f"{field}: {exc}")


def check_framework(name: str | None, registry: PluginRegistry) -> None:
    """`framework:` names an installed adapter whose framework is importable (None: not set, nothing to check)."""
    if name is None:
        return
    if name not in registry.adapters:
        found = ", ".join(sorted(registry.adapters)) or "none"
        failed = "; ".join(failure.describe() for failure in registry.load_failures)
        raise ConfigError(
            f"framework: no adapter named {name!r}{did_you_mean(name, registry.adapters)}; installed adapters: "
            f"{found}. A framework ajet does not ship needs its plugin package installed"
            + (f" (plugins that failed to load: {failed})" if failed else "")
        )
    adapter = registry.adapters[name].value
    missing = adapter.missing_modules()
    if missing:
        raise ConfigError(
            f"framework: {name!r} needs {', '.join(missing)}, which is not installed here: "
            f"{adapter.install_hint()}"
        )


def check_device(device: str) -> None:
    """`model.device` is a device torch knows and this machine has."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"model.device: {device!r} is not a device; write 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if parsed.type != "cuda":
        return
    if not torch.cuda.is_available():
        raise ConfigError(
            f"model.device: {device!r}, but torch {torch.__version__} sees no CUDA GPU here; write device: cpu "
            "(or install a CUDA build of torch on a machine with a GPU)"
        )
    count = torch.cuda.device_count()
    if parsed.index is not None and parsed.index >= count:
        raise ConfigError(
            f"model.device: {device!r}, but this machine has {count} CUDA GPU(s): write cuda:0 to cuda:{count - 1}"
        )


def _check_judger(config: AjetConfig, registry: PluginRegistry) -> None:
    if config.judger is None:
        return
    path = config.judger.path
    if ":" not in path and path not in registry.judgers:
        known = ", ".join(sorted(registry.judgers)) or "none"
        raise ConfigError(
            f"judger.path: no judger named {path!r}{did_you_mean(path, registry.judgers)}; write one of: "
            f"{known}, or your own 'module:fn' / 'file.py:fn'"
        )
    load_judge(config, registry)  # imports it and builds it with judger.args; ConfigError naming the field


def _check_demonstrations(config: AjetConfig) -> None:
    train = config.train
    if train.algorithm != "sft":
        return
    if not train.demonstrations:
        raise ConfigError(
            "train.demonstrations: train.algorithm 'sft' needs a JSONL file of trajectories to imitate "
            "(write one with ajet debug --out FILE)"
        )
    path = resolve_path(train.demonstrations, config.base_dir)
    if not path.is_file():
        raise ConfigError(
            f"train.demonstrations: {path} not found (paths are relative to {config.base_dir}); write the "
            "trajectories with ajet debug --out FILE"
        )


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_store(store: str | None) -> None:
    """`store:` is 'memory', empty (the default file in the run directory) or a SQLite file path that can be
    one: not a directory, not some other file."""
    if store is None or store in ("memory", ":memory:"):
        return
    fix = "write a SQLite file path (e.g. runs/my-run/ajet.sqlite), 'memory', or leave it out for the default"
    if not store.strip():
        raise ConfigError(f"store: empty; {fix}")
    path = Path(store).expanduser()
    if path.is_dir():
        raise ConfigError(f"store: {path} is a directory; {fix}")
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as handle:
            if handle.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                raise ConfigError(f"store: {path} exists and is not a SQLite database; {fix}")
