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
    """`model`'s weights under their Hugging Face checkpoint names, detached and contiguous (safetensors needs
    both). A merged peft model's `...q_proj.base_layer.weight` is the checkpoint's `...q_proj.weight`; adapter
    tensors are dropped. A tied output head (same storage as the embeddings) is left out, as a Hugging Face
    checkpoint does: loaders tie it again."""
    tied = bool(getattr(getattr(model, "config", None), "tie_word_embeddings", False))
    embeddings = model.get_input_embeddings().weight if hasattr(model, "get_input_embeddings") else None
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if "lora_" in name:
            continue
        name = name.replace(".base_layer.", ".")
        is_tied_head = embeddings is not None and tensor.data_ptr() == embeddings.data_ptr()
        if tied and name.endswith("lm_head.weight") and is_tied_head:
            continue
        tensor = tensor.detach()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        out[name] = tensor.contiguous().cpu()
    return out
