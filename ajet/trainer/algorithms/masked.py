"""Masked reductions shared by the losses and their metrics. Masks may be bool, int or float (1 = counts)."""

from __future__ import annotations

import torch


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of `values` where `mask` is set. `torch.where`, not `values * mask`, so a NaN or inf in a
    masked-out position (padding) cannot leak into the result."""
    kept = torch.where(mask.bool(), values, torch.zeros_like(values))
    return kept.sum() if dim is None else kept.sum(dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` where `mask` is set; 0 (not NaN) where nothing is set."""
    count = mask.bool().sum() if dim is None else mask.bool().sum(dim)
    return masked_sum(values, mask, dim) / count.clamp(min=1).to(values.dtype)


def masked_max(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Largest value where `mask` is set; 0 where nothing is set."""
    if not mask.bool().any():
        return values.new_zeros(())
    return values[mask.bool()].max()


def broadcast_advantages(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] (one value per sequence) or [B, T] (per token) -> [B, T] shaped like `like`."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)  # [B, 1], broadcasts over T
    if advantages.dim() != 2 or advantages.shape[0] != like.shape[0]:
        raise ValueError(
            f"advantages must have shape [B] or [B, T] with B={like.shape[0]}, not {tuple(advantages.shape)}"
        )
    return advantages.to(like.dtype).expand_as(like)
