"""Entropy of the policy's next-token distributions, for metrics (a collapsing entropy is the first sign that
exploration is gone) or an entropy bonus."""

from __future__ import annotations

import torch


def entropy_from_logits(logits: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """H = logsumexp(z) - sum_v softmax(z)_v * z_v for each position: `[B, T, V]` -> `[B, T]`.

    This form never takes log(0), so it stays finite where softmax underflows. Computed in fp32 even for bf16
    logits. `chunk_size` processes that many positions of T at a time, so the fp32 copy and the softmax of a
    long sequence with a 150k vocabulary need only a chunk's memory.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape [B, T, V], got {tuple(logits.shape)}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    step = chunk_size or max(logits.shape[1], 1)
    parts = [_entropy(logits[:, start : start + step]) for start in range(0, logits.shape[1], step)]
    if not parts:
        return logits.new_zeros(logits.shape[:2], dtype=torch.float32)
    return torch.cat(parts, dim=1)  # [B, T]


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    z = logits.float()  # [B, t, V]
    p = torch.softmax(z, dim=-1)  # [B, t, V]
    # A -inf logit (a masked-out vocabulary entry) has p = 0 and contributes 0, not 0 * -inf = NaN.
    p_z = torch.where(p > 0, p * z, torch.zeros_like(z))  # [B, t, V]
    return torch.logsumexp(z, dim=-1) - p_z.sum(-1)  # [B, t]
