"""Export a run's latest checkpoint as a plain Hugging Face model directory (LoRA merged)."""

from __future__ import annotations

from pathlib import Path

from ajet.trainer.checkpoint import Checkpoint, latest_checkpoint
from ajet.trainer.run_files import load_run_config


class ExportError(RuntimeError):
    pass


def export_run(run_dir: Path, out: Path) -> Path:
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise ExportError(
            f"{run_dir} has no checkpoint; train first (checkpoints go to <run_dir>/checkpoints)"
        )
    base = load_run_config(run_dir).model if checkpoint.is_adapter else None
    return export_checkpoint(
        checkpoint, out, base_model=base.path if base else None, dtype=base.dtype if base else "float32"
    )


def export_checkpoint(
    checkpoint: Checkpoint, out: Path, *, base_model: str | None = None, dtype: str = "float32"
) -> Path:
    """Write `checkpoint`'s model to `out` as a Hugging Face directory. A LoRA checkpoint holds only the
    adapter: it is merged into `base_model` (the run's model.path, loaded in `dtype`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = checkpoint.model_dir
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if checkpoint.is_adapter:
        if base_model is None:
            raise ExportError(f"{checkpoint.path} is a LoRA adapter: merging it needs its base model")
        from peft import PeftModel

        from ajet.core.models import load_model

        base, _ = load_model(base_model, dtype=dtype)
        model = PeftModel.from_pretrained(base, str(model_dir)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
