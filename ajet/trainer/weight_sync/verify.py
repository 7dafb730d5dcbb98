"""Check that an engine serves exactly the trainer's policy, after every push.

A push that "succeeds" but leaves the server on other weights trains silently on a wrong importance ratio,
the worst failure a trainer can have (vLLM 0.32's in-place reload did that to tied output heads; a server at a
user's base_url may serve another checkpoint). So after each push the trainer asks the engine for a short greedy
completion and recomputes its log-probs with its own policy: they must agree within `tolerance`, or the run
stops with a `WeightSyncError` that says what differs. It costs one 8-token completion and one forward pass.
"""

from __future__ import annotations

from typing import Any

import torch

from ajet.core.precision import autocast
from ajet.core.types import SamplingParams
from ajet.trainer.weight_sync.base import WeightSyncError

PROBE_MESSAGES = [{"role": "user", "content": "Count from one to ten, in words."}]
PROBE_TOKENS = 8


def default_tolerance(dtype: str, autocast_name: str) -> float:
    """fp32 on both sides agrees to ~5e-5 (measured, SmolLM2 on vLLM CPU); bf16 rounds differently on each side."""
    return 1e-3 if dtype == "float32" and autocast_name == "none" else 0.15


async def check_served_policy(
    engine: Any,
    policy: torch.nn.Module,
    version: int,
    tolerance: float,
    autocast_to: torch.dtype | None = None,
) -> float:
    """The largest |engine log-prob - policy log-prob| over a short greedy completion; raises past `tolerance`."""
    prompt = list(
        engine.tokenizer.apply_chat_template(PROBE_MESSAGES, add_generation_prompt=True, return_dict=False)
    )
    completion = await engine.generate(
        prompt, SamplingParams(temperature=0.0, max_tokens=PROBE_TOKENS, seed=0)
    )
    if completion.model_version != version:
        raise WeightSyncError(
            f"after pushing version {version}, the engine served version {completion.model_version}"
        )
    device = next(policy.parameters()).device
    ids = torch.tensor([prompt + completion.ids], device=device)  # [1, P+C]
    was_training = policy.training
    policy.eval()
    try:
        with torch.no_grad(), autocast(device, autocast_to):
            logits = policy(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()  # [C, V]
    finally:
        policy.train(was_training)
    targets = ids[0, len(prompt) :, None]  # [C, 1]
    mine = torch.log_softmax(logits, dim=-1).gather(-1, targets)[:, 0]  # [C] greedy: temperature 1
    served = torch.tensor(completion.logprobs, device=device)
    diff = float((mine - served).abs().max()) if completion.ids else 0.0
    if diff > tolerance:
        raise WeightSyncError(
            f"after pushing version {version}, the engine's log-probs differ from the trainer's policy by up to "
            f"{diff:.3g} (tolerance {tolerance:g}): the engine does not serve the pushed weights, and training "
            "on its completions would use wrong importance ratios. A vLLM server at engine.base_url must be "
            "started from model.path (for a model with tied embeddings, from the untied copy that "
            "`python -m ajet.core.engines.vllm_model MODEL_DIR` writes), with the same dtype"
        )
    return diff
