"""The training processes (ranks) of a data-parallel run: who am I, how many are we, and the few collectives the
trainer uses, all from torch.distributed.

    rank 0 (master_process)      rollouts, samples, advantages, logging, validation, checkpoint files
    every rank                   its share of each mini-batch's forward/backward; gradients averaged over ranks

The ranks come from the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). One
process without that environment is the same code with world_size 1: the collectives below return their input,
so the loop has no `if distributed:` branches.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ajet.core.config import AjetConfig

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def master_process(self) -> bool:
        """Rank 0: the one that runs rollouts, logs, validates and writes checkpoint files."""
        return self.rank == 0

    # -- collectives (no-ops with one rank) --------------------------------------------------------------------

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of `values` over the ranks (every rank passes the same number of values)."""
        return self._all_reduce(values, dist.ReduceOp.SUM)

    def all_reduce_max(self, values: Sequence[float]) -> list[float]:
        """Element-wise maximum of `values` over the ranks."""
        return self._all_reduce(values, dist.ReduceOp.MAX)

    def _all_reduce(self, values: Sequence[float], op: Any) -> list[float]:
        if self.world_size == 1:
            return [float(v) for v in values]
        # float64: token counts and loss sums stay exact enough that 1 and N ranks log the same numbers
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self._collective_device)
        dist.all_reduce(tensor, op=op)
        return tensor.tolist()

    def broadcast_object(self, obj: T | None) -> T:
        """Rank 0's `obj` on every rank (pickled; the others pass None)."""
        if self.world_size == 1:
            return obj  # type: ignore[return-value]
        box = [obj if self.master_process else None]
        dist.broadcast_object_list(box, src=0, device=self._collective_device)
        return box[0]  # type: ignore[return-value]

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.barrier()  # no rank tears its connections down while another still uses them
            dist.destroy_process_group()

    @property
    def _collective_device(self) -> torch.device:
        # NCCL only moves CUDA tensors; gloo only CPU ones.
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def env_world_size() -> int | None:
    """WORLD_SIZE as torchrun set it, or None when this process was not started by a launcher."""
    value = os.environ.get("WORLD_SIZE")
    return int(value) if value else None


def init_ranks(config: AjetConfig) -> Ranks:
    """This process's place in the run, from torchrun's environment (one rank without it). With more than one
    rank, joins the process group (train.distributed.backend, timeout train.distributed.timeout_s) and, on
    GPUs, picks cuda:LOCAL_RANK."""
    world_size = env_world_size() or 1
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(config.model.device)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    ranks = Ranks(rank=rank, world_size=world_size, local_rank=local_rank, device=device)
    if world_size > 1 and not dist.is_initialized():
        settings = config.train.distributed
        backend = settings.backend
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            timeout=datetime.timedelta(seconds=settings.timeout_s),
            device_id=device if backend == "nccl" else None,
        )
    return ranks


def shard_by_tokens(lengths: Sequence[int], world_size: int) -> list[list[int]]:
    """Split sample indices over `world_size` ranks so that each gets about the same number of tokens: longest
    first, each to the rank with the fewest tokens so far (longest-processing-time greedy; ties go to the lower
    rank). Every rank computes the same split from the same lengths. A rank may get nothing (fewer samples
    than ranks). Each rank's indices are in ascending order."""
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, not {world_size}")
    loads = [0] * world_size
    shards: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        target = min(range(world_size), key=lambda r: (loads[r], r))
        shards[target].append(index)
        loads[target] += lengths[index]
    return [sorted(shard) for shard in shards]


def wrap_for_training(model: torch.nn.Module, ranks: Ranks, strategy: str) -> torch.nn.Module:
    """The module to run forward/backward through: `model` itself with one rank; DDP around it, or `model`
    sharded in place by FSDP2 (`fully_shard` on each decoder layer, then on the whole)."""
    if ranks.world_size == 1:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [ranks.device.index] if ranks.device.type == "cuda" else None
        # DDP broadcasts rank 0's parameters here: every rank starts from exactly the same weights.
        return DistributedDataParallel(model, device_ids=device_ids)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # fully_shard keeps each rank's own values (DDP would broadcast rank 0's): start every rank from rank
        # 0's weights, so freshly initialised LoRA adapters are the same everywhere.
        with torch.no_grad():
            for tensor in model.state_dict().values():
                dist.broadcast(tensor, src=0)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        layer_classes = set(getattr(base, "_no_split_modules", None) or [])
        for module in model.modules():
            if type(module).__name__ in layer_classes:
                fully_shard(module)
        fully_shard(model)
        return model
    raise ValueError(f"train.distributed.strategy: unknown {strategy!r}; write ddp or fsdp")


def unwrapped(module: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP wrapper (FSDP2 shards the model in place: nothing to unwrap)."""
    return getattr(module, "module", module) if type(module).__name__ == "DistributedDataParallel" else module


def is_sharded(module: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def full_state_dict(module: torch.nn.Module) -> dict[str, Any]:
    """A sharded module's full weights on rank 0's CPU (empty on the others); a collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
