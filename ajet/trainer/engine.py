"""The training engine: forward passes for token log-probs, and one optimizer step over a mini-batch of samples
(micro-batched by token budget, gradients accumulated, clipped, AdamW, warmup + schedule).

It knows nothing of rollouts or adapters: it takes `Sample`s and the names of registered loss functions.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ajet.core.precision import autocast
from ajet.trainer.algorithms import aggregation as aggregation_module
from ajet.trainer.algorithms.entropy import entropy_from_logits
from ajet.trainer.algorithms.masked import masked_mean
from ajet.trainer.algorithms.registry import get_aggregation, get_kl_estimator, get_policy_loss
from ajet.trainer.batching import MicroBatch, collate, plan_micro_batches
from ajet.trainer.distributed import Ranks, is_sharded, shard_by_tokens, unwrapped, wrap_for_training
from ajet.trainer.samples import Sample
from ajet.trainer.shared_prefix import gather_rows, plan_prefixes, scatter_rows, shared_prefix_logits


@dataclass
class OptimizerSettings:
    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    total_steps: int = 1000
    schedule: str = "constant"  # constant | linear | cosine (after warmup)
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0


@dataclass
class LossSettings:
    policy_loss: str = "ppo_clip"
    loss_options: dict[str, Any] = field(default_factory=dict)  # e.g. clip_low, clip_high
    aggregation: str = "token_mean"
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    episode_weighting: bool = True  # weight each sample 1 / (samples of its episode)
    entropy_metric: bool = True


def lr_lambda(settings: OptimizerSettings) -> Any:
    def factor(step: int) -> float:
        if settings.warmup_steps and step < settings.warmup_steps:
            return (step + 1) / settings.warmup_steps
        if settings.schedule == "constant":
            return 1.0
        span = max(1, settings.total_steps - settings.warmup_steps)
        progress = min(1.0, (step - settings.warmup_steps) / span)
        floor = settings.min_lr_ratio
        if settings.schedule == "linear":
            return floor + (1 - floor) * (1 - progress)
        if settings.schedule == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        raise ValueError(f"unknown schedule {settings.schedule!r}; write constant, linear or cosine")

    return factor


@dataclass
class TokenLogprobs:
    """Log-probs of the trainable part of a micro-batch, and the logits behind them (for the entropy metric).

    Only tokens from a row's first trained position on can be trained (its prompt comes before), so the
    vocabulary projection, the softmax and the entropy skip every earlier position."""

    logprobs: torch.Tensor  # [B, T] log p(input_ids[:, t] | input_ids[:, :t]); 0 where not computed
    logits: torch.Tensor  # [B, N, V] the logits behind some of those log-probs (as the model returned them)
    logits_mask: torch.Tensor  # [B, N] 1 where `logits` predicts a trained token
    temperatures: torch.Tensor  # [B, N] the temperature of the token each of `logits` predicts

    def scaled_logits(self) -> torch.Tensor:
        """[B, N, V] detached fp32 logits / temperature: the distribution each trained token was sampled from."""
        return self.logits.detach().float() / self.temperatures[..., None]


def token_logprobs(
    model: torch.nn.Module,
    batch: MicroBatch,
    autocast_to: torch.dtype | None = None,
    share_prefixes: bool = False,
) -> TokenLogprobs:
    """Log-probs under logits / temperature, each token at its own call's temperature (`batch.temperatures`),
    in fp32 whatever the model's dtype, as the inference engine does (the forward under the same autocast as
    the engine's, when one is set): the log-prob contract, docs/logprob-contract.md. With `share_prefixes`,
    rows that start with the same prompt compute it once (see `shared_prefix`)."""
    width = batch.input_ids.shape[1]
    plan = plan_prefixes(batch) if share_prefixes else None
    if plan is not None:
        with autocast(batch.input_ids.device, autocast_to):
            logits, targets, valid = shared_prefix_logits(model, batch, plan)  # [B, L, V], [B, L], [B, L]
        # gather_rows pads past a row's end with 0: a temperature of 1 there keeps the padding finite
        temperatures = gather_rows(batch.temperatures, plan.starts, targets.shape[1])  # [B, L]
        temperatures = torch.where(valid.bool(), temperatures, torch.ones_like(temperatures))
        scaled = logits.float() / temperatures[..., None]
        picked = scaled.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(scaled, dim=-1)
        logprobs = scatter_rows(picked * valid, plan.starts, width)  # [B, T]
        trained = gather_rows(batch.loss_mask, plan.starts, targets.shape[1]) * valid  # [B, L]
        return TokenLogprobs(logprobs, logits, trained, temperatures)
    trained_at = batch.loss_mask.nonzero()[:, 1]
    start = max(1, int(trained_at.min())) if trained_at.numel() else width - 1
    keep = width - start + 1  # logits at start-1 .. T-1; the last one predicts past the end and is unused
    with autocast(batch.input_ids.device, autocast_to):
        logits = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            use_cache=False,
            logits_to_keep=keep,
        ).logits[:, :-1]  # [B, T-start, V]
    temperatures = batch.temperatures[:, start:]  # [B, T-start]: of the token each logit predicts
    scaled = logits.float() / temperatures[..., None]
    targets = batch.input_ids[:, start:].unsqueeze(-1)  # [B, T-start, 1]
    picked = scaled.gather(-1, targets).squeeze(-1) - torch.logsumexp(scaled, dim=-1)  # [B, T-start]
    return TokenLogprobs(
        torch.nn.functional.pad(picked, (start, 0)), logits, batch.loss_mask[:, start:], temperatures
    )


class TrainingEngine:
    """One optimizer step over a mini-batch, on one rank or on all the ranks of `ranks` (data-parallel: each
    rank trains its share of the mini-batch; see `ajet.trainer.distributed`)."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        pad_id: int,
        optimizer: OptimizerSettings | None = None,
        micro_batch_tokens: int = 4096,
        gradient_checkpointing: bool = False,
        reference_model: torch.nn.Module | None = None,
        autocast_to: torch.dtype | None = None,
        share_prefixes: bool = True,
        ranks: Ranks | None = None,
        strategy: str = "ddp",
    ) -> None:
        self.ranks = ranks or Ranks(device=next(model.parameters()).device)
        self.autocast_to = (
            autocast_to  # matmul dtype under torch.autocast; weights and AdamW stay as they are
        )
        self.pad_id = pad_id
        self.settings = optimizer or OptimizerSettings()
        self.micro_batch_tokens = micro_batch_tokens
        self.reference_model = reference_model
        self.device = next(model.parameters()).device
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if hasattr(model, "enable_input_require_grads"):
                model.enable_input_require_grads()  # needed with LoRA: frozen embeddings give no grad to checkpoint
        # `module` runs forward/backward (DDP around `model`, or `model` sharded in place by FSDP2); `model` is
        # the plain module underneath, for state dicts and peft's disable_adapter.
        self.module = wrap_for_training(model, self.ranks, strategy)
        self.model = unwrapped(self.module)
        # Rows with the same prompt compute it once. Not with gradient checkpointing: transformers turns the
        # key/value cache off in training then, and sharing needs it. Not with FSDP over several ranks either:
        # a shared prompt is a second forward, and every rank must run the same number (each all-gathers).
        self.share_prefixes = (
            share_prefixes
            and not gradient_checkpointing
            and not (self.ranks.world_size > 1 and is_sharded(self.model))
        )
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not self.trainable:
            raise ValueError("the model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(
            self.trainable,
            lr=self.settings.lr,
            betas=self.settings.betas,
            eps=self.settings.eps,
            weight_decay=self.settings.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(self.settings))
        self.step = 0

    # -- forward passes ----------------------------------------------------------------------------------------

    def micro_batches(
        self, samples: Sequence[Sample], weights: Sequence[float] | None = None
    ) -> Iterator[MicroBatch]:
        lengths = [len(s.input_ids) for s in samples]
        for indices in plan_micro_batches(lengths, self.micro_batch_tokens):
            yield collate(samples, indices, self.pad_id, weights).to(self.device)

    @torch.no_grad()
    def recompute_logprobs(self, samples: Sequence[Sample]) -> list[list[float]]:
        """The current policy's log-probs of every token of every sample, each at its call's temperature, in
        sample order (0 before the first trained token of its micro-batch: prompt positions are never scored)."""
        out: list[list[float]] = [[] for _ in samples]
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in self.micro_batches(samples):
                logprobs = token_logprobs(self.model, batch, self.autocast_to, self.share_prefixes).logprobs
                for row, index in enumerate(batch.indices):
                    out[index] = logprobs[row, : len(samples[index].input_ids)].tolist()
        finally:
            self.model.train(was_training)
        return out

    @contextlib.contextmanager
    def _reference(self) -> Iterator[torch.nn.Module]:
        """The frozen reference policy: a separate model, or the LoRA base model with adapters switched off."""
        if self.reference_model is not None:
            yield self.reference_model
        elif hasattr(self.model, "disable_adapter"):
            with self.model.disable_adapter():
                yield self.model
        else:
            raise ValueError("kl_coef > 0 needs a reference model (full fine-tuning) or a LoRA model")

    # -- one optimizer step ------------------------------------------------------------------------------------

    def train_step(self, samples: Sequence[Sample], loss: LossSettings) -> dict[str, float]:
        """One optimizer step on `samples` (a mini-batch, the same list on every rank): gradients accumulated
        over token-budget micro-batches so that the result equals one big batch's, whatever the number of
        ranks. Each rank trains its share (`shard_by_tokens`). Returns metrics over the whole mini-batch."""
        started = time.perf_counter()
        ranks = self.ranks
        policy_loss = get_policy_loss(loss.policy_loss)
        aggregate = get_aggregation(loss.aggregation)
        mine = shard_by_tokens([len(s.input_ids) for s in samples], ranks.world_size)[ranks.rank]
        local = [samples[i] for i in mine]
        weights = [1.0 / max(1, s.episode_num_samples) for s in local] if loss.episode_weighting else None
        batches = list(self.micro_batches(local, weights))
        # The mini-batch's own denominator, summed over every micro-batch of every rank and shared by all, so
        # that the gradients summed over micro-batches and ranks are exactly one big batch's.
        normalizer = ranks.all_reduce_sum(
            [
                sum(
                    float(aggregation_module.denominator(loss.aggregation, b.loss_mask, b.sample_weights))
                    for b in batches
                )
            ]
        )[0]
        # Every rank runs the same number of forward/backward passes (FSDP all-gathers in each, DDP reduces in
        # the last): a rank with fewer micro-batches (or none) pads with empty ones that weigh nothing.
        real = len(batches)
        passes = int(ranks.all_reduce_max([real])[0])
        batches += [self._empty_batch() for _ in range(passes - real)]
        self.module.train()
        sums: dict[str, float] = {}
        tokens = 0
        for index, batch in enumerate(batches):
            last = index == len(batches) - 1
            with self._gradient_sync(last):
                forward = token_logprobs(self.module, batch, self.autocast_to, self.share_prefixes)
                logprobs = forward.logprobs  # [B, T]
                per_token, metrics = policy_loss(
                    logprobs, batch.old_logprobs, batch.advantages, batch.loss_mask, **loss.loss_options
                )
                if batch.token_weights is not None:
                    # off-policy rows: each token's loss times its truncated importance weight, before the
                    # aggregation (the losses stay pure functions of their inputs)
                    per_token = per_token * batch.token_weights
                total = aggregate(
                    per_token, batch.loss_mask, sample_weights=batch.sample_weights, normalizer=normalizer
                )
                if loss.kl_coef > 0:
                    with torch.no_grad(), self._reference() as reference:
                        ref_logprobs = token_logprobs(reference, batch, self.autocast_to).logprobs
                    kl = get_kl_estimator(loss.kl_estimator)(logprobs, ref_logprobs)  # [B, T]
                    kl_term = aggregate(
                        kl, batch.loss_mask, sample_weights=batch.sample_weights, normalizer=normalizer
                    )
                    total = total + loss.kl_coef * kl_term
                    metrics["kl"] = masked_mean(kl.detach(), batch.loss_mask).item()
                # DDP and FSDP average the ranks' gradients; the global normalizer already makes the sum over
                # ranks the mini-batch's gradient, so each rank's loss is scaled by world_size to undo the mean.
                (total * ranks.world_size).backward()
            if index >= real:
                continue  # an empty pass: no tokens, no metrics
            share = float(batch.loss_mask.sum())
            metrics["loss"] = float(total.detach())
            if loss.entropy_metric:
                with torch.no_grad():
                    entropy = entropy_from_logits(forward.scaled_logits())  # [B, N]
                    metrics["entropy"] = masked_mean(entropy, forward.logits_mask).item()
            for name, value in metrics.items():
                # "loss" is already scaled to the mini-batch; maxima (ratio_max) stay maxima; the rest are
                # averaged over trained tokens.
                if name.endswith("_max"):
                    sums[name] = max(sums.get(name, -math.inf), value)
                else:
                    sums[name] = sums.get(name, 0.0) + (value if name == "loss" else value * share)
            tokens += batch.num_tokens
        # Metrics over the whole mini-batch: every sum over every rank's micro-batches (a rank with no samples
        # has no metric names: the names come from rank 0, which always has samples, the longest first).
        names = ranks.broadcast_object(sorted(sums))
        maxima = [name for name in names if name.endswith("_max")]
        summed = [name for name in names if name not in maxima]
        local_counts = [tokens, sum(float(b.loss_mask.sum()) for b in batches[:real])]
        local_counts += [sum(b.padded_tokens for b in batches[:real]), real]
        reduced = ranks.all_reduce_sum([sums.get(name, 0.0) for name in summed] + local_counts)
        highest = ranks.all_reduce_max([sums.get(name, -math.inf) for name in maxima])
        sums = {**dict(zip(summed, reduced, strict=False)), **dict(zip(maxima, highest, strict=True))}
        tokens_all, trained, padded, micro = reduced[len(summed) :]
        trained = trained or 1.0
        # DDP's gradients are already averaged, so the norm is the global one; FSDP2's are DTensor shards and
        # clip_grad_norm_ reduces their norms over the ranks: global as well.
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.settings.grad_clip)
        if hasattr(grad_norm, "full_tensor"):
            grad_norm = grad_norm.full_tensor()
        finite = bool(torch.isfinite(grad_norm))
        if finite:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        # the step takes as long as its slowest rank
        elapsed = ranks.all_reduce_max([time.perf_counter() - started])[0]
        out = {
            name: (value if name == "loss" or name.endswith("_max") else value / trained)
            for name, value in sums.items()
        }
        out.update(
            grad_norm=float(grad_norm),
            skipped_nonfinite_grad=float(not finite),
            lr=self.scheduler.get_last_lr()[0],
            train_tokens=tokens_all,
            trained_tokens=trained,
            padded_tokens=padded,
            micro_batches=micro,
            step_time_s=elapsed,
            train_tokens_per_s=tokens_all / elapsed if elapsed > 0 else 0.0,
        )
        self.module.eval()
        return out

    def _empty_batch(self) -> MicroBatch:
        """A micro-batch of two pad tokens with nothing to train: a forward/backward that adds zero gradient."""
        width = 2
        zeros = torch.zeros((1, width), dtype=torch.float32)
        return MicroBatch(
            input_ids=torch.full((1, width), self.pad_id, dtype=torch.long),
            attention_mask=torch.ones((1, width), dtype=torch.long),
            loss_mask=zeros,
            old_logprobs=zeros.clone(),
            temperatures=torch.ones((1, width), dtype=torch.float32),
            advantages=torch.zeros(1),
            sample_weights=torch.zeros(1),
            indices=[],
        ).to(self.device)

    @contextlib.contextmanager
    def _gradient_sync(self, sync: bool) -> Iterator[None]:
        """Reduce gradients over the ranks only in the last backward of a step (the others accumulate)."""
        if self.ranks.world_size == 1:
            yield
        elif hasattr(self.module, "no_sync"):  # DDP
            with contextlib.nullcontext() if sync else self.module.no_sync():
                yield
        else:  # FSDP2
            self.module.set_requires_gradient_sync(sync)
            yield

    # -- checkpoint state --------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The schedule's state (the same on every rank); the optimizer's is saved apart, with
        torch.distributed.checkpoint (see `ajet.trainer.checkpoint`), since with FSDP it is sharded."""
        return {"scheduler": self.scheduler.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "optimizer" in state:  # a checkpoint from before optimizer states were saved with DCP
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
