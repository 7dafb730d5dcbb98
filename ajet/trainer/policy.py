"""Make the engine's model trainable: every weight (full fine-tuning) or LoRA adapters through `peft`.

The inference engine and the trainer share one module in-process: peft injects the LoRA layers into the model's
own modules, so the engine generates with the adapters as soon as they change, with no copy.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from ajet.core.config import LoraConfig


def prepare_policy(
    model: torch.nn.Module, lora: LoraConfig, resume_dir: Path | None = None
) -> torch.nn.Module:
    """The module the optimizer trains. With `resume_dir`, its weights (or adapter) come from the checkpoint."""
    if lora.enabled:
        try:
            from peft import LoraConfig as PeftLoraConfig
            from peft import PeftModel, get_peft_model
        except ImportError:
            raise ImportError("LoRA needs peft: pip install 'ajet[train]'") from None
        if resume_dir is not None:
            return PeftModel.from_pretrained(model, str(resume_dir), is_trainable=True)
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [m for m in lora.target_modules if m not in names]
        if missing:
            raise ValueError(
                f"train.lora.target_modules: {missing} not found in the model; it has e.g. "
                f"{sorted(n for n in names if n.endswith('proj'))[:10]}"
            )
        config = PeftLoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
        )
        return get_peft_model(model, config)
    if resume_dir is not None:
        load_full_weights(model, resume_dir)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def load_full_weights(model: torch.nn.Module, directory: Path) -> None:
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(str(directory), dtype=next(model.parameters()).dtype)
    missing, unexpected = model.load_state_dict(saved.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise ValueError(
            f"checkpoint {directory} does not fit the model: missing {missing}, unexpected {unexpected}"
        )


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen reference policy for the KL penalty (full fine-tuning; LoRA switches its adapters off instead)."""
    reference = copy.deepcopy(model).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference


def merged_for_export(policy: Any) -> Any:
    """A plain transformers model: LoRA adapters merged into the weights, or the model itself."""
    if hasattr(policy, "merge_and_unload"):
        return policy.merge_and_unload()
    return policy
