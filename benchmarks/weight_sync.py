"""How long a weight push to a real vLLM server takes, full weights vs a LoRA adapter, and what it grows with.

    python benchmarks/weight_sync.py [--repeats 3] [--ranks 8 16 64] [--vllm-python PATH] [--base-url URL]

Starts one vLLM CPU server (python from --vllm-python, default $AJET_VLLM_PYTHON or .venv-vllm/bin/python;
float32, --enforce-eager, --enable-lora up to the largest rank), from the model's untied copy
(`ajet.core.engines.vllm_model`: full-weight reloads need it), and pushes through ajet's own weight syncs:

- `vllm_reload` (full weights): the whole policy written as safetensors to /dev/shm ("write"), then reloaded in
  place by the server through /collective_rpc ("reload"). It grows with the model's bytes.
- `vllm_lora` (adapter): peft's `save_pretrained` of a rank-r adapter on q,k,v,o,gate,up,down ("write"), then
  /v1/load_lora_adapter ("load"). It grows with r (the adapter's bytes are linear in r).

Every push is of new weights (the full policy perturbed by seeded noise; the LoRA B matrices drawn afresh), and
after each one `ajet.trainer.weight_sync.verify.check_served_policy` checks that the server serves exactly them
(greedy completion's log-probs equal to the transformers forward of the pushed policy within 1e-3); that check
is not counted in the push time. The variants run round-robin --repeats times; medians are reported, with the
ratios against LoRA r16 measured in the same run, and against one training step (forward + backward + AdamW of
the full model on --step-batch x --step-len tokens) on the same machine unless --no-train-step.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ajet.core.config import AjetConfig, LoraConfig
from ajet.core.engines.vllm_engine import VLLMEngine, engine_from_config
from ajet.core.engines.vllm_model import untied_model_dir
from ajet.core.engines.vllm_server import VllmServer, free_port, server_argv, server_env
from ajet.core.models import load_model, resolve_model
from ajet.trainer.policy import prepare_policy
from ajet.trainer.weight_sync.verify import check_served_policy
from ajet.trainer.weight_sync.vllm_lora import VllmLoraSync
from ajet.trainer.weight_sync.vllm_reload import VllmReloadSync

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TOLERANCE = 1e-3  # fp32 on both sides (verify.default_tolerance)


def default_vllm_python() -> str:
    return os.environ.get("AJET_VLLM_PYTHON", ".venv-vllm/bin/python")


def start_server(
    python: str, model_dir: Path, lora_rank: int | None, dtype: str, log_dir: Path
) -> VllmServer:
    port = free_port()
    argv = server_argv(
        python=python,
        command=None,
        model_dir=str(model_dir),
        served_name="ajet-policy",
        port=port,
        dtype=dtype,
        max_model_len=2048,
        seed=0,
        enforce_eager=True,
        lora_rank=lora_rank,
    )
    server = VllmServer(
        argv,
        port=port,
        log_path=log_dir / "vllm-server.log",
        env=server_env(lora_rank is not None, {"VLLM_CPU_KVCACHE_SPACE": "1"}),
    )
    started = time.perf_counter()
    server.start(show_progress=False)
    print(
        f"vLLM server healthy on port {port} after {time.perf_counter() - started:.0f} s (log {server.log_path})"
    )
    return server


def connect(model: str, base_url: str, lora_r: int) -> tuple[VLLMEngine, AjetConfig]:
    config = AjetConfig.model_validate(
        {
            "workflow": "unused.py:Unused",
            "model": {"path": model},
            "engine": {"kind": "vllm", "base_url": base_url},
            "train": {"lora": {"enabled": True, "r": lora_r, "target_modules": TARGETS}},
        }
    )
    return engine_from_config(config, show_progress=False), config


def perturbed(model: torch.nn.Module, seed: int, scale: float = 0.02) -> torch.nn.Module:
    policy = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)
    return policy


def lora_policy(base: torch.nn.Module, rank: int, seed: int) -> torch.nn.Module:
    policy = prepare_policy(
        copy.deepcopy(base), LoraConfig(enabled=True, r=rank, alpha=2.0 * rank, target_modules=TARGETS)
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:  # a fresh adapter is zero: give it weights the server must really apply
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
    return policy


def train_step_seconds(model: torch.nn.Module, batch: int, length: int, repeats: int) -> float:
    """Median seconds of one forward + backward + AdamW step of the full model."""
    policy = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-6)
    ids = torch.randint(
        0, policy.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(0)
    )
    times = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        loss = policy(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:  # the first step allocates AdamW's state
            times.append(time.perf_counter() - started)
    return statistics.median(times)


async def run(args: argparse.Namespace, base_url: str) -> None:
    model, _ = load_model(args.model)
    engine, config = connect(args.model, base_url, max(args.ranks))
    full = VllmReloadSync(engine, config)
    lora = VllmLoraSync(engine, config)
    rows: dict[str, list[dict[str, float]]] = {"full": []} | {f"lora r{r}": [] for r in args.ranks}
    version = 0
    try:
        for round_ in range(args.repeats + 1):  # round 0 warms every path up and is not counted
            # back to the base model's route: the last round left requests routed to a LoRA adapter
            version += 1
            async with engine.updating(version, route=engine.served_model):
                pass
            policy = perturbed(model, seed=round_)
            version += 1
            metrics = await full.push(policy, version)
            diff = await check_served_policy(engine, policy, version, TOLERANCE)
            if round_:
                rows["full"].append(metrics | {"verify_diff": diff})
            for rank in args.ranks:
                # adapters on top of what the server now holds as base weights (this round's full push)
                adapted = lora_policy(policy, rank, seed=1000 * round_ + rank)
                version += 1
                metrics = await lora.push(adapted, version)
                diff = await check_served_policy(engine, adapted, version, TOLERANCE)
                if round_:
                    rows[f"lora r{rank}"].append(metrics | {"verify_diff": diff})
                del adapted
            print(f"round {round_}{' (warm-up)' if not round_ else ''}: done, every push verified")
    finally:
        await full.aclose()
        await lora.aclose()
        await engine.aclose()

    del policy
    gc.collect()  # the pushed copies, before the training step's copy, gradients and AdamW state

    def med(name: str, key: str) -> float:
        return statistics.median(m[f"weight_sync/{key}"] for m in rows[name])

    print(f"\n{args.model}, {args.repeats} rounds (medians); every push verified (max |dlogprob| shown)")
    print(
        f"{'push':<10} {'MB':>9} {'total s':>8} {'write s':>8} {'load s':>8} {'max diff':>9}  runs (total s)"
    )
    for name, runs in rows.items():
        total = med(name, "time_s")
        write = med(name, "write_s")
        load = statistics.median(m["weight_sync/time_s"] - m["weight_sync/write_s"] for m in runs)
        listed = ", ".join(f"{m['weight_sync/time_s']:.3f}" for m in runs)
        worst = max(m["verify_diff"] for m in runs)
        print(
            f"{name:<10} {med(name, 'bytes') / 1e6:9.2f} {total:8.3f} {write:8.3f} {load:8.3f} {worst:9.1e}  {listed}"
        )
    baseline = "lora r16" if "lora r16" in rows else f"lora r{args.ranks[0]}"
    print(f"\nratios against {baseline} (same run):")
    for name in rows:
        if name == baseline:
            continue
        per_round = statistics.median(
            a["weight_sync/time_s"] / b["weight_sync/time_s"]
            for a, b in zip(rows[name], rows[baseline], strict=True)
        )
        print(
            f"  {name:<10} time x{med(name, 'time_s') / med(baseline, 'time_s'):.2f} (of medians; per-round "
            f"median x{per_round:.2f}), bytes x{med(name, 'bytes') / med(baseline, 'bytes'):.2f}"
        )
    full_total = med("full", "time_s")
    print(
        f"  full push: write {med('full', 'write_s') / full_total:.0%} of its time, server reload "
        f"{1 - med('full', 'write_s') / full_total:.0%}"
    )
    if not args.no_train_step:
        step_s = train_step_seconds(model, args.step_batch, args.step_len, 3)
        print(
            f"\none training step (full model, {args.step_batch}x{args.step_len} tokens, AdamW): {step_s:.3f} s"
        )
        for name in rows:
            print(f"  {name:<10} push = {med(name, 'time_s') / step_s:.2f} x one training step")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--vllm-python", default=default_vllm_python())
    parser.add_argument(
        "--base-url",
        help="use this running server (started from the untied copy, with "
        "--enable-lora and VLLM_SERVER_DEV_MODE=1) instead of starting one",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 16, 64])
    parser.add_argument("--no-train-step", action="store_true")
    parser.add_argument("--step-batch", type=int, default=4)
    parser.add_argument("--step-len", type=int, default=256)
    args = parser.parse_args()

    torch.manual_seed(0)
    server = None
    if args.base_url is None:
        model_dir = untied_model_dir(resolve_model(args.model))
        log_dir = Path(tempfile.mkdtemp(prefix="ajet-bench-ws-"))
        server = start_server(args.vllm_python, model_dir, max(args.ranks), "float32", log_dir)
    try:
        asyncio.run(run(args, args.base_url or server.base_url))  # type: ignore[union-attr]
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
