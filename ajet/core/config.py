"""The run configuration: YAML validated by pydantic (`extra="forbid"`).

Every field has a description that says what to write; `load_config` turns pydantic's errors into messages that
name the field (`rollout.group_size`), say what was wrong, and say what to write instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ajet.core.targets import check_targets_not_empty
from ajet.core.tasks import TaskSourceSpec, expand_source_shorthand
from ajet.core.types import SamplingParams


class ConfigError(ValueError):
    """A configuration problem, with a message meant for the person who wrote the YAML."""


def _path_shorthand(value: Any) -> Any:
    return {"path": value} if isinstance(value, str) else value


# Sections a user may write as one string (`workflow: flow.py:Flow`, `data.train: train.jsonl`): the validators
# expand them, and so does `--set workflow.args.x=1` before it sets a key inside one.
_SHORTHANDS: dict[tuple[str, ...], Callable[[Any], Any]] = {
    ("workflow",): _path_shorthand,
    ("model",): _path_shorthand,
    ("judger",): _path_shorthand,
    ("data", "train"): expand_source_shorthand,
    ("data", "val"): expand_source_shorthand,
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkflowConfig(_Section):
    path: str = Field(
        description="the workflow class, as 'package.module:MyWorkflow' or 'workflow.py:MyWorkflow'"
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments for the workflow class (its pydantic fields)"
    )


class ModelConfig(_Section):
    path: str = Field(
        "smollm2-135m-instruct",
        description="a Hugging Face model directory, a hub id, a .gguf file, or 'smollm2-135m-instruct'",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="float32, bfloat16 or float16"
    )
    autocast: Literal["none", "bfloat16", "float16"] = Field(
        "none",
        description="matmuls in this dtype under torch.autocast, weights and optimizer in `dtype`: 'bfloat16' is "
        "about 2x faster on GPUs and on CPUs with AVX512-BF16/AMX; the importance ratio then varies by ~1e-2",
    )
    device: str = Field("cpu", description="'cpu', 'cuda' or 'cuda:N'")
    served_name: str = Field("ajet-policy", description="the model name the gateway reports in /v1/models")


class VllmLaunchConfig(_Section):
    """How ajet starts a vLLM server itself (`engine: {kind: vllm, launch: {...}}`)."""

    python: str | None = Field(
        None,
        description="the python of the environment vLLM is installed in, e.g. .venv-vllm/bin/python (see "
        "scripts/setup-vllm-cpu.sh); runs `python -m vllm.entrypoints.openai.api_server`",
    )
    command: list[str] | None = Field(
        None,
        description="instead of python: the command that starts the server, e.g. [vllm, serve]; ajet appends "
        "the model and its flags",
    )
    args: list[str] = Field(
        default_factory=list, description="extra server flags, e.g. ['--gpu-memory-utilization', '0.5']"
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="extra environment variables for the server, e.g. {VLLM_CPU_KVCACHE_SPACE: '2'}",
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="the loopback port; default: a free one picked at start"
    )
    max_model_len: int = Field(4096, ge=64, description="the server's context length in tokens, e.g. 4096")
    enforce_eager: bool | None = Field(
        None,
        description="no torch.compile/CUDA graphs (a CPU server starts in about a minute instead of several); "
        "default: true when model.device is cpu",
    )
    startup_timeout_s: float = Field(
        900.0, gt=0, description="seconds to wait for the server's /health before giving up, e.g. 900"
    )
    max_lora_rank: int | None = Field(
        None, ge=1, description="--max-lora-rank for LoRA training; default: train.lora.r"
    )

    @model_validator(mode="after")
    def _python_or_command(self) -> VllmLaunchConfig:
        if self.python and self.command:
            raise ValueError("give launch.python or launch.command, not both")
        if not self.python and not self.command:
            raise ValueError(
                "launch needs python: the python of the environment vLLM is installed in, e.g. "
                "launch: {python: .venv-vllm/bin/python} (bash scripts/setup-vllm-cpu.sh .venv-vllm builds one)"
            )
        return self


class EngineConfig(_Section):
    kind: str = Field(
        "transformers",
        description="'transformers' (in-process, trainable), 'vllm' (a vLLM server, trainable: weights are "
        "pushed to it), 'openai' (any OpenAI-compatible endpoint, debugging only), or an engine a plugin registers",
    )
    max_batch_size: int = Field(32, ge=1, description="most requests decoded together, e.g. 32")
    batch_wait_ms: float = Field(
        2.0, ge=0, description="how long to wait for more requests before a batch, e.g. 2"
    )
    base_url: str | None = Field(
        None,
        description="for kind 'openai': the endpoint, e.g. http://127.0.0.1:8000/v1; for kind 'vllm': a server "
        "you started, e.g. http://127.0.0.1:8000 (or use launch)",
    )
    api_key: str | None = Field(None, description="for kind 'openai': the API key (or use api_key_env)")
    api_key_env: str | None = Field(
        None, description="for kind 'openai': environment variable holding the key"
    )
    remote_model: str | None = Field(
        None,
        description="for kind 'openai': the model name to ask the endpoint for; for kind 'vllm' with base_url: "
        "the name the server serves (default: the only one it lists)",
    )
    launch: VllmLaunchConfig | None = Field(
        None,
        description="for kind 'vllm': ajet starts the server itself, e.g. {python: .venv-vllm/bin/python}",
    )
    weight_sync: str = Field(
        "auto",
        description="how trained weights reach the engine: 'auto' (the engine's default), 'shared_module', "
        "'vllm_reload', 'vllm_lora', 'vllm_nccl', or a method a plugin registers",
    )
    request_timeout_s: float = Field(
        600.0, gt=0, description="for kind 'vllm': seconds one completion may take on the server"
    )
    verify_pushes: bool = Field(
        True,
        description="after each weight push to a separate engine (vllm), check with one short completion that "
        "it serves exactly the trainer's weights; a mismatch stops the run",
    )
    verify_tolerance: float | None = Field(
        None,
        gt=0,
        description="largest log-prob difference verify_pushes accepts; default 1e-3 in float32, 0.15 in bf16",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="options for an engine a plugin registers"
    )

    @model_validator(mode="after")
    def _endpoint_settings(self) -> EngineConfig:
        if self.kind == "openai":
            if not self.base_url:
                raise ValueError("kind 'openai' needs base_url, e.g. base_url: http://127.0.0.1:8000/v1")
            if not self.remote_model:
                raise ValueError("kind 'openai' needs remote_model, the model name the endpoint serves")
        if self.kind == "vllm":
            if bool(self.base_url) == (self.launch is not None):
                raise ValueError(
                    "kind 'vllm' needs either base_url (a server you run, e.g. http://127.0.0.1:8000) or launch "
                    "(ajet starts one, e.g. launch: {python: .venv-vllm/bin/python}), not both"
                )
        elif self.launch is not None:
            raise ValueError(f"launch is for kind 'vllm', not {self.kind!r}; remove it or write kind: vllm")
        return self


class RayRolloutConfig(_Section):
    """How the `ray` rollout backend starts its workers (`rollout: {backend: ray, ray: {...}}`)."""

    num_cpus: float = Field(
        0.0,
        ge=0,
        description="CPUs Ray reserves per worker: 0 for agents that mostly wait on the gateway and their "
        "tools, 1 or more for CPU-heavy tools (also how Ray spreads workers over nodes)",
    )
    runtime_env: dict[str, Any] = Field(
        default_factory=dict,
        description="Ray runtime_env for the workers, e.g. {working_dir: ., pip: [my-tools]} on a cluster "
        "whose nodes lack your workflow's files or packages",
    )
    init_timeout_s: float = Field(
        120.0, gt=0, description="seconds to wait for Ray and every worker to be up, e.g. 120"
    )
    hang_grace_s: float = Field(
        30.0,
        gt=0,
        description="seconds past rollout.episode_timeout_s after which a worker that has not answered is "
        "restarted (a tool that blocks its event loop keeps the worker from timing the episode out itself)",
    )


class RemoteRolloutConfig(_Section):
    """How `ajet serve` (`rollout.backend: remote`) hands episodes to clients over HTTP."""

    lease_s: float = Field(
        60.0,
        gt=0,
        description="seconds a claimed episode stays with a client that sends no heartbeat (clients send one "
        "every lease_s / 3); then it is recorded as timed out and offered again, e.g. 60",
    )
    max_reoffers: int = Field(
        2, ge=0, le=100, description="how many times an episode whose lease expired is offered again, e.g. 2"
    )
    token_env: str = Field(
        "AJET_SERVER_TOKEN",
        min_length=1,
        description="the environment variable holding the token clients claim episodes with; unset, the "
        "server makes one and writes it to <run_dir>/server.json",
    )


class RolloutConfig(_Section):
    group_size: int = Field(4, ge=1, le=1024, description="episodes per task (a GRPO group), e.g. 4")
    max_concurrency: int = Field(
        8, ge=1, le=4096, description="episodes running at once (over all workers), e.g. 8"
    )
    episode_timeout_s: float = Field(300.0, gt=0, description="seconds before a running episode is timed out")
    sampling: SamplingParams = Field(
        default_factory=SamplingParams,
        description="defaults for every LLM call: temperature, top_p, max_tokens, stop, seed",
    )
    backend: str = Field(
        "local",
        description="where episodes run: 'local' (asyncio tasks in this process), 'ray' (Ray actors) or "
        "'remote' (clients that claim them over HTTP: what `ajet serve` sets)",
    )
    workers: int = Field(2, ge=1, le=4096, description="for backend 'ray': how many worker actors, e.g. 4")
    address: str | None = Field(
        None,
        description="for backend 'ray': None starts a local Ray instance; 'auto' joins the cluster this "
        "machine belongs to; 'ray://HOST:10001' connects to a remote one",
    )
    ray: RayRolloutConfig = Field(default_factory=RayRolloutConfig)
    remote: RemoteRolloutConfig = Field(default_factory=RemoteRolloutConfig)
    max_staleness: int = Field(
        0,
        ge=0,
        le=64,
        description="asynchronous training: how many policy versions old a trained sample may be. 0 (the "
        "default) is synchronous: a step's rollouts start when the previous step has ended. 1 or 2 runs the "
        "next steps' rollouts while a step trains, with an off-policy correction (train.off_policy_is_cap)",
    )


class GatewayConfig(_Section):
    host: str = Field("127.0.0.1", description="loopback address for the HTTP gateway")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    http: bool = Field(True, description="also serve on loopback HTTP (for tuner.as_oai_baseurl_apikey())")
    allow_remote: bool = Field(
        False, description="set true to bind a non-loopback host (keys still required)"
    )
    advertise_url: str | None = Field(
        None,
        description="the gateway URL workers on other machines use, e.g. http://10.0.0.5:8000/v1 (default: "
        "the bound address, with this machine's IP for 0.0.0.0)",
    )
    max_request_bytes: int = Field(4_000_000, ge=1024, description="largest accepted request body, in bytes")
    tool_parser: str = Field(
        "hermes", description="how tool calls are parsed from completions: 'hermes', 'none'"
    )


_SOURCE_FORMS = (
    "a data file (train.jsonl), a local dataset directory, 'gen.py:make_tasks', or a mapping such as "
    "{kind: file, path: train.jsonl} (kinds: file, hf_dataset, generator)"
)


class DataConfig(_Section):
    train: TaskSourceSpec | None = Field(None, description=f"where training tasks come from: {_SOURCE_FORMS}")
    val: TaskSourceSpec | None = Field(None, description=f"held-out tasks for validation: {_SOURCE_FORMS}")

    @field_validator("train", "val", mode="before")
    @classmethod
    def _source_shorthand(cls, value: Any) -> Any:
        return expand_source_shorthand(value)


class LoraConfig(_Section):
    enabled: bool = Field(False, description="true to train LoRA adapters instead of every weight")
    r: int = Field(16, ge=1, description="LoRA rank, e.g. 16")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha, e.g. 32")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout, e.g. 0.0")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="module names to adapt, e.g. [q_proj, v_proj]",
    )


class LoggingConfig(_Section):
    tensorboard: bool = Field(True, description="write TensorBoard curves to <run_dir>/tensorboard")
    wandb: bool = Field(False, description="also log to Weights & Biases (when installed)")
    wandb_project: str = Field("ajet", description="the W&B project name")


class DistributedConfig(_Section):
    """Data-parallel training over N processes (`ajet train --nproc N`, or torchrun): see docs/distributed.md."""

    nproc: int = Field(
        1, ge=1, le=1024, description="training processes (ranks), e.g. 2; one per GPU (--nproc N sets it)"
    )
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="'ddp' (every rank holds the full model, gradients averaged) or 'fsdp' (FSDP2 "
        "fully_shard: parameters, gradients and optimizer state sharded over the ranks)",
    )
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="torch.distributed backend: 'auto' (nccl when model.device is cuda, else gloo)"
    )
    timeout_s: float = Field(
        7200.0,
        gt=0,
        description="seconds a rank waits in a collective before giving up, e.g. 7200; the other ranks wait "
        "in one while rank 0 runs a step's rollouts and validation, so keep it longer than those",
    )


class TrainConfig(_Section):
    algorithm: Literal["grpo", "sft"] = Field(
        "grpo", description="'grpo' (RL from rewards) or 'sft' (imitate)"
    )
    advantage_estimator: str = Field("grpo", description="grpo, dr_grpo, rloo or reinforce_pp_baseline")
    policy_loss: str = Field("ppo_clip", description="ppo_clip, gspo or pg")
    loss_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the policy loss, e.g. {clip_low: 0.2, clip_high: 0.28}"
    )
    aggregation: str = Field(
        "token_mean", description="token_mean, seq_mean_token_mean or seq_mean_token_sum"
    )
    kl_coef: float = Field(
        0.0, ge=0, description="weight of the KL penalty to the initial policy, e.g. 0.001"
    )
    kl_estimator: str = Field("k3", description="k1, k2 or k3")
    episode_weighting: bool = Field(True, description="weight samples so long episodes do not dominate")
    steps: int = Field(10, ge=1, description="optimizer rounds (each: rollouts, then updates), e.g. 20")
    tasks_per_step: int = Field(8, ge=1, description="tasks per step; each runs rollout.group_size episodes")
    ppo_epochs: int = Field(1, ge=1, description="passes over each step's samples, e.g. 1")
    mini_batches: int = Field(1, ge=1, description="optimizer steps per pass, e.g. 1")
    micro_batch_tokens: int = Field(4096, ge=64, description="padded tokens per forward pass, e.g. 4096")
    lr: float = Field(1e-5, gt=0, description="learning rate, e.g. 1e-5 (full) or 1e-4 (LoRA)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay, e.g. 0.0")
    warmup_steps: int = Field(0, ge=0, description="optimizer steps of linear warmup")
    schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="constant, linear, cosine"
    )
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="floor of linear/cosine decay, as a share of lr")
    grad_clip: float = Field(1.0, gt=0, description="max gradient norm, e.g. 1.0")
    gradient_checkpointing: bool = Field(False, description="trade compute for memory")
    share_prompts: bool = Field(
        True,
        description="compute a prompt once for the rows that share it (a GRPO group) in the training forward; "
        "the same result, fewer tokens. Off with gradient checkpointing, which turns the key/value cache off",
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    skip_zero_advantage: bool = Field(True, description="drop samples whose advantage is 0 (no gradient)")
    drop_constant_groups: bool = Field(
        False,
        description="DAPO's dynamic sampling: drop a group whose ok episodes all got the same reward and roll "
        "out another task in its place (at most 4 x tasks_per_step replacements a step), e.g. true",
    )
    off_policy_is_cap: float = Field(
        2.0,
        ge=1.0,
        description="with rollout.max_staleness > 0: the cap C of the truncated importance weight "
        "min(pi_now / pi_sampled, C) that each stale token's loss is multiplied by, e.g. 2.0",
    )
    val_every: int = Field(0, ge=0, description="validate every N steps (0: only at the start and end)")
    val_tasks: int | None = Field(
        None, ge=1, description="how many held-out tasks to validate on (all if empty)"
    )
    val_temperature: float = Field(0.0, ge=0, description="sampling temperature for validation (0: greedy)")
    checkpoint_every: int = Field(0, ge=0, description="checkpoint every N steps (0: only at the end)")
    keep_checkpoints: int = Field(2, ge=1, description="how many recent checkpoints to keep")
    max_time_s: float | None = Field(None, gt=0, description="stop after this many seconds of training")
    demonstrations: str | None = Field(
        None, description="for sft: a JSONL file of trajectories (ajet debug --out) to imitate"
    )
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


class JudgerConfig(_Section):
    path: str = Field(
        description="'exact_match', 'numeric_match', 'llm_judge', or your own 'module:fn' / 'file.py:fn'"
    )
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the judger")


class AjetConfig(_Section):
    name: str = Field("ajet-run", description="a name for the run; the run directory defaults to runs/<name>")
    workflow: WorkflowConfig | None = Field(
        None,
        description="the workflow class, as 'package.module:MyWorkflow' or 'workflow.py:MyWorkflow' "
        "(or a mapping with path and args); optional for `ajet serve`, whose episodes run in its clients",
    )
    framework: str | None = Field(None, description="default adapter for tuner.as_model(), e.g. openai_sdk")
    model: ModelConfig = Field(default_factory=ModelConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    judger: JudgerConfig | None = Field(
        None, description="scores episodes whose workflow returns reward=None"
    )
    trainable_targets: list[str] | None = Field(
        None,
        description="the agent tags to train, overriding the workflow's trainable_targets, e.g. [werewolf]",
    )
    run_dir: str | None = Field(None, description="where the store and outputs go; default runs/<name>")
    store: str | None = Field(
        None, description="'memory', a SQLite file path, or empty for <run_dir>/ajet.sqlite"
    )
    seed: int = Field(0, description="seed for task order and sampling")

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @field_validator("judger", "model", mode="before")
    @classmethod
    def _path_shorthands(cls, value: Any) -> Any:
        return _path_shorthand(value)

    @field_validator("trainable_targets")
    @classmethod
    def _targets_not_empty(cls, value: list[str] | None) -> list[str] | None:
        return check_targets_not_empty(value)

    @field_validator("workflow", mode="before")
    @classmethod
    def _workflow_shorthand(cls, value: Any) -> Any:
        return _path_shorthand(value)

    @model_validator(mode="after")
    def _backend_fits_the_device(self) -> AjetConfig:
        backend = self.train.distributed.backend
        if backend == "nccl" and not self.model.device.startswith("cuda"):
            raise ValueError(
                f"train.distributed.backend: nccl needs GPUs, and model.device is {self.model.device!r}; write "
                "backend: gloo (or auto), or model.device: cuda"
            )
        return self

    @property
    def base_dir(self) -> Path:
        """The config file's directory: relative paths in the config are resolved against it."""
        return self._base_dir

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name


def parse_config(data: dict[str, Any], *, base_dir: Path | None = None, source: str = "config") -> AjetConfig:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of settings at the top level, got {type(data).__name__}"
        )
    try:
        config = AjetConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    config._base_dir = (base_dir or Path.cwd()).resolve()
    return config


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> AjetConfig:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{path} is a directory; give the config file in it, e.g. -c {path / 'config.yaml'}"
        )
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (relative to the working directory {Path.cwd()})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte {exc.start}); save the config as UTF-8 YAML"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    if data is None:
        raise ConfigError(f"{path} is empty; a config needs at least `workflow: workflow.py:MyWorkflow`")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of settings at the top level (`workflow: ...`, `model: ...`), got "
            f"{type(data).__name__}"
        )
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    return parse_config(data, base_dir=path.parent, source=str(path))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """pyyaml's several-line message as one line: where, what, and for tabs, the fix."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc).replace("\n", " ")
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
    context = f" ({exc.context})" if exc.context else ""
    hint = "; indent with spaces, YAML does not allow tabs" if "\\t" in (exc.problem or "") else ""
    return f"{where}{exc.problem}{context}{hint}"


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    if not all(key.strip() for key in keys):
        raise ConfigError(f"--set {dotted}: empty field name; write it as section.key, e.g. train.steps")
    for depth, key in enumerate(keys[:-1]):
        where = tuple(keys[: depth + 1])
        child = data.setdefault(key, {})
        if where in _SHORTHANDS and not isinstance(child, dict):
            # `workflow: flow.py:Flow` with `--set workflow.args.x=1`: expand the shorthand, then set inside it.
            child = data[key] = _SHORTHANDS[where](child)
        if not isinstance(child, dict):
            raise ConfigError(
                f"cannot set {dotted}: {'.'.join(where)} is {child!r}, not a section. Write it as a mapping in "
                f"the config (e.g. `workflow: {{path: ..., args: {{...}}}}`) or set {'.'.join(where)} as a whole"
            )
        data = child
    data[keys[-1]] = value


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s) in the configuration:"]
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"])
        lines.append(f"  - {location or '(top level)'}: {_explain(error)}")
    return "\n".join(lines)


def _explain(error: Any) -> str:
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return f"unknown setting.{hint} Allowed here: {', '.join(allowed)}."
    field = _field_at(loc)
    what = f" Write {field.description}." if field is not None and field.description else ""
    got = f" (you wrote {error['input']!r})" if kind != "missing" and "input" in error else ""
    if kind == "missing":
        return f"required setting is missing.{what}"
    return f"{error['msg']}{got}.{what}"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = AjetConfig
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def _field_at(loc: tuple[Any, ...]) -> Any:
    if not loc:
        return None
    parent = _model_at(loc[:-1])
    if parent is None or not isinstance(loc[-1], str):
        return None
    return parent.model_fields.get(loc[-1])
