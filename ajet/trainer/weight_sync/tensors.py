"""The policy's weights as the plain Hugging Face state dict an inference server loads: LoRA deltas added when the
policy is a peft model, a tied head written out, in the server's dtype."""

from __future__ import annotations

from typing import Any

import torch


def policy_state_dict(policy: Any, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The weights a server should serve for `policy`: its own, or for a peft LoRA policy the base weights plus
    each adapter's delta (B @ A * scale), computed on the side. Not peft's merge_adapter/unmerge_adapter: that
    round trip is not bit-exact, so every push would nudge the frozen base weights the trainer keeps training on."""
    if not hasattr(policy, "get_base_model"):
        return hf_state_dict(policy, dtype)
    base = policy.get_base_model()
    tensors = hf_state_dict(base)
    for name, module in base.named_modules():
        if not (hasattr(module, "get_delta_weight") and hasattr(module, "base_layer")):
            continue
        key = f"{name}.weight"
        for adapter in module.active_adapters:
            if adapter in getattr(module, "lora_A", {}) and not getattr(module, "merged", False):
                delta = module.get_delta_weight(adapter).detach().to("cpu", tensors[key].dtype)
                tensors[key] = tensors[key] + delta
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    return tensors


def hf_state_dict(model: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """`model`'s weights under their Hugging Face checkpoint names, copied (never views of the model),
    contiguous and on the CPU. A peft model's `...q_proj.base_layer.weight` is the checkpoint's
    `...q_proj.weight`; adapter tensors are dropped. A tied output head is written out as its own copy of the
    embeddings: a server that gets full-weight pushes is started untied (see `ajet.core.engines.vllm_model`)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if "lora_" in name:
            continue
        name = name.replace(".base_layer.", ".")
        # A copy, never a view: merged LoRA weights are unmerged in place right after this, and the
        # optimizer keeps updating full weights while a push is being written.
        copied = tensor.detach().to(
            device="cpu", dtype=dtype if tensor.is_floating_point() else None, copy=True
        )
        out[name] = copied.contiguous()
    return out
