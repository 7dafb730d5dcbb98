"""Data-parallel training: `shard_by_tokens`, and 2 gloo ranks (real processes under torchrun) training to the
same weights and metrics as one process on the same samples, with DDP and FSDP2, full and LoRA."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ajet.trainer.distributed import Ranks, shard_by_tokens

ROOT = Path(__file__).parents[1]
WORKER = ROOT / "tests" / "dist_parity_worker.py"


def test_shard_by_tokens_balances_tokens_longest_first() -> None:
    # lengths 10, 9, 8, 7, 1 (indices 0..4): 10 -> r0; 9 -> r1; 8 -> r1 (9 < 10); 7 -> r0 (10 < 17);
    # 1 -> r0 (17 = 17: the lower rank)
    assert shard_by_tokens([10, 9, 8, 7, 1], 2) == [[0, 3, 4], [1, 2]]  # 18 and 17 tokens
    # 3 ranks: 10 -> r0, 9 -> r1, 8 -> r2, 7 -> r2 (8 is least), 1 -> r1 (9 < 10 < 15)
    assert shard_by_tokens([10, 9, 8, 7, 1], 3) == [[0], [1, 4], [2, 3]]


def test_shard_by_tokens_ties_and_empty_ranks() -> None:
    assert shard_by_tokens([4, 4, 4, 4], 2) == [[0, 2], [1, 3]]  # equal lengths: by index, alternating
    assert shard_by_tokens([5], 2) == [[0], []]  # fewer samples than ranks: rank 1 gets none
    assert shard_by_tokens([], 2) == [[], []]
    assert shard_by_tokens([3, 1, 2], 1) == [[0, 1, 2]]
    with pytest.raises(ValueError, match="world_size"):
        shard_by_tokens([1], 0)


def test_one_rank_collectives_return_their_input() -> None:
    ranks = Ranks()
    assert ranks.master_process and ranks.world_size == 1
    assert ranks.all_reduce_sum([1.5, 2]) == [1.5, 2.0]
    assert ranks.all_reduce_max([3]) == [3.0]
    assert ranks.broadcast_object({"a": 1}) == {"a": 1}
    ranks.barrier()
    ranks.close()


def run_worker(out: Path, nproc: int, *flags: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    launcher = (
        [] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    )
    done = subprocess.run(
        [sys.executable, *launcher, str(WORKER), str(out), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize(
    "flags",
    [(), ("--lora",), ("--strategy", "fsdp"), ("--strategy", "fsdp", "--lora")],
    ids=["ddp", "ddp-lora", "fsdp", "fsdp-lora"],
)
def test_two_ranks_train_to_the_weights_and_metrics_of_one_process(
    tmp_path: Path, flags: tuple[str, ...]
) -> None:
    one = run_worker(tmp_path / "one.pt", 1, *flags)
    two = run_worker(tmp_path / "two.pt", 2, *flags)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["weights"].keys() == two["weights"].keys()
    for name, expected in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], expected, atol=1e-5, rtol=0, msg=name)
    for step_one, step_two in zip(one["metrics"], two["metrics"], strict=True):
        for name in ("train/loss", "train/entropy", "train/grad_norm", "train/policy/ratio_max"):
            assert step_two[name] == pytest.approx(step_one[name], rel=1e-5, abs=1e-6), name
        for name in ("train/trained_tokens", "train/train_tokens"):
            assert step_two[name] == step_one[name], name  # token counts are exact
        if "--lora" in flags:
            assert step_two["train/kl"] == pytest.approx(step_one["train/kl"], rel=1e-4, abs=1e-7)


def test_a_one_process_checkpoint_of_the_older_layout_still_resumes(tmp_path: Path) -> None:
    from ajet.trainer.checkpoint import Checkpoint, rng_state

    older = Checkpoint(path=tmp_path, step=3, state={"step": 3, "rng": rng_state(), "engine": {}})
    assert older.world_size == 1
    older.check_world_size(1)
    with pytest.raises(ValueError, match="resume with --nproc 1"):
        older.check_world_size(2)
    assert older.rng(0)["python"] == older.state["rng"]["python"]  # its one RNG state, in trainer_state.pt
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    older.load_optimizer(model, optimizer)  # no optimizer/ directory: TrainingEngine.load_state_dict has it
    assert optimizer.state_dict()["state"] == {}


async def test_shared_module_sync_copies_a_policy_that_is_not_the_engines_module() -> None:
    """With FSDP the engine keeps its own module: a push copies rank 0's gathered full copy into it."""
    from ajet.core.engines.transformers_engine import TransformersEngine
    from ajet.core.models import build_tiny_model
    from ajet.trainer.weight_sync.shared_module import SharedModuleSync

    served, tokenizer = build_tiny_model(seed=0)
    trained, _ = build_tiny_model(seed=1)
    engine = TransformersEngine(served, tokenizer)
    try:
        metrics = await SharedModuleSync(engine, None).push(trained, version=4)
    finally:
        engine.close()
    assert engine.version == 4 and metrics["weight_sync/bytes"] > 0
    for name, tensor in trained.state_dict().items():
        assert torch.equal(served.state_dict()[name], tensor), name
