"""Shared-prompt forward: the rows of a GRPO group start with the same prompt, which is computed once. It must
be the same function as the plain forward: equal log-probs, equal gradients, equal entropy."""

from __future__ import annotations

from typing import Any

import torch

from ajet.core.models import build_tiny_model
from ajet.trainer.algorithms.masked import masked_mean
from ajet.trainer.batching import collate
from ajet.trainer.engine import token_logprobs
from ajet.trainer.samples import Sample
from ajet.trainer.shared_prefix import plan_prefixes


def sample(
    prompt: list[int], rest: list[int], trained: list[int] | None = None, temperature: float = 0.7
) -> Sample:
    """`rest` follows the prompt; `trained` masks it (default: all trained), e.g. 0 on a tool result. Each
    sample's tokens are at `temperature`, so rows of one batch differ, as calls of one GRPO group may."""
    mask = trained if trained is not None else [1] * len(rest)
    return Sample(
        input_ids=prompt + rest,
        loss_mask=[0] * len(prompt) + mask,
        old_logprobs=[0.0] * (len(prompt) + len(rest)),
        advantage=1.0,
        episode_id="e",
        group_id="g",
        agent_name="a",
        target_tag="a",
        reward=1.0,
        temperatures=[temperature] * (len(prompt) + len(rest)),
    )


def group_batch() -> list[Sample]:
    prompt_a = [5, 17, 230, 41, 9, 88, 301]
    prompt_b = [5, 17, 230, 41, 1200]  # shares a head with A, but is a different prompt
    return [
        sample(prompt_a, [12, 13, 14, 2]),
        sample(prompt_a, [99, 2], temperature=1.3),
        sample(prompt_a, [12, 13, 400, 401, 402, 2]),
        # a merged two-turn sample: answer, tool result (not trained), answer
        sample(prompt_a, [7, 8, 60, 61, 62, 9, 2], trained=[1, 1, 0, 0, 0, 1, 1]),
        sample(prompt_b, [3, 3, 2]),
        sample(prompt_b, [4, 2], temperature=0.4),
        sample([8, 8, 8], [1000, 1001]),  # alone with its prompt
    ]


def forward(model: Any, samples: list[Sample], share: bool) -> tuple[torch.Tensor, float, dict[str, Any]]:
    batch = collate(samples, list(range(len(samples))), pad_id=0)
    model.zero_grad(set_to_none=True)
    out = token_logprobs(model, batch, share_prefixes=share)
    weights = torch.arange(1, out.logprobs.shape[1] + 1, dtype=torch.float32)  # position-dependent loss
    (out.logprobs * batch.loss_mask * weights).sum().backward()
    entropy_logits = out.scaled_logits()
    probs = entropy_logits.softmax(-1)
    entropy = masked_mean(-(probs * entropy_logits.log_softmax(-1)).sum(-1), out.logits_mask).item()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.logprobs.detach(), entropy, grads


def test_the_planner_groups_rows_by_prompt() -> None:
    samples = group_batch()
    plan = plan_prefixes(collate(samples, list(range(len(samples))), pad_id=0))
    assert plan is not None
    assert plan.starts == [7, 7, 7, 7, 5, 5, 3]
    assert plan.row_prefix == [0, 0, 0, 0, 1, 1, 2] and plan.prefixes == [0, 4, 6]
    alone = [sample([1, 2], [3]), sample([1, 4], [3])]
    assert plan_prefixes(collate(alone, [0, 1], pad_id=0)) is None  # nothing shared: the plain forward


def test_shared_prompts_give_the_same_logprobs_gradients_and_entropy() -> None:
    model, _ = build_tiny_model(seed=1)
    model.train()
    samples = group_batch()
    plain_logprobs, plain_entropy, plain_grads = forward(model, samples, share=False)
    shared_logprobs, shared_entropy, shared_grads = forward(model, samples, share=True)
    mask = collate(samples, list(range(len(samples))), pad_id=0).loss_mask.bool()
    assert torch.allclose(shared_logprobs[mask], plain_logprobs[mask], atol=1e-5)
    assert torch.equal(shared_logprobs[:, :3], torch.zeros(len(samples), 3))  # prompts are not scored
    assert abs(shared_entropy - plain_entropy) < 1e-5
    assert shared_grads.keys() == plain_grads.keys() and len(plain_grads) > 0
    for name, grad in plain_grads.items():
        # float32 rounding, summed in a different order: relative to the tensor's largest entry
        error = (shared_grads[name] - grad).abs().max().item()
        assert error <= 1e-5 * grad.abs().max().item() + 1e-7, (name, error)
