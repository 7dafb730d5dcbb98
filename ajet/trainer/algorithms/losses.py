"""Token-level policy losses. Each returns a per-token loss `[B, T]` (0 where `mask` is 0), not aggregated:
the aggregation (token mean, sequence mean, ...) is a separate, registered step, so any loss pairs with any
aggregation.

Shared inputs:
    logprobs      [B, T]  log p(token) under the policy being trained (carries the gradient)
    old_logprobs  [B, T]  log p(token) under the behaviour policy, as the engine recorded it
    advantages    [B] or [B, T]  one value per sequence (broadcast over T) or per token
    mask          [B, T]  1 where the token is trained (the model's own completion tokens)

Metrics are floats, averaged over trained tokens.
"""

from __future__ import annotations

import torch

from ajet.trainer.algorithms.masked import broadcast_advantages, masked_max, masked_mean
from ajet.trainer.algorithms.registry import Metrics, register_policy_loss

# exp(20) ~ 4.9e8: finite in fp32 and far outside any clip range. A stale logprob (or one from padding) must
# not overflow the ratio to inf, since inf * 0 is NaN even where the token is masked out.
MAX_LOG_RATIO = 20.0


def _check(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor) -> None:
    if logprobs.dim() != 2 or old_logprobs.shape != logprobs.shape or mask.shape != logprobs.shape:
        raise ValueError(
            "logprobs, old_logprobs and mask must all have shape [B, T]; got "
            f"{tuple(logprobs.shape)}, {tuple(old_logprobs.shape)} and {tuple(mask.shape)}"
        )


def _check_clip(clip_low: float, clip_high: float) -> None:
    if not 0.0 <= clip_low < 1.0 or clip_high < 0.0:
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0; got {clip_low} and {clip_high}")


def _approx_kl(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor) -> float:
    """k1 estimate of KL(behaviour || current) over trained tokens: how far training has moved the policy."""
    return masked_mean(old_logprobs - logprobs, mask).item()


@register_policy_loss("ppo_clip")
def ppo_clip(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_c: float | None = None,
) -> tuple[torch.Tensor, Metrics]:
    """PPO's clipped surrogate: -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A).

    Separate bounds give DAPO's clip-higher (0.2 / 0.28): a larger upper bound lets low-probability tokens
    with positive advantage grow, which keeps entropy from collapsing. `clip_c` (e.g. 3.0) is dual-clip PPO:
    for a negative advantage the loss is capped at -clip_c * A, so one token whose ratio exploded cannot
    dominate.
    """
    _check(logprobs, old_logprobs, mask)
    _check_clip(clip_low, clip_high)
    if clip_c is not None and clip_c <= 1.0:
        raise ValueError(f"clip_c (dual clip) must be > 1, got {clip_c}")
    adv = broadcast_advantages(advantages, logprobs)  # [B, T]
    ratio = (logprobs - old_logprobs).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO).exp()  # [B, T]
    unclipped = -adv * ratio  # [B, T]
    clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)  # [B, T]
    loss = torch.maximum(unclipped, clipped)  # the pessimistic of the two, as a loss (= -min of objectives)
    dual_active = torch.zeros_like(mask, dtype=torch.bool)
    if clip_c is not None:
        dual = -adv * clip_c  # [B, T]; for A < 0 this is a positive cap with no gradient
        dual_active = (adv < 0) & (loss > dual)
        loss = torch.where(dual_active, dual, loss)
    loss = torch.where(mask.bool(), loss, torch.zeros_like(loss))

    with torch.no_grad():
        # The clip only changes the loss (and stops the gradient) on the side the advantage pushes towards.
        low = (ratio < 1.0 - clip_low) & (adv < 0)
        high = (ratio > 1.0 + clip_high) & (adv > 0)
        metrics = {
            "policy/clip_frac_low": masked_mean(low.float(), mask).item(),
            "policy/clip_frac_high": masked_mean(high.float(), mask).item(),
            "policy/dual_clip_frac": masked_mean(dual_active.float(), mask).item(),
            "policy/approx_kl": _approx_kl(logprobs, old_logprobs, mask),
            "policy/ratio_mean": masked_mean(ratio, mask).item(),
            "policy/ratio_max": masked_max(ratio, mask).item(),
        }
    return loss, metrics


@register_policy_loss("gspo")
def gspo(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
) -> tuple[torch.Tensor, Metrics]:
    """GSPO (Zheng et al. 2025): clip a sequence-level ratio instead of per-token ratios.

    s_i = exp(mean over the sequence's trained tokens of (logp - old_logp)), the length-normalised sequence
    likelihood ratio. In the paper's token-level form each token gets
    s_i,t = sg[s_i] * exp(logp_t - sg[logp_t]): its value is s_i (so a whole sequence is clipped or not), its
    gradient is s_i * d logp_t. With the `seq_mean_token_mean` aggregation this is exactly the paper's
    sequence-level GSPO objective. The clip range is tiny (3e-4 / 4e-4 in the paper) because a sequence
    ratio moves far less than a token ratio.
    """
    _check(logprobs, old_logprobs, mask)
    _check_clip(clip_low, clip_high)
    adv = broadcast_advantages(advantages, logprobs)  # [B, T]
    seq_log_ratio = masked_mean(logprobs - old_logprobs, mask, dim=-1)  # [B]
    # value: log s_i on every token; gradient: d logp_t (the detached terms carry none)
    log_ratio = logprobs - logprobs.detach() + seq_log_ratio.detach().unsqueeze(-1)  # [B, T]
    ratio = log_ratio.clamp(max=MAX_LOG_RATIO).exp()  # [B, T]
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)  # [B, T]
    loss = torch.where(mask.bool(), loss, torch.zeros_like(loss))

    with torch.no_grad():
        has_tokens = mask.bool().any(dim=-1)  # [B]; a sequence with nothing trained has no ratio
        seq_ratio = seq_log_ratio.clamp(max=MAX_LOG_RATIO).exp()  # [B]
        low = (ratio < 1.0 - clip_low) & (adv < 0)
        high = (ratio > 1.0 + clip_high) & (adv > 0)
        metrics = {
            "policy/clip_frac_low": masked_mean(low.float(), mask).item(),
            "policy/clip_frac_high": masked_mean(high.float(), mask).item(),
            "policy/approx_kl": _approx_kl(logprobs, old_logprobs, mask),
            "policy/ratio_mean": masked_mean(seq_ratio, has_tokens).item(),
            "policy/ratio_max": masked_max(seq_ratio, has_tokens).item(),
        }
    return loss, metrics


@register_policy_loss("pg")
def pg(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, Metrics]:
    """Plain policy gradient (REINFORCE): -A * logp. No importance ratio, so it is only correct on-policy (one
    optimizer step per batch of rollouts); `old_logprobs` only feeds the approx_kl metric, which shows how
    off-policy the batch really was."""
    _check(logprobs, old_logprobs, mask)
    adv = broadcast_advantages(advantages, logprobs)  # [B, T]
    loss = torch.where(mask.bool(), -adv * logprobs, torch.zeros_like(logprobs))  # [B, T]
    with torch.no_grad():
        metrics = {"policy/approx_kl": _approx_kl(logprobs, old_logprobs, mask)}
    return loss, metrics


@register_policy_loss("nll")
def nll(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, Metrics]:
    """Supervised fine-tuning: -logp of the demonstrated tokens (the model's own turns only, by the mask).
    Advantages and behaviour log-probs are ignored; `algorithm: sft` selects this loss."""
    _check(logprobs, old_logprobs, mask)
    loss = torch.where(mask.bool(), -logprobs, torch.zeros_like(logprobs))  # [B, T]
    with torch.no_grad():
        metrics = {"sft/nll": masked_mean(-logprobs, mask).item()}
    return loss, metrics
