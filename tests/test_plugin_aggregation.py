"""An aggregation a plugin registers has every power a built-in has: it trains in a real `ajet train`, across
micro-batches exactly, and one registered without its denominator is a one-line config error before any
rollout (it used to crash the first step with "no denominator known")."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ajet.core.models import build_tiny_model
from ajet.trainer.algorithms.registry import (
    AGGREGATION_DENOMINATORS,
    AGGREGATIONS,
    install_plugin_algorithms,
)
from ajet.trainer.engine import LossSettings, TrainingEngine
from ajet.trainer.samples import Sample
from tests.test_trainer import make_config

ROOT = Path(__file__).parents[1]

PLUGIN = '''
import torch
from ajet.core.hookspecs import hookimpl


def sequence_sum(loss, mask, *, sample_weights=None, normalizer=None):
    """Each sequence's token sum, weighted, over the number of sequences: Dr. GRPO without norm_len."""
    w = torch.ones(mask.shape[0]) if sample_weights is None else sample_weights
    total = (w * (loss * mask).sum(-1)).sum()
    count = (w * (mask.sum(-1) > 0)).sum() if normalizer is None else normalizer
    return total / torch.clamp(torch.as_tensor(count, dtype=total.dtype), min=1.0)


def sequences(mask, sample_weights=None):
    w = torch.ones(mask.shape[0]) if sample_weights is None else sample_weights
    return (w * (mask.sum(-1) > 0)).sum()


@hookimpl
def register_algorithms(register):
    register("aggregation", "sequence_sum", sequence_sum)
    if WITH_DENOMINATOR:
        register("aggregation_denominator", "sequence_sum", sequences)
'''


def write_plugin(root: Path, *, with_denominator: bool) -> dict[str, str]:
    """An installed distribution with an `ajet` entry point; returns the environment that sees it."""
    (root / "ajet_agg_plugin.py").write_text(f"WITH_DENOMINATOR = {with_denominator}\n" + PLUGIN)
    info = root / "ajet_agg_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ajet-agg-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ajet]\nagg = ajet_agg_plugin\n")
    (info / "RECORD").write_text("")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(ROOT)])}


def train_one_step(tmp_path: Path, tiny_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    config = make_config(tmp_path, tiny_dir, steps=1, aggregation="sequence_sum", skip_zero_advantage=False)
    config["store"] = None
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "ajet.cli.main", "train", "-c", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )


def test_a_plugin_aggregation_trains_in_a_real_ajet_train(tmp_path: Path, tiny_dir: Path) -> None:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    result = train_one_step(tmp_path, tiny_dir, write_plugin(plugin, with_denominator=True))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    (step,) = [row for row in rows if row.get("step") == 1 and "train/loss" in row]
    assert step["train/grad_norm"] > 0  # it trained


def test_a_plugin_aggregation_without_its_denominator_is_a_config_error(
    tmp_path: Path, tiny_dir: Path
) -> None:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    result = train_one_step(tmp_path, tiny_dir, write_plugin(plugin, with_denominator=False))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert "train.aggregation" in output and "aggregation_denominator" in output, output
    assert (
        not (tmp_path / "run" / "metrics.jsonl").exists()
        or "rollout/episodes" not in (tmp_path / "run" / "metrics.jsonl").read_text()
    )  # refused before any rollout


def _samples() -> list[Sample]:
    rows = [([5, 6, 7, 8], [0, 0, 1, 1]), ([5, 9, 10, 11, 12, 13], [0, 1, 1, 0, 1, 1]), ([3, 4], [0, 1])]
    return [
        Sample(
            input_ids=ids,
            loss_mask=mask,
            old_logprobs=[-1.0 if m else 0.0 for m in mask],
            advantage=(-1.0) ** i,
            episode_id=f"e{i}",
            group_id="g",
            agent_name="a",
            target_tag="a",
            reward=0.0,
        )
        for i, (ids, mask) in enumerate(rows)
    ]


@pytest.fixture
def plugin_aggregation(tmp_path: Path) -> Iterator[None]:
    """The plugin's functions, installed in this process as the trainer installs them."""
    write_plugin(tmp_path, with_denominator=True)
    spec = importlib.util.spec_from_file_location("ajet_agg_plugin", tmp_path / "ajet_agg_plugin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    install_plugin_algorithms(
        {
            "aggregation:sequence_sum": module.sequence_sum,
            "aggregation_denominator:sequence_sum": module.sequences,
        }
    )
    yield
    AGGREGATIONS.pop("sequence_sum", None)
    AGGREGATION_DENOMINATORS.pop("sequence_sum", None)


def test_a_plugin_aggregation_is_exact_across_micro_batches(plugin_aggregation: object) -> None:
    """One micro-batch per sample gives the same gradient as one micro-batch for all of them."""
    seen = []
    for budget in (4096, 1):
        model, _ = build_tiny_model(seed=2)
        engine = TrainingEngine(model, pad_id=0, micro_batch_tokens=budget)
        metrics = engine.train_step(_samples(), LossSettings(policy_loss="pg", aggregation="sequence_sum"))
        assert metrics["micro_batches"] == (1.0 if budget > 1 else 3.0)
        seen.append((metrics["loss"], metrics["grad_norm"]))
    assert seen[0] == pytest.approx(seen[1], rel=1e-5)
