"""The policy's weights as the plain Hugging Face state dict an inference server loads: LoRA merged when the
policy is a peft model, tied weights written once, in the server's dtype."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


@contextlib.contextmanager
def merged_lora(policy: Any) -> Iterator[torch.nn.Module]:
    """The base model with the LoRA adapters merged into its weights for the duration (unmerged after, so
    training goes on exactly where it was); the model itself when it has no adapters."""
    if not hasattr(policy, "merge_adapter"):
        yield policy
        return
    policy.merge_adapter()
    try:
        yield policy.get_base_model()
    finally:
        policy.unmerge_adapter()


def hf_state_dict(model: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """`model`'s weights under their Hugging Face checkpoint names, detached, contiguous and on the CPU. A merged
    peft model's `...q_proj.base_layer.weight` is the checkpoint's `...q_proj.weight`; adapter tensors are
    dropped. A tied output head is written out as its own copy of the embeddings: the server ajet launches is
    started untied (see `ajet.core.engines.vllm_model`), and safetensors refuses two names for one storage."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        if "lora_" in name:
            continue
        name = name.replace(".base_layer.", ".")
        tensor = tensor.detach()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensor = tensor.contiguous().cpu()
        if tensor.data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        out[name] = tensor
    return out
