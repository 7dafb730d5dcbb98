"""Run by tests/test_distributed.py, once as one plain process and once under torchrun with 2 ranks: two steps
of `ppo_updates` on the tiny model over a fixed set of samples, then the final weights and the metrics written
to OUT (rank 0). The two runs must agree.

    python tests/dist_parity_worker.py OUT [--strategy ddp|fsdp] [--lora]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from ajet.core.config import parse_config
from ajet.core.models import build_tiny_model
from ajet.trainer.distributed import full_state_dict, init_ranks, is_sharded
from ajet.trainer.engine import LossSettings, OptimizerSettings, TrainingEngine
from ajet.trainer.loop import ppo_updates
from ajet.trainer.policy import prepare_policy
from ajet.trainer.samples import Sample


def samples() -> list[Sample]:
    """7 samples (not a multiple of 2) of unequal lengths, in GRPO groups that share a prompt."""
    rng = random.Random(0)
    out = []
    for group in range(3):
        prompt = [rng.randrange(100, 4000) for _ in range(6 + 3 * group)]
        for member in range(3 if group < 2 else 1):
            rest = [rng.randrange(100, 4000) for _ in range(5 + 4 * member + 2 * group)]
            out.append(
                Sample(
                    input_ids=prompt + rest,
                    loss_mask=[0] * len(prompt) + [1] * len(rest),
                    old_logprobs=[0.0] * len(prompt) + [-rng.uniform(5, 12) for _ in rest],
                    advantage=rng.choice([-1.0, 0.5, 1.0]),
                    episode_id=f"e{group}-{member}",
                    group_id=f"g{group}",
                    agent_name="a",
                    target_tag="a",
                    reward=0.0,
                    episode_num_samples=1 + member % 2,
                    temperatures=[1.0] * (len(prompt) + len(rest)),
                )
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--lora", action="store_true")
    args = parser.parse_args()
    config = parse_config(
        {"workflow": "unused.py:Unused", "train": {"distributed": {"strategy": args.strategy}}}
    )
    ranks = init_ranks(config)
    model, _ = build_tiny_model(seed=0)
    lora = config.train.lora.model_copy(update={"enabled": args.lora, "r": 4})
    torch.manual_seed(0)  # LoRA's initial adapters
    policy = prepare_policy(model, lora)
    training = TrainingEngine(
        policy,
        pad_id=0,
        optimizer=OptimizerSettings(lr=1e-4, grad_clip=1.0),
        micro_batch_tokens=48,  # several micro-batches per rank, a different number on each
        ranks=ranks,
        strategy=args.strategy,
    )
    loss = LossSettings(
        kl_coef=0.05 if args.lora else 0.0
    )  # LoRA: the reference is the adapters switched off
    data = samples()
    # step 1: 2 mini-batches (4 and 3 samples); step 2: 4 mini-batches, the last of 1 sample (a rank gets none)
    metrics = [
        ppo_updates(training, data, loss, ppo_epochs=1, mini_batches=2, seed=1),
        ppo_updates(training, data, loss, ppo_epochs=1, mini_batches=4, seed=2),
    ]
    weights = full_state_dict(training.model) if is_sharded(training.model) else training.model.state_dict()
    if ranks.master_process:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"weights": weights, "metrics": metrics, "world_size": ranks.world_size}, args.out)
    ranks.close()


if __name__ == "__main__":
    main()
