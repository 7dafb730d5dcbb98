"""`ajet train --nproc 2` end to end on the tiny model (2 gloo ranks): exact resume after SIGKILL of every rank,
torchrun started directly, a resume with another number of ranks refused; and the train.distributed config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from ajet.core.config import ConfigError, parse_config
from tests.test_trainer import make_config

ROOT = Path(__file__).parents[1]


def ajet(*args: str, launcher: tuple[str, ...] = ("-m", "ajet.cli.main")) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, *launcher, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: torchrun and both ranks, killed together
    )


def finished(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-4000:]
    return output


def config_file(tmp_path: Path, tiny_dir: Path, name: str, nproc: int = 2) -> Path:
    data = make_config(tmp_path, tiny_dir, steps=3, checkpoint_every=1, keep_checkpoints=5)
    data["train"]["distributed"] = {"nproc": nproc}
    data["run_dir"] = str(tmp_path / name)
    data["store"] = str(tmp_path / f"{name}.sqlite")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run_dir / "checkpoints" / "step-000003" / "model" / "model.safetensors")


@pytest.mark.slow
def test_two_ranks_killed_after_the_first_checkpoint_resume_to_the_same_weights(
    tmp_path: Path, tiny_dir: Path
) -> None:
    # Uninterrupted, started by torchrun directly; the config says 1 rank, torchrun's 2 win (and it says so).
    straight = ajet(
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "ajet.cli",
        "train",
        "-c",
        str(config_file(tmp_path, tiny_dir, "straight", nproc=1)),
        launcher=("-m", "torch.distributed.run"),
    )
    assert "torchrun started 2 ranks: training on 2" in finished(straight)
    assert (
        torch.load(tmp_path / "straight/checkpoints/step-000003/trainer_state.pt", weights_only=False)[
            "world_size"
        ]
        == 2
    )

    killed = ajet("train", "--nproc", "2", "-c", str(config_file(tmp_path, tiny_dir, "killed", nproc=1)))
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not latest.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(killed.pid, signal.SIGKILL)  # torchrun and both ranks at once
    killed.wait()
    assert latest.exists() and not (tmp_path / "killed" / "checkpoints" / "step-000003").exists()
    checkpoint = tmp_path / "killed" / "checkpoints" / latest.read_text()
    assert sorted(p.name for p in (checkpoint / "rng").iterdir()) == ["rank-00000.pt", "rank-00001.pt"]

    # Another number of ranks is refused before anything loads.
    refused = ajet("train", "--resume", str(tmp_path / "killed"), "--nproc", "1")
    output, _ = refused.communicate(timeout=300)
    assert refused.returncode == 2, output
    assert "saved by 2 rank(s)" in output and "resume with --nproc 2" in output

    # --resume takes the saved config's nproc (2, from --nproc) and continues exactly.
    output = finished(ajet("train", "--resume", str(tmp_path / "killed")))
    assert "resuming" in output
    expected, got = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def distributed_config(**distributed: Any) -> dict[str, Any]:
    return {"workflow": "flow.py:Flow", "train": {"distributed": distributed}}


def test_distributed_defaults() -> None:
    settings = parse_config(distributed_config()).train.distributed
    assert (settings.nproc, settings.strategy, settings.backend) == (1, "ddp", "auto")
    assert settings.timeout_s >= 3600, "the other ranks wait in a collective while rank 0 runs rollouts"


@pytest.mark.parametrize(
    ("distributed", "model", "message"),
    [
        ({"strategy": "zero3"}, {}, "train.distributed.strategy"),
        ({"nproc": 0}, {}, "train.distributed.nproc"),
        ({"backend": "mpi"}, {}, "train.distributed.backend"),
        ({"timeout_s": 0}, {}, "train.distributed.timeout_s"),
        ({"backend": "nccl"}, {"device": "cpu"}, "train.distributed.backend: nccl needs GPUs"),
        ({"nprocs": 2}, {}, "Did you mean 'nproc'"),
    ],
)
def test_distributed_config_errors_name_the_field(
    distributed: dict[str, Any], model: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**distributed_config(**distributed), "model": model})
