"""Episode-level advantage estimators: one reward per episode in, one advantage per episode out.

Every estimator takes `rewards: [E]` (float, one per episode) and `group_ids: [E]` (integer; episodes with the
same id are the rollouts of one task, a GRPO group; ids need not be contiguous) and returns
`(advantages: [E], metrics)`. The caller broadcasts an episode's advantage to all of its tokens.

A group of one episode has no baseline to compare against, so every estimator gives it advantage 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ajet.trainer.algorithms.registry import Metrics, register_advantage_estimator


@dataclass(frozen=True)
class Groups:
    """Per-group statistics of a reward batch, indexed back to episodes with `index`."""

    index: torch.Tensor  # [E] long, the group (0..G-1) of each episode
    size: torch.Tensor  # [G] float, episodes per group
    mean: torch.Tensor  # [G] mean reward of each group
    sum_sq_dev: torch.Tensor  # [G] sum over the group of (r - mean)^2
    all_equal: torch.Tensor  # [G] bool, every reward in the group is the same (no learning signal)

    def std(self, unbiased: bool) -> torch.Tensor:
        """[G] standard deviation of each group; 0 for a group of one even when `unbiased`."""
        dof = (self.size - 1).clamp(min=1) if unbiased else self.size
        return (self.sum_sq_dev / dof).sqrt()


def group_rewards(rewards: torch.Tensor, group_ids: torch.Tensor) -> Groups:
    """Group statistics with scatter ops (no Python loop over groups)."""
    _check(rewards, group_ids)
    _, index, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)  # index: [E]
    num_groups = counts.numel()
    size = counts.to(rewards.dtype)  # [G]
    mean = rewards.new_zeros(num_groups).index_add_(0, index, rewards) / size  # [G]
    dev = rewards - mean[index]  # [E]
    sum_sq_dev = rewards.new_zeros(num_groups).index_add_(0, index, dev * dev)  # [G]
    high = rewards.new_full((num_groups,), -torch.inf).scatter_reduce(0, index, rewards, "amax")
    low = rewards.new_full((num_groups,), torch.inf).scatter_reduce(0, index, rewards, "amin")
    return Groups(index=index, size=size, mean=mean, sum_sq_dev=sum_sq_dev, all_equal=high == low)


def _check(rewards: torch.Tensor, group_ids: torch.Tensor) -> None:
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"rewards and group_ids must both have shape [E]; got {tuple(rewards.shape)} and "
            f"{tuple(group_ids.shape)}"
        )
    if not rewards.is_floating_point():
        raise ValueError(f"rewards must be a float tensor, not {rewards.dtype}")
    if group_ids.is_floating_point() or group_ids.is_complex():
        raise ValueError(f"group_ids must be an integer tensor, not {group_ids.dtype}")
    if not torch.isfinite(rewards).all():
        # One NaN would turn its whole group's advantages into NaN and then the weights.
        raise ValueError(f"rewards must be finite; got {rewards.tolist()}")


def advantage_metrics(advantages: torch.Tensor, groups: Groups) -> Metrics:
    """Mean/std of the advantages and the share of groups that carry no signal (all rewards equal)."""
    if advantages.numel() == 0:
        return {
            "advantage/mean": 0.0,
            "advantage/std": 0.0,
            "advantage/zero_signal_group_frac": 0.0,
            "advantage/num_groups": 0.0,
        }
    return {
        "advantage/mean": advantages.mean().item(),
        "advantage/std": advantages.std(unbiased=False).item(),
        "advantage/zero_signal_group_frac": groups.all_equal.float().mean().item(),
        "advantage/num_groups": float(groups.size.numel()),
    }


@register_advantage_estimator("grpo")
def grpo(
    rewards: torch.Tensor, group_ids: torch.Tensor, *, eps: float = 1e-6, std_unbiased: bool = True
) -> tuple[torch.Tensor, Metrics]:
    """GRPO: (r - mean_group) / (std_group + eps).

    `std_unbiased=True` (divide by n-1) matches verl and TRL, which call `torch.std`; the DeepSeekMath paper
    does not say. With n=2 and rewards {0, 1}: unbiased std 0.707 gives advantages +-0.707, biased std 0.5
    gives +-1.
    """
    groups = group_rewards(rewards, group_ids)
    idx = groups.index
    advantages = (rewards - groups.mean[idx]) / (groups.std(std_unbiased)[idx] + eps)  # [E]
    advantages = torch.where(groups.size[idx] > 1, advantages, torch.zeros_like(advantages))
    return advantages, advantage_metrics(advantages, groups)


@register_advantage_estimator("dr_grpo")
def dr_grpo(rewards: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
    """Dr. GRPO: r - mean_group. Dividing by the std up-weights near-uniform groups (easy or hopeless tasks),
    a bias the Dr. GRPO paper removes; pair it with `seq_mean_token_sum` aggregation."""
    groups = group_rewards(rewards, group_ids)
    advantages = rewards - groups.mean[groups.index]  # [E]; a group of one gives r - r = 0
    return advantages, advantage_metrics(advantages, groups)


@register_advantage_estimator("rloo")
def rloo(rewards: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
    """RLOO: r_i - mean_{j != i} r_j, the baseline that excludes the episode itself (unbiased).

    Computed as n/(n-1) * (r_i - mean): r_i - (S - r_i)/(n-1) = (n*r_i - S)/(n-1) = n/(n-1) * (r_i - S/n).
    """
    groups = group_rewards(rewards, group_ids)
    n = groups.size[groups.index]  # [E]
    scale = torch.where(n > 1, n / (n - 1).clamp(min=1), torch.zeros_like(n))  # a group of one -> 0
    advantages = scale * (rewards - groups.mean[groups.index])  # [E]
    return advantages, advantage_metrics(advantages, groups)


@register_advantage_estimator("reinforce_pp_baseline")
def reinforce_pp_baseline(
    rewards: torch.Tensor, group_ids: torch.Tensor, *, eps: float = 1e-6, std_unbiased: bool = True
) -> tuple[torch.Tensor, Metrics]:
    """REINFORCE++ with baseline: subtract the group mean, then whiten over the whole batch.

    The group mean removes task difficulty; the batch-wide std (instead of GRPO's per-group std) keeps the
    scale stable without up-weighting near-uniform groups. verl whitens over tokens, so long responses weigh
    more there; here every episode weighs the same (its tokens all share one advantage anyway).
    """
    groups = group_rewards(rewards, group_ids)
    centred = rewards - groups.mean[groups.index]  # [E]
    if centred.numel() < 2:
        advantages = torch.zeros_like(centred)
    else:
        # The batch mean of `centred` is already 0 up to rounding (each group's deviations sum to 0).
        advantages = (centred - centred.mean()) / (centred.std(unbiased=std_unbiased) + eps)
    return advantages, advantage_metrics(advantages, groups)
