"""Checkpoints that resume exactly: the model (Hugging Face safetensors) or LoRA adapter, the optimizer and
scheduler, every RNG state, the data cursor and the step.

Layout: <run_dir>/checkpoints/step-000004/{model/, trainer_state.pt}, and <run_dir>/checkpoints/latest naming
the newest complete one. A checkpoint is written to a temporary directory and renamed into place, and `latest`
is replaced atomically after that, so a run killed at any moment (SIGKILL included) leaves the previous
checkpoint intact and `latest` pointing at a complete one.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

MODEL_DIR = "model"
STATE_FILE = "trainer_state.pt"


@dataclass
class Checkpoint:
    path: Path
    step: int
    state: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


@contextlib.contextmanager
def quiet_transformers_progress() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def save_checkpoint(
    run_dir: Path, step: int, model: Any, tokenizer: Any, state: dict[str, Any], keep: int = 2
) -> Path:
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with quiet_transformers_progress():  # its "Writing model shards" bar would break ajet's own progress bar
        model.save_pretrained(tmp / MODEL_DIR, safe_serialization=True)
    tokenizer.save_pretrained(tmp / MODEL_DIR)
    torch.save({**state, "step": step, "rng": rng_state()}, tmp / STATE_FILE)
    _fsync_tree(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_atomically(root / "latest", final.name)
    _prune(root, keep)
    return final


def latest_checkpoint(run_dir: Path) -> Checkpoint | None:
    root = checkpoints_dir(run_dir)
    pointer = root / "latest"
    if not pointer.exists():
        return None
    path = root / pointer.read_text().strip()
    state = torch.load(
        path / STATE_FILE, weights_only=False
    )  # our own file: RNG states are not plain tensors
    return Checkpoint(path=path, step=int(state["step"]), state=state)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
