"""The training loop, `ajet train`: tasks -> rollouts (group size n) -> rewards -> samples -> updates -> metrics.

    for step in 1..steps:
        tasks     = cursor.take(train_tasks, tasks_per_step)
        episodes  = rollouts(tasks)                      # every call recorded token-for-token by the gateway
        samples   = build_samples(episodes + calls)      # merged timelines, loss masks, behaviour log-probs
        advantages per (task, target_tag) group, broadcast to samples
        for epoch in ppo_epochs: for mini-batch: one optimizer step
        weight_sync.push(policy, version=step)           # the next rollouts use the new weights
        validate / checkpoint every k steps

Rollouts run as whole groups through a `RolloutPipeline`. With `rollout.max_staleness: s > 0` the rollouts of
the next steps run while this one trains (the update runs off the event loop), samples up to s versions old
are trained with the off-policy correction of `ajet.trainer.off_policy`; s = 0 is the loop above exactly. See
docs/async-training.md.

With N ranks (`ajet train --nproc N`, see `ajet.trainer.distributed`) the same loop runs in every process:
rank 0 (`master_process`) owns the runtime (gateway, engine, store), runs the rollouts, builds the samples and
broadcasts them; every rank trains its share of each mini-batch in `update()`; rank 0 pushes the weights, logs,
validates and writes the checkpoint files, which every rank takes part in.

The trainer reads recorded episodes through the store; it never imports an adapter.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ajet.core.config import AjetConfig, ConfigError, TrainConfig
from ajet.core.gateway.render import ChatRenderer
from ajet.core.models import load_model
from ajet.core.plugins import PluginError, PluginRegistry, load_registry
from ajet.core.precision import autocast_dtype
from ajet.core.rollout import RolloutExecutor, RolloutSettings
from ajet.core.runtime import Runtime
from ajet.core.store.base import close_unfinished
from ajet.core.store.records import RunStatus
from ajet.core.tasks import load_tasks, resolve_path
from ajet.core.types import Episode, EpisodeStatus, LabeledTask, Phase
from ajet.core.workflow import Workflow
from ajet.trainer.algorithms.registry import (
    UnknownAlgorithmError,
    get_advantage_estimator,
    get_aggregation_denominator,
    get_kl_estimator,
    get_policy_loss,
    install_plugin_algorithms,
)
from ajet.trainer.checkpoint import Checkpoint, restore_rng, save_checkpoint
from ajet.trainer.data import TaskCursor
from ajet.trainer.demonstrations import load_demonstrations
from ajet.trainer.distributed import Ranks, full_state_dict, is_sharded
from ajet.trainer.engine import LossSettings, OptimizerSettings, TrainingEngine
from ajet.trainer.metrics import MetricsLogger
from ajet.trainer.off_policy import correct_stale_samples
from ajet.trainer.policy import frozen_copy, prepare_policy
from ajet.trainer.rollout_pipeline import RolloutPipeline
from ajet.trainer.run_record import close_run_record, mismatch_records, open_run_record, sample_records
from ajet.trainer.samples import Sample, assign_advantages, build_samples, compute_episode_advantages
from ajet.trainer.weight_sync import WeightSync
from ajet.trainer.weight_sync.verify import check_served_policy, default_tolerance


@dataclass
class TrainResult:
    steps: int
    final_step: int
    history: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)


def episode_metrics(episodes: list[Episode], prefix: str) -> dict[str, float]:
    rewards = [e.reward for e in episodes if e.status == EpisodeStatus.OK and e.reward is not None]
    successes = [e.is_success for e in episodes if e.status == EpisodeStatus.OK and e.is_success is not None]
    counts = {status: sum(e.status == status for e in episodes) for status in EpisodeStatus}
    out = {
        f"{prefix}/episodes": float(len(episodes)),
        f"{prefix}/failed": float(counts[EpisodeStatus.FAILED]),
        f"{prefix}/timed_out": float(counts[EpisodeStatus.TIMED_OUT]),
        # episodes rerun because their worker was lost (the lost attempts stay in the store, untrained)
        f"{prefix}/retried": float(sum(e.retry_of is not None for e in episodes)),
    }
    if rewards:
        out[f"{prefix}/reward_mean"] = sum(rewards) / len(rewards)
    if successes:
        out[f"{prefix}/success_rate"] = sum(successes) / len(successes)
    return out


class Trainer:
    """The training loop. `runtime` is rank 0's (None on the other ranks, which only train)."""

    def __init__(
        self,
        config: AjetConfig,
        runtime: Runtime | None,
        make_workflow: Callable[[], Workflow],
        *,
        resume: Checkpoint | None = None,
        console: Console | None = None,
        ranks: Ranks | None = None,
        registry: PluginRegistry | None = None,
    ) -> None:
        self.ranks = ranks or Ranks(device=torch.device(config.model.device))
        self.master_process = self.ranks.master_process
        if self.master_process and (runtime is None or runtime.engine is None):
            raise ValueError(
                f"engine.kind {config.engine.kind!r} serves a model ajet cannot update; to train, use engine.kind "
                "transformers (in-process) or vllm (a vLLM server)"
            )
        self.config = config
        self.runtime = runtime
        self.make_workflow = make_workflow
        self.console = console or Console(quiet=not self.master_process)
        self.train = config.train
        self.engine = runtime.engine if runtime is not None else None
        self.run_dir = runtime.run_dir if runtime is not None else config.resolved_run_dir()
        self.resume = resume
        if resume is not None:
            resume.check_world_size(self.ranks.world_size)
        registry = registry or (runtime.registry if runtime is not None else load_registry())
        install_plugin_algorithms({k: r.value for k, r in registry.algorithms.items()})
        check_algorithm_names(config.train)
        sharded = self.ranks.world_size > 1 and self.train.distributed.strategy == "fsdp"
        self.max_staleness = config.rollout.max_staleness
        self.pipeline: RolloutPipeline | None = None

        # The trainer owns its policy. An in-process engine generates with that very module (nothing to copy);
        # any other engine gets the weights pushed after each update (self.weight_sync). FSDP shards the
        # policy over the ranks, so an in-process engine then keeps its own full copy, and pushes copy into it.
        # So does asynchronous training (max_staleness > 0): episodes generate while the policy trains, and
        # must not see its weights mid-update; the push copies them in once the engine's running rows drain.
        own_copy = sharded or self.max_staleness > 0
        model = self.engine.shared_module() if self.engine is not None and not own_copy else None
        if model is None:
            with self.console.status(f"loading the policy {config.model.path} ..."):
                model, tokenizer = load_model(
                    config.model.path, dtype=config.model.dtype, device=self.ranks.device
                )
        self.tokenizer = self.engine.tokenizer if self.engine is not None else tokenizer
        self.policy = prepare_policy(model, self.train.lora, resume.model_dir if resume else None)
        # With FSDP, rank 0 keeps an unsharded CPU copy of the policy: the gathered weights are loaded into it for
        # each push and checkpoint, so weight syncs and save_pretrained see a plain (or peft) module.
        self.full_policy = copy.deepcopy(self.policy).cpu() if sharded and self.master_process else None

        self.val_tasks: list[LabeledTask] = []
        self.train_tasks: list[LabeledTask] = []
        self.demonstrations: list[Sample] = []
        if self.master_process:
            if config.data.val is not None:
                self.val_tasks = self._load_split("val")[: self.train.val_tasks or None]
            if self.train.algorithm == "sft":
                self.demonstrations = self._demonstration_samples()
                self.cursor = TaskCursor(len(self.demonstrations), seed=config.seed)
            else:
                self.train_tasks = self._load_split("train")
                self.cursor = TaskCursor(len(self.train_tasks), seed=config.seed)
            sync_name = config.engine.weight_sync
            if sync_name == "auto":
                sync_name = self.engine.default_weight_sync(self.train.lora.enabled)
            try:
                factory = registry.weight_sync_factory(sync_name)
            except PluginError as exc:
                raise ConfigError(str(exc)) from None
            self.weight_sync: WeightSync = factory(self.engine, config)
        reference = None
        if self.train.kl_coef > 0 and not self.train.lora.enabled:
            reference = frozen_copy(model)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.training = TrainingEngine(
            self.policy,
            pad_id=pad_id,
            optimizer=OptimizerSettings(
                lr=self.train.lr,
                weight_decay=self.train.weight_decay,
                warmup_steps=self.train.warmup_steps,
                total_steps=self.train.steps * self.train.ppo_epochs * self.train.mini_batches,
                schedule=self.train.schedule,
                min_lr_ratio=self.train.min_lr_ratio,
                grad_clip=self.train.grad_clip,
            ),
            micro_batch_tokens=self.train.micro_batch_tokens,
            gradient_checkpointing=self.train.gradient_checkpointing,
            share_prefixes=self.train.share_prompts,
            reference_model=reference,
            # the engine's own autocast, so recomputed log-probs match the recorded ones
            autocast_to=getattr(self.engine, "autocast_dtype", autocast_dtype(config.model.autocast)),
            ranks=self.ranks,
            strategy=self.train.distributed.strategy,
        )
        self.loss = LossSettings(
            policy_loss="nll" if self.train.algorithm == "sft" else self.train.policy_loss,
            loss_options=dict(self.train.loss_options),
            aggregation=self.train.aggregation,
            kl_coef=self.train.kl_coef,
            kl_estimator=self.train.kl_estimator,
            episode_weighting=self.train.episode_weighting,
        )
        self.step = 0
        if resume is not None:
            self.training.load_state_dict(resume.state["engine"])
            resume.load_optimizer(self.training.model, self.training.optimizer)
            if self.master_process:
                self.cursor.load_state_dict(resume.state["cursor"])
            self.step = resume.step

    def _demonstration_samples(self) -> list[Sample]:
        if not self.train.demonstrations:
            raise ValueError("train.algorithm 'sft' needs train.demonstrations: a JSONL file of trajectories")
        path = resolve_path(self.train.demonstrations, self.config.base_dir)
        samples, stats = build_samples(load_demonstrations(path, ChatRenderer(self.tokenizer)))
        self.console.print(
            f"{len(samples)} demonstration samples from {stats.calls_used} turns ({stats.merges} merged turns)"
        )
        return samples

    def _load_split(self, split: str) -> list[LabeledTask]:
        spec = getattr(self.config.data, split)
        if spec is None:
            raise ValueError(
                f"data.{split}: training needs a task source, e.g. data: {{{split}: {{path: ...}}}}"
            )
        return load_tasks(spec, self.config.base_dir)

    # -- rollouts ----------------------------------------------------------------------------------------------

    def _executor(
        self,
        group_size: int,
        seed: int,
        *,
        phase: Phase,
        step: int,
        sampling: dict[str, Any] | None = None,
    ) -> RolloutExecutor:
        rollout = self.config.rollout
        settings = RolloutSettings(
            group_size=group_size,
            max_concurrency=rollout.max_concurrency,
            episode_timeout_s=rollout.episode_timeout_s,
            trainable_targets=self.config.trainable_targets,
            seed=seed,
            sampling=sampling,
            phase=phase,
            step=step,
        )
        return RolloutExecutor(self.runtime, self.make_workflow, settings)

    async def validate(self, step: int) -> dict[str, float]:
        if not self.val_tasks:
            return {}
        executor = self._executor(
            1,
            seed=self.config.seed * 7919 + 1_000_000 + step,
            phase="val",
            step=step,
            sampling={"temperature": self.train.val_temperature},
        )
        episodes = await executor.run(self.val_tasks)
        return episode_metrics(episodes, "val")

    # -- the loop ----------------------------------------------------------------------------------------------

    async def run(self) -> TrainResult:
        master_process = self.master_process
        result = TrainResult(steps=self.train.steps, final_step=self.step)
        logger = (
            MetricsLogger(
                self.run_dir,
                tensorboard=self.train.logging.tensorboard,
                wandb=self.train.logging.wandb,
                wandb_project=self.train.logging.wandb_project,
                run_name=self.config.name,
                config=self.config.model_dump(mode="json"),
            )
            if master_process
            else None
        )
        if master_process:
            await self.weight_sync.start(self.full_policy or self.policy)
            open_run_record(
                self.runtime.store, self.runtime.run_id, self.config, str(self.run_dir), self.step
            )
        started = time.perf_counter()
        outcome: tuple[RunStatus, str | None] = ("failed", "the run stopped without saying why")
        try:
            if self.resume is not None:
                restore_rng(self.resume.rng(self.ranks.rank), self.ranks.device)  # each rank its own
                await self.push_weights()  # the engine serves the resumed weights, as version `step`
            elif master_process:
                # version 0: the engine serves model.path as loaded (with FSDP: the copy made before sharding)
                await self.verify_served(self.full_policy or self.policy)
            if master_process and self.step == 0:
                validation = await self.validate(0)
                if validation:
                    logger.log(0, validation)
                    result.validation.append({"step": 0, **validation})
            if master_process and self.train.algorithm != "sft":
                self.pipeline = self._pipeline()
                self.pipeline.open(completed=self.step)  # the first steps' rollouts start now
            with self._progress() as progress:
                bar = progress.add_task("train", total=self.train.steps, completed=self.step, summary="")
                while True:
                    # rank 0 decides when to stop (train.steps, train.max_time_s) and tells the other ranks
                    stop = self.ranks.broadcast_object(self._should_stop(started) if master_process else None)
                    if stop:
                        break
                    self.step += 1
                    metrics = await self.train_step(self.step)  # every rank: update, push
                    if master_process:
                        if self.train.val_every and self.step % self.train.val_every == 0:
                            metrics.update(await self.validate(self.step))
                        logger.log(self.step, metrics)
                        result.history.append({"step": self.step, **metrics})
                        self.runtime.store.update_run(self.runtime.run_id, step=self.step)
                    if self.train.checkpoint_every and self.step % self.train.checkpoint_every == 0:
                        self.save()  # every rank writes its part
                    if self.pipeline is not None:
                        self.pipeline.mark_completed(self.step)  # admits the rollouts this step held back
                    progress.update(bar, completed=self.step, summary=_summary(metrics))
            if master_process:
                if not (self.train.val_every and self.step % self.train.val_every == 0):
                    validation = await self.validate(self.step)
                    if validation:
                        logger.log(self.step, validation)
                else:
                    validation = {k: v for k, v in result.history[-1].items() if k.startswith("val/")}
                if validation:
                    result.validation.append({"step": self.step, **validation})
            if not (self.train.checkpoint_every and self.step % self.train.checkpoint_every == 0):
                self.save()
            outcome = ("finished", None)
        except (KeyboardInterrupt, asyncio.CancelledError):
            outcome = ("stopped", "interrupted")
            raise
        except BaseException as exc:
            outcome = ("failed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if self.pipeline is not None:
                await self.pipeline.aclose()  # rollouts drawn ahead for steps this run will not train
                self.pipeline = None
                close_unfinished(
                    self.runtime.store,
                    "cancelled: the run ended before the step this episode was rolled out for",
                    self.runtime.run_id,
                )
            if master_process:
                close_run_record(self.runtime.store, self.runtime.run_id, self.step, *outcome)
                logger.close()
                await self.weight_sync.aclose()
        result.final_step = self.step
        return result

    def _should_stop(self, started: float) -> bool:
        if self.step >= self.train.steps:
            return True
        if self.train.max_time_s is not None and time.perf_counter() - started > self.train.max_time_s:
            self.console.print(f"stopping: train.max_time_s ({self.train.max_time_s:g} s) reached")
            return True
        return False

    async def train_step(self, step: int) -> dict[str, float]:
        """One step on every rank: rank 0 collects the samples and broadcasts them, all ranks update."""
        samples, metrics = await self.collect(step) if self.master_process else ([], {})
        samples = self.ranks.broadcast_object(samples)  # every rank: this step's samples (rank 0's list)
        if samples:
            if self.max_staleness > 0:
                # off the event loop: the next steps' episodes keep running on it while this step trains
                metrics.update(await asyncio.to_thread(self.update, samples, step))
            else:
                metrics.update(self.update(samples, step))
            metrics.update(await self.push_weights())
        return metrics

    async def collect(self, step: int) -> tuple[list[Sample], dict[str, float]]:
        """Rank 0: this step's samples (rollouts, samples, advantages) and their metrics."""
        if self.train.algorithm == "sft":
            return self.cursor.take(self.demonstrations, self.train.tasks_per_step), {}
        if self.pipeline is None:  # train_step called outside run(): rollouts from this step on
            self.pipeline = self._pipeline()
            self.pipeline.open(completed=step - 1)
        episodes, ran, pipeline_metrics = await self.pipeline.collect(step)
        # An engine that died (a vLLM server that exited) failed this step's episodes: stop here rather than
        # train on them; the run resumes from its last checkpoint.
        self.engine.check_health()
        pairs = [(e, self.runtime.store.calls(e.episode_id)) for e in episodes]
        samples, stats = build_samples(pairs)
        metrics = episode_metrics(ran, "rollout")  # every episode the step ran, dropped groups too
        metrics.update({k: float(v) for k, v in stats.as_metrics().items()})
        metrics.update(pipeline_metrics)
        generated = sum(len(c.completion_ids or []) for _, calls in pairs for c in calls)
        rollout_s = metrics["rollout/time_s"]
        metrics["rollout/tokens_per_s"] = generated / rollout_s if rollout_s > 0 else 0.0
        if self.train.algorithm == "grpo":
            advantages, advantage_metrics = compute_episode_advantages(
                episodes, self.train.advantage_estimator, samples
            )
            assign_advantages(samples, advantages)
            metrics.update(advantage_metrics)
            if self.train.skip_zero_advantage and self.train.kl_coef == 0:
                samples = [s for s in samples if s.advantage != 0.0]
        metrics["samples/trained"] = float(len(samples))
        # the record `ajet view` shows: which tokens each sample trained, with which advantage; where merges broke
        store, run_id = self.runtime.store, self.runtime.run_id
        store.add_samples(sample_records(samples, run_id, step))
        store.add_mismatches(mismatch_records(stats.mismatch_examples, run_id, step))
        return samples, metrics

    def _pipeline(self) -> RolloutPipeline:
        return RolloutPipeline(
            make_executor=lambda step: self._executor(
                self.config.rollout.group_size, seed=self.config.seed * 7919 + step, phase="train", step=step
            ),
            cursor=self.cursor,
            tasks=self.train_tasks,
            tasks_per_step=self.train.tasks_per_step,
            group_size=self.config.rollout.group_size,
            max_staleness=self.max_staleness,
            last_step=self.train.steps,
            drop_constant_groups=self.train.drop_constant_groups,
            console=self.console,
        )

    def gathered_policy(self) -> torch.nn.Module:
        """The policy with its full weights, on rank 0: the policy itself (one rank, DDP), or with FSDP the
        full copy after the shards were gathered into it (a collective: every rank calls this)."""
        if self.full_policy is None and not (self.ranks.world_size > 1 and is_sharded(self.policy)):
            return self.policy
        weights = full_state_dict(self.policy)  # [full tensors on rank 0's CPU; empty elsewhere]
        if self.full_policy is not None:
            self.full_policy.load_state_dict(weights)
            return self.full_policy
        return self.policy

    async def push_weights(self) -> dict[str, float]:
        """Serve the policy as version `self.step` (the number of updates it has had), and check that the engine
        now serves exactly it (see `weight_sync.verify`). Every rank calls this; rank 0 pushes."""
        if self.max_staleness > 0:
            policy = await asyncio.to_thread(self.gathered_policy)  # FSDP's gather, off the event loop
        else:
            policy = self.gathered_policy()
        if not self.master_process:
            return {}
        metrics = await self.weight_sync.push(policy, self.step)
        metrics.update(await self.verify_served(policy))
        return metrics

    async def verify_served(self, policy: torch.nn.Module) -> dict[str, float]:
        engine = self.config.engine
        if not engine.verify_pushes or self.engine.shared_module() is not None:
            return {}  # an in-process engine generates with the policy module itself, or a copy pushed in
        tolerance = engine.verify_tolerance or default_tolerance(
            self.config.model.dtype, self.config.model.autocast
        )
        diff = await check_served_policy(self.engine, policy, self.step, tolerance, self.training.autocast_to)
        return {"weight_sync/verify_max_diff": diff}

    def update(self, samples: list[Sample], step: int) -> dict[str, float]:
        """ppo_epochs passes over the samples, each split into mini_batches optimizer steps (every rank).
        With max_staleness > 0, samples older than the policy (version step - 1) are corrected first."""
        metrics: dict[str, float] = {}
        if self.max_staleness > 0 and self.train.algorithm != "sft":
            samples, metrics = correct_stale_samples(
                self.training, samples, policy_version=step - 1, cap=self.train.off_policy_is_cap
            )
        metrics.update(
            ppo_updates(
                self.training,
                samples,
                self.loss,
                ppo_epochs=self.train.ppo_epochs,
                mini_batches=self.train.mini_batches,
                seed=self.config.seed * 31 + step,
            )
        )
        return metrics

    def save(self) -> Path:
        """Checkpoint `self.step` (every rank: FSDP gathers the weights, each rank saves its optimizer shard)."""
        policy = self.gathered_policy()
        state = {
            "engine": self.training.state_dict(),
            # with rollouts drawn ahead, the cursor before the first of them: a resume draws them again
            "cursor": self._cursor_state() if self.master_process else None,
        }
        return save_checkpoint(
            self.run_dir,
            self.step,
            policy,
            self.tokenizer,
            state,
            keep=self.train.keep_checkpoints,
            training=self.training,
            ranks=self.ranks,
        )

    def _cursor_state(self) -> dict[str, int]:
        return self.pipeline.cursor_state() if self.pipeline is not None else self.cursor.state_dict()

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[summary]}"),
            TimeElapsedColumn(),
            console=self.console,
        )


def ppo_updates(
    training: TrainingEngine,
    samples: list[Sample],
    loss: LossSettings,
    *,
    ppo_epochs: int,
    mini_batches: int,
    seed: int,
) -> dict[str, float]:
    """`ppo_epochs` passes over `samples`, each shuffled and split into `mini_batches` optimizer steps; every
    rank computes the same split (same seed) and `train_step` trains its own share of each mini-batch.
    Returns each metric's mean over the optimizer steps, as train/<name>."""
    rng = random.Random(seed)
    totals: dict[str, float] = {}
    count = 0
    for _ in range(ppo_epochs):
        order = list(range(len(samples)))
        rng.shuffle(order)
        chunks = [order[i::mini_batches] for i in range(mini_batches)]
        for chunk in chunks:
            if not chunk:
                continue
            metrics = training.train_step([samples[i] for i in chunk], loss)
            for name, value in metrics.items():
                totals[name] = totals.get(name, 0.0) + value
            count += 1
    return {f"train/{name}": value / max(1, count) for name, value in totals.items()}


def _summary(metrics: dict[str, float]) -> str:
    parts = []
    for key, label, fmt in (
        ("rollout/reward_mean", "reward", "{:.3f}"),
        ("rollout/success_rate", "success", "{:.0%}"),
        ("val/success_rate", "val", "{:.0%}"),
        ("rollout/tokens_per_s", "gen tok/s", "{:.0f}"),
        ("train/train_tokens_per_s", "train tok/s", "{:.0f}"),
    ):
        if key in metrics:
            parts.append(f"{label} {fmt.format(metrics[key])}")
    return "  ".join(parts)


def check_algorithm_names(train: TrainConfig) -> None:
    """Every algorithm the config names, built-in or a plugin's, resolves now, before any rollout: a typo or an
    aggregation without its denominator is a config error naming the field, not a crash at the first step."""
    lookups = [
        ("train.advantage_estimator", get_advantage_estimator, train.advantage_estimator),
        (
            "train.aggregation",
            get_aggregation_denominator,
            train.aggregation,
        ),  # the aggregation and its denominator
        ("train.kl_estimator", get_kl_estimator, train.kl_estimator),
    ]
    if train.algorithm != "sft":
        lookups.append(("train.policy_loss", get_policy_loss, train.policy_loss))
    for field_name, lookup, name in lookups:
        try:
            lookup(name)
        except UnknownAlgorithmError as exc:
            raise ConfigError(f"{field_name}: {exc}") from None
