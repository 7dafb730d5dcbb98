"""Helpers shared by the weight-sync tests (tests/test_weight_sync*.py, tests/vllm/)."""

from __future__ import annotations

import copy
from typing import Any

import torch


def perturbed(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """A copy of `model` with every weight moved by seeded noise, as after a training step (`model` stays)."""
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return other


def offline_vllm_engine(tokenizer: Any, **overrides: Any) -> Any:
    """A real VLLMEngine pointed at a port nothing listens on: for what is checked before any request is sent."""
    from ajet.core.engines.vllm_engine import VLLMEngine

    settings: dict[str, Any] = {
        "base_url": "http://127.0.0.1:9/v1",
        "tokenizer": tokenizer,
        "served_model": "m",
        "max_model_len": 64,
        "vocab_size": 100,
        "eos_ids": [2],
    }
    return VLLMEngine(**{**settings, **overrides})
