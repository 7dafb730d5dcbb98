"""Checkpoints that resume exactly: the model (Hugging Face safetensors) or LoRA adapter, the optimizer and
scheduler, every RNG state, the data cursor and the step, for one rank or N.

Layout of <run_dir>/checkpoints/step-000004/:
    model/               the full model in Hugging Face format (rank 0 writes it; FSDP gathers it first)
    trainer_state.pt     scheduler, step, data cursor, world_size (rank 0; the same on every rank)
    optimizer/           the optimizer state, torch.distributed.checkpoint (every rank writes its part)
    rng/rank-00000.pt    each rank's python, numpy, torch (and cuda) RNG states
and <run_dir>/checkpoints/latest naming the newest complete one. A checkpoint is written to a temporary
directory and renamed into place, and `latest` is replaced atomically after that, so a run killed at any moment
(SIGKILL included) leaves the previous checkpoint intact and `latest` pointing at a complete one:
    rank 0 creates the temporary directory | barrier | every rank writes | barrier | rank 0 renames
A checkpoint resumes onto the same number of ranks it was saved by (the optimizer state is sharded with FSDP
and the RNG states are per rank). Checkpoints from before this layout (one process, the optimizer state in
trainer_state.pt, one RNG state) still resume.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ajet.trainer.distributed import Ranks

MODEL_DIR = "model"
STATE_FILE = "trainer_state.pt"
OPTIMIZER_DIR = "optimizer"
RNG_DIR = "rng"


@dataclass
class Checkpoint:
    path: Path
    step: int
    state: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def is_adapter(self) -> bool:
        """A LoRA run's checkpoint: `model/` holds the adapter only, not the full weights."""
        return (self.model_dir / "adapter_config.json").exists()

    @property
    def world_size(self) -> int:
        return int(self.state.get("world_size", 1))

    def check_world_size(self, world_size: int) -> None:
        """A checkpoint resumes onto as many ranks as saved it: its optimizer shards and RNG states are per rank."""
        if world_size != self.world_size:
            raise ValueError(
                f"checkpoint {self.path} saved by {self.world_size} rank(s), and this run has {world_size}: "
                f"resume with --nproc {self.world_size}"
            )

    def rng(self, rank: int) -> dict[str, Any]:
        path = self.path / RNG_DIR / f"rank-{rank:05d}.pt"
        if not path.exists() and "rng" in self.state:  # a checkpoint of the one-process layout
            return self.state["rng"]
        return torch.load(path, weights_only=False)  # our own file: RNG states are not plain tensors

    def load_optimizer(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Restore the optimizer state into `optimizer` (every rank calls this: a collective with N ranks).
        One-process checkpoints of the older layout keep it in trainer_state.pt (`TrainingEngine.load_state_dict`)."""
        if not (self.path / OPTIMIZER_DIR).exists():
            return
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

        state = {"optimizer": get_optimizer_state_dict(module, optimizer)}  # the structure to load into
        with one_process_quietly():
            dcp.load(
                state,
                checkpoint_id=str(self.path / OPTIMIZER_DIR),
                no_dist=not torch.distributed.is_initialized(),
            )
        set_optimizer_state_dict(module, optimizer, state["optimizer"])


@contextlib.contextmanager
def one_process_quietly() -> Iterator[None]:
    """DCP warns at every save and load of one process ("torch.distributed is disabled ... assuming the intent is
    to save in a single process"): that is the intent here, so the warning is noise in every run's output."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


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
    run_dir: Path,
    step: int,
    model: Any,
    tokenizer: Any,
    state: dict[str, Any],
    keep: int = 2,
    *,
    training: Any,
    ranks: Ranks | None = None,
) -> Path:
    """Write checkpoint `step` (every rank calls this). `model` is the policy with its full weights (used on
    rank 0 only), `training` the `TrainingEngine` whose optimizer is saved, `state` rank 0's common state."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    ranks = ranks or Ranks()
    root = checkpoints_dir(run_dir)
    final = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.tmp"
    if ranks.master_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / RNG_DIR).mkdir(parents=True)
    ranks.barrier()  # the directory exists for everyone
    optimizer = {"optimizer": get_optimizer_state_dict(training.model, training.optimizer)}
    # a collective: each rank writes its shards (one rank: no process group, the same format)
    with one_process_quietly():
        dcp.save(optimizer, checkpoint_id=str(tmp / OPTIMIZER_DIR), no_dist=ranks.world_size == 1)
    torch.save(rng_state(ranks.device), tmp / RNG_DIR / f"rank-{ranks.rank:05d}.pt")
    if ranks.master_process:
        with (
            quiet_transformers_progress()
        ):  # its "Writing model shards" bar would break ajet's own progress bar
            model.save_pretrained(tmp / MODEL_DIR, safe_serialization=True)
        tokenizer.save_pretrained(tmp / MODEL_DIR)
        torch.save({**state, "step": step, "world_size": ranks.world_size}, tmp / STATE_FILE)
    ranks.barrier()  # every rank's files are written
    if ranks.master_process:
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
    return load_checkpoint(root / pointer.read_text().strip())


def load_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint in directory `path` (<run_dir>/checkpoints/step-NNNNNN)."""
    # our own file: RNG states are not plain tensors
    state = torch.load(path / STATE_FILE, weights_only=False)
    return Checkpoint(path=path, step=int(state["step"]), state=state)


def is_checkpoint_dir(path: Path) -> bool:
    """Whether `path` looks like one checkpoint (its model and trainer state), not a run directory."""
    return (path / STATE_FILE).is_file() and (path / MODEL_DIR).is_dir()


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
