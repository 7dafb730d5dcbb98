"""Loss aggregation: a per-token loss `[B, T]` and its mask -> the scalar to call `.backward()` on.

The choice changes what the gradient weighs (DAPO and Dr. GRPO are mostly about this step):
    token_mean            every trained token counts the same; long answers weigh more in total (DAPO)
    seq_mean_token_mean   every sequence counts the same; its tokens share its weight (original GRPO, GSPO)
    seq_mean_token_sum    every token counts the same, divided by a constant length (Dr. GRPO, no length bias)

`sample_weights: [B]` re-weights whole sequences, e.g. 1 / (samples of its episode) so that an episode that
became many samples (many calls that did not merge) weighs as much as one that became a single sample; every
aggregation is then a weighted mean with those weights.

`normalizer` replaces the batch's own denominator. With gradient accumulation over micro-batches, pass the
mini-batch total (sum of `denominator(...)` over its micro-batches) to every micro-batch, so that the summed
gradients equal those of one big batch. An all-zero mask gives 0, never NaN.
"""

from __future__ import annotations

import torch

from ajet.trainer.algorithms.registry import (
    get_aggregation_denominator,
    register_aggregation,
    register_aggregation_denominator,
)


def _weights(mask: torch.Tensor, sample_weights: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """[B] weight of each sequence (1 when none are given)."""
    if sample_weights is None:
        return torch.ones(mask.shape[0], dtype=dtype, device=mask.device)
    if sample_weights.shape != mask.shape[:1]:
        raise ValueError(
            f"sample_weights must have shape [B]={tuple(mask.shape[:1])}, got {sample_weights.shape}"
        )
    return sample_weights.to(dtype)


def _divide(total: torch.Tensor, denominator: float | torch.Tensor) -> torch.Tensor:
    # A zero denominator means nothing was trained: `total` is then 0 too, and 0 / 1 keeps the graph alive.
    denominator = torch.as_tensor(denominator, dtype=total.dtype, device=total.device)
    return total / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def _check(loss: torch.Tensor, mask: torch.Tensor) -> None:
    if loss.dim() != 2 or mask.shape != loss.shape:
        raise ValueError(
            f"loss and mask must both have shape [B, T]; got {tuple(loss.shape)}, {tuple(mask.shape)}"
        )


def _token_sums(loss: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([B] sum of the loss over trained tokens, [B] number of trained tokens)."""
    keep = mask.bool()
    sums = torch.where(keep, loss, torch.zeros_like(loss)).sum(-1)  # [B]
    return sums, keep.sum(-1).to(loss.dtype)  # [B], [B]


def denominator(name: str, mask: torch.Tensor, sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """What aggregation `name` (built-in or a plugin's) divides by on this batch (before `norm_len`). Sum it
    over the micro-batches of a mini-batch and pass the total as `normalizer`."""
    return get_aggregation_denominator(name)(mask, sample_weights)


# Each aggregation's denominator is registered under its name, as a plugin registers its own.
@register_aggregation_denominator("token_mean")
def trained_tokens(mask: torch.Tensor, sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """sum_b w_b * n_b: the weighted number of trained tokens."""
    _, counts = _token_sums(mask.float(), mask)  # [B]
    return (_weights(mask, sample_weights, counts.dtype) * counts).sum()


def trained_sequences(mask: torch.Tensor, sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """sum_b w_b over sequences with >= 1 trained token (sequences with nothing to train do not count)."""
    _, counts = _token_sums(mask.float(), mask)  # [B]
    return (_weights(mask, sample_weights, counts.dtype) * (counts > 0)).sum()


register_aggregation_denominator("seq_mean_token_mean")(trained_sequences)
register_aggregation_denominator("seq_mean_token_sum")(trained_sequences)


@register_aggregation("token_mean")
def token_mean(
    loss: torch.Tensor,
    mask: torch.Tensor,
    *,
    sample_weights: torch.Tensor | None = None,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """sum_b w_b * sum_t loss_bt / sum_b w_b * n_b (n_b = trained tokens of sequence b) -> scalar."""
    _check(loss, mask)
    sums, counts = _token_sums(loss, mask)  # [B], [B]
    w = _weights(mask, sample_weights, loss.dtype)  # [B]
    return _divide((w * sums).sum(), (w * counts).sum() if normalizer is None else normalizer)


@register_aggregation("seq_mean_token_mean")
def seq_mean_token_mean(
    loss: torch.Tensor,
    mask: torch.Tensor,
    *,
    sample_weights: torch.Tensor | None = None,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean over sequences (with >= 1 trained token) of each sequence's token mean -> scalar."""
    _check(loss, mask)
    sums, counts = _token_sums(loss, mask)  # [B], [B]
    seq_means = sums / counts.clamp(min=1)  # [B]; 0 for a sequence with nothing trained
    w = _weights(mask, sample_weights, loss.dtype) * (counts > 0)  # [B]
    return _divide((w * seq_means).sum(), w.sum() if normalizer is None else normalizer)


@register_aggregation("seq_mean_token_sum")
def seq_mean_token_sum(
    loss: torch.Tensor,
    mask: torch.Tensor,
    *,
    sample_weights: torch.Tensor | None = None,
    normalizer: float | torch.Tensor | None = None,
    norm_len: float | None = None,
) -> torch.Tensor:
    """Weighted mean over sequences (with >= 1 trained token) of each sequence's token sum, divided by the
    constant `norm_len` when given (Dr. GRPO uses the maximum response length) -> scalar."""
    _check(loss, mask)
    if norm_len is not None and norm_len <= 0:
        raise ValueError(f"norm_len must be positive, got {norm_len}")
    sums, counts = _token_sums(loss, mask)  # [B], [B]
    w = _weights(mask, sample_weights, loss.dtype) * (counts > 0)  # [B]
    result = _divide((w * sums).sum(), w.sum() if normalizer is None else normalizer)
    return result / norm_len if norm_len is not None else result
