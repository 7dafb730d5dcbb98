"""KL penalty estimators against a frozen reference policy, per token (`[B, T]` in, `[B, T]` out; the caller
masks and aggregates them like the policy loss). Names follow Schulman's note "Approximating KL divergence",
with r = p_ref / p_policy on tokens sampled from the policy."""

from __future__ import annotations

import torch

from ajet.trainer.algorithms.registry import register_kl_estimator

# A reference and a trained policy can disagree wildly on a rare token; exp() of that would overflow.
_MAX_LOG_RATIO = 20.0
# k3 of a large but finite disagreement is still huge; capping it keeps one token from dominating the penalty
# (verl caps at 10 as well).
_MAX_K3 = 10.0


@register_kl_estimator("k1")
def k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """logp - ref_logp: unbiased for KL(policy || ref) but high variance, and negative on some tokens."""
    return logprobs - ref_logprobs  # [B, T]


@register_kl_estimator("k2")
def k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """0.5 * (logp - ref_logp)^2: biased, low variance, never negative; its gradient is the true KL's."""
    return 0.5 * (logprobs - ref_logprobs).square()  # [B, T]


@register_kl_estimator("k3")
@register_kl_estimator("low_var_kl")
def k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """(r - 1) - log r with r = exp(ref_logp - logp): unbiased, low variance, never negative (GRPO's KL)."""
    log_r = (ref_logprobs - logprobs).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)  # [B, T]
    return (log_r.exp() - 1.0 - log_r).clamp(min=-_MAX_K3, max=_MAX_K3)  # [B, T]
