"""Samples -> padded tensors, in token-budget micro-batches with little padding.

Samples are sorted by length (longest first) and packed greedily so that each micro-batch's padded size
(rows x longest row) stays within `max_tokens`. Sorting keeps rows of similar length together, so padding is
small; a sample longer than the budget still gets a micro-batch of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ajet.trainer.samples import Sample


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # [B, T] long, right-padded
    attention_mask: torch.Tensor  # [B, T] long, 1 on real tokens
    loss_mask: torch.Tensor  # [B, T] float, 1 on trained tokens
    old_logprobs: torch.Tensor  # [B, T] float, recorded behaviour log-probs (0 where not trained)
    temperatures: (
        torch.Tensor
    )  # [B, T] float, the temperature each token's log-prob is taken at (1 on padding)
    advantages: torch.Tensor  # [B] float
    sample_weights: torch.Tensor  # [B] float
    indices: list[int]  # positions of these rows in the caller's sample list
    # [B, T] float per-token loss weights (truncated importance weights, `ajet.trainer.off_policy`); None
    # when no row has any, so an on-policy batch computes exactly what it did before they existed
    token_weights: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def padded_tokens(self) -> int:
        return self.input_ids.numel()

    def to(self, device: torch.device | str) -> MicroBatch:
        return MicroBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.loss_mask.to(device),
            self.old_logprobs.to(device),
            self.temperatures.to(device),
            self.advantages.to(device),
            self.sample_weights.to(device),
            self.indices,
            None if self.token_weights is None else self.token_weights.to(device),
        )


def plan_micro_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Group sample indices into micro-batches whose padded size (rows x longest) is at most `max_tokens`."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        if current and (len(current) + 1) * longest > max_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def collate(
    samples: Sequence[Sample], indices: list[int], pad_id: int, sample_weights: Sequence[float] | None = None
) -> MicroBatch:
    rows = [samples[i] for i in indices]
    width = max(len(s.input_ids) for s in rows)
    batch = len(rows)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    loss_mask = torch.zeros((batch, width), dtype=torch.float32)
    old_logprobs = torch.zeros((batch, width), dtype=torch.float32)
    temperatures = torch.ones((batch, width), dtype=torch.float32)
    for row, sample in enumerate(rows):
        n = len(sample.input_ids)
        input_ids[row, :n] = torch.tensor(sample.input_ids, dtype=torch.long)
        attention_mask[row, :n] = 1
        loss_mask[row, :n] = torch.tensor(sample.loss_mask, dtype=torch.float32)
        old_logprobs[row, :n] = torch.tensor(sample.old_logprobs, dtype=torch.float32)
        if sample.temperatures:
            if len(sample.temperatures) != n:
                raise ValueError(f"sample has {n} tokens but {len(sample.temperatures)} temperatures")
            temperatures[row, :n] = torch.tensor(sample.temperatures, dtype=torch.float32)
    token_weights = None
    if any(sample.token_weights for sample in rows):
        token_weights = torch.ones((batch, width), dtype=torch.float32)  # [B, T]; 1 where a row has none
        for row, sample in enumerate(rows):
            if sample.token_weights:
                if len(sample.token_weights) != len(sample.input_ids):
                    raise ValueError(
                        f"sample has {len(sample.input_ids)} tokens but {len(sample.token_weights)} token weights"
                    )
                token_weights[row, : len(sample.input_ids)] = torch.tensor(
                    sample.token_weights, dtype=torch.float32
                )
    advantages = torch.tensor([s.advantage for s in rows], dtype=torch.float32)
    weights = torch.tensor(
        [1.0 if sample_weights is None else sample_weights[i] for i in indices], dtype=torch.float32
    )
    return MicroBatch(
        input_ids,
        attention_mask,
        loss_mask,
        old_logprobs,
        temperatures,
        advantages,
        weights,
        indices,
        token_weights,
    )
