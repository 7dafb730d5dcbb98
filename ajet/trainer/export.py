"""Export a run's latest checkpoint as a plain Hugging Face model directory (LoRA merged)."""

from __future__ import annotations

from pathlib import Path

from ajet.trainer.checkpoint import latest_checkpoint
from ajet.trainer.run_files import load_run_config


class ExportError(RuntimeError):
    pass


def export_run(run_dir: Path, out: Path) -> Path:
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise ExportError(
            f"{run_dir} has no checkpoint; train first (checkpoints go to <run_dir>/checkpoints)"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = checkpoint.model_dir
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if (model_dir / "adapter_config.json").exists():
        from peft import PeftModel

        from ajet.core.models import load_model

        config = load_run_config(run_dir)
        base, _ = load_model(config.model.path, dtype=config.model.dtype)
        model = PeftModel.from_pretrained(base, str(model_dir)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
