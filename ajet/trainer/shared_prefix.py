"""Log-probs of a micro-batch with each shared prompt computed once.

The episodes of a GRPO group answer the same prompt, so a micro-batch holds `group_size` rows that start with
the same tokens. The plain forward runs that prompt `group_size` times; here every distinct prompt runs once,
its key/value cache is repeated for the rows that share it (`index_select`: gradients from every row flow back
into the one prompt computation), and only the rows' own tokens run on top of it. With 4 episodes of short
answers to one prompt, that is about half the tokens of the plain forward; the result is the same function
(equal up to float rounding, checked in tests/test_shared_prefix.py).

"Prompt" here is everything before a row's first trained token: the first call's prompt, for a merged
multi-turn sample too.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from ajet.trainer.batching import MicroBatch


@dataclass
class PrefixPlan:
    """How the rows of a micro-batch share prompts."""

    starts: list[int]  # per row: its first trained position (its prompt is input_ids[row, :start])
    prefixes: list[int]  # per distinct prompt: a row that has it
    row_prefix: list[int]  # per row: the index of its prompt in `prefixes`


def plan_prefixes(batch: MicroBatch) -> PrefixPlan | None:
    """Which rows share their prompt; None when no two rows do (the plain forward is then as cheap)."""
    lengths = batch.attention_mask.sum(dim=1).tolist()
    starts: list[int] = []
    keys: dict[tuple[int, ...], int] = {}
    prefixes: list[int] = []
    row_prefix: list[int] = []
    for row in range(batch.input_ids.shape[0]):
        trained = batch.loss_mask[row].nonzero()
        if trained.numel() == 0 or int(trained[0]) < 1 or int(trained[0]) >= lengths[row]:
            return None  # a row with nothing to train (or no prompt) gains nothing from sharing
        start = int(trained[0])
        key = tuple(batch.input_ids[row, :start].tolist())
        if key not in keys:
            keys[key] = len(prefixes)
            prefixes.append(row)
        starts.append(start)
        row_prefix.append(keys[key])
    if len(prefixes) == len(starts):
        return None
    return PrefixPlan(starts, prefixes, row_prefix)


def shared_prefix_logits(
    model: torch.nn.Module, batch: MicroBatch, plan: PrefixPlan
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits that predict each row's tokens from its first trained position on.

    Returns `logits` [B, L, V] (logits[b, j] predicts input_ids[b, starts[b] + j]), `targets` [B, L] (those
    tokens) and `valid` [B, L] (1 where the row has a token there), L being the longest row's own part."""
    device = batch.input_ids.device
    lengths = batch.attention_mask.sum(dim=1).tolist()
    rows = len(plan.starts)

    # 1. Each distinct prompt once, left-padded so that every prompt's last token sits at the same position.
    prompt_lengths = [plan.starts[row] for row in plan.prefixes]
    width = max(prompt_lengths)
    prompt_ids = torch.zeros((len(plan.prefixes), width), dtype=torch.long, device=device)
    prompt_mask = torch.zeros_like(prompt_ids)
    for index, (row, length) in enumerate(zip(plan.prefixes, prompt_lengths, strict=True)):
        prompt_ids[index, width - length :] = batch.input_ids[row, :length]
        prompt_mask[index, width - length :] = 1
    prompt_positions = (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)
    prompt_out = model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=prompt_positions,
        use_cache=True,
        logits_to_keep=1,
    )
    cache = getattr(prompt_out, "cache", None) or prompt_out.past_key_values
    select = torch.tensor(plan.row_prefix, dtype=torch.long, device=device)
    cache.reorder_cache(select)  # [U, ...] -> [B, ...], differentiable

    # 2. Every row's own tokens, right-padded, attending to its prompt's cache.
    own = [lengths[row] - plan.starts[row] for row in range(rows)]
    span = max(own)
    own_ids = torch.zeros((rows, span), dtype=torch.long, device=device)
    own_mask = torch.zeros_like(own_ids)
    for row, (start, count) in enumerate(zip(plan.starts, own, strict=True)):
        own_ids[row, :count] = batch.input_ids[row, start : start + count]
        own_mask[row, :count] = 1
    out = model(
        input_ids=own_ids,
        attention_mask=torch.cat([prompt_mask.index_select(0, select), own_mask], dim=1),
        position_ids=own_positions(plan.starts, span, device),
        **{_cache_kwarg(model): cache},
        use_cache=True,
        logits_to_keep=span,
    )
    # The prompt's last logit predicts a row's first own token; the row's own logits predict the rest.
    # index_select, not `logits[select]`: the backward of advanced indexing with repeated indices adds with
    # float atomics on CPU (not reproducible run to run); index_select's backward adds in order.
    first = prompt_out.logits[:, -1:].index_select(0, select)  # [B, 1, V]
    logits = torch.cat([first, out.logits[:, :-1]], dim=1)  # [B, L, V]
    return logits, own_ids, own_mask


def _cache_kwarg(model: torch.nn.Module) -> str:
    # transformers 5 renamed `past_key_values` to `cache`; 4.x models (and some wrappers) take the old name.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def own_positions(starts: list[int], span: int, device: torch.device) -> torch.Tensor:
    """[B, L]: the input position of each row's j-th own token (past the row's end for padding)."""
    return torch.tensor(starts, device=device)[:, None] + torch.arange(span, device=device)[None, :]


def scatter_rows(values: torch.Tensor, starts: list[int], width: int) -> torch.Tensor:
    """[B, L] values of each row's own part -> [B, width] aligned with input_ids; 0 elsewhere (zero `values` on
    padding first: padded positions land past the row's end)."""
    rows, span = values.shape
    out = values.new_zeros((rows, width + span))  # room past the end, so no index falls outside
    return out.scatter(1, own_positions(starts, span, values.device), values)[:, :width]


def gather_rows(values: torch.Tensor, starts: list[int], span: int) -> torch.Tensor:
    """The inverse of `scatter_rows`: [B, width] -> [B, span], 0 past each row's end."""
    padded = torch.nn.functional.pad(values, (0, span))
    return padded.gather(1, own_positions(starts, span, values.device))
