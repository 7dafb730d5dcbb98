"""The vLLM engine against a real vLLM server (SmolLM2-135M-Instruct, float32, eager): the same token ids and
log-probs as the transformers engine, the log-prob contract, and pushes that make the server serve exactly the
trainer's policy. The server is started once for the module (see conftest.py)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
import torch

from ajet.core.config import LoraConfig
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.types import Completion, SamplingParams
from ajet.trainer.engine import TrainingEngine
from ajet.trainer.policy import prepare_policy
from ajet.trainer.samples import Sample
from ajet.trainer.weight_sync.verify import check_served_policy
from ajet.trainer.weight_sync.vllm_lora import VllmLoraSync
from ajet.trainer.weight_sync.vllm_reload import VllmReloadSync
from tests.weights import perturbed

QUESTIONS = ["What is 2+3?", "Name a colour.", "Write a haiku about the sea.", "Say hi to Ada."]


def _prompts(tokenizer: Any) -> list[list[int]]:
    return [
        list(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": q}], add_generation_prompt=True, return_dict=False
            )
        )
        for q in QUESTIONS
    ]


async def _both(
    vllm: Any, local: TransformersEngine, prompts: list[list[int]], sampling: SamplingParams
) -> Any:
    served = await asyncio.gather(*[vllm.generate(p, sampling) for p in prompts])
    reference = await asyncio.gather(*[local.generate(p, sampling) for p in prompts])
    return served, reference


@pytest.fixture(scope="module")
def smollm2(smollm2_model_and_tokenizer: tuple[Any, Any]) -> tuple[Any, Any]:
    return smollm2_model_and_tokenizer


async def test_greedy_ids_and_logprobs_match_the_transformers_engine(vllm_engine: Any, smollm2: Any) -> None:
    model, tokenizer = smollm2
    local = TransformersEngine(model, tokenizer)
    try:
        served, reference = await _both(
            vllm_engine, local, _prompts(tokenizer), SamplingParams(temperature=0, max_tokens=32)
        )
    finally:
        local.close()
    for s, r in zip(served, reference, strict=True):
        assert s.ids == r.ids
        assert s.text == r.text and s.finish_reason == r.finish_reason
        assert max(abs(a - b) for a, b in zip(s.logprobs, r.logprobs, strict=True)) < 1e-3


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.3])
async def test_recorded_logprobs_are_the_trainers_recompute(
    vllm_engine: Any, smollm2: Any, temperature: float
) -> None:
    """The log-prob contract: what vLLM records is what the trainer recomputes, at the call's temperature."""
    model, tokenizer = smollm2
    sampling = SamplingParams(temperature=temperature, max_tokens=24, seed=11)
    prompts = _prompts(tokenizer)
    completions: list[Completion] = await asyncio.gather(
        *[vllm_engine.generate(p, sampling) for p in prompts]
    )
    samples = []
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        n = len(completion.ids)
        samples.append(
            Sample(
                input_ids=prompt + completion.ids,
                loss_mask=[0] * len(prompt) + [1] * n,
                old_logprobs=[0.0] * len(prompt) + completion.logprobs,
                advantage=0.0,
                episode_id=f"e{i}",
                group_id="g",
                agent_name="a",
                target_tag="a",
                reward=0.0,
                temperatures=[1.0] * len(prompt) + [temperature if temperature > 0 else 1.0] * n,
            )
        )
    recomputed = TrainingEngine(model, pad_id=tokenizer.pad_token_id).recompute_logprobs(samples)
    worst = max(
        abs(a - b)
        for sample, mine in zip(samples, recomputed, strict=True)
        for a, b, m in zip(sample.old_logprobs, mine, sample.loss_mask, strict=True)
        if m
    )
    assert worst < 1e-3, f"recorded vs recomputed log-probs differ by {worst}"


async def test_stop_strings_seeds_and_budgets_behave_as_on_the_transformers_engine(
    vllm_engine: Any, smollm2: Any
) -> None:
    model, tokenizer = smollm2
    prompts = _prompts(tokenizer)
    local = TransformersEngine(model, tokenizer)
    try:
        stop = SamplingParams(temperature=0, max_tokens=40, stop=["sea", "\n"])
        served, reference = await _both(vllm_engine, local, prompts, stop)
    finally:
        local.close()
    assert [(s.ids, s.text, s.finish_reason) for s in served] == [
        (r.ids, r.text, r.finish_reason) for r in reference
    ]
    assert any(s.finish_reason == "stop" and s.ids[-1] != 2 for s in served), (
        "a stop string ended some completion"
    )
    seeded = SamplingParams(temperature=1.0, max_tokens=16, seed=123)
    first, again = (
        await vllm_engine.generate(prompts[2], seeded),
        await vllm_engine.generate(prompts[2], seeded),
    )
    other = await vllm_engine.generate(prompts[2], seeded.model_copy(update={"seed": 124}))
    assert first.ids == again.ids and first.logprobs == again.logprobs
    assert other.ids != first.ids
    short = await vllm_engine.generate(prompts[2], SamplingParams(temperature=0, max_tokens=3))
    assert len(short.ids) == 3 and short.finish_reason == "length"


async def test_a_full_push_serves_exactly_the_trainers_policy(vllm_engine: Any, smollm2: Any) -> None:
    model, tokenizer = smollm2
    config = _config(vllm_engine)
    sync = VllmReloadSync(vllm_engine, config)
    prompts = _prompts(tokenizer)
    greedy = SamplingParams(temperature=0, max_tokens=24)
    before = await asyncio.gather(*[vllm_engine.generate(p, greedy) for p in prompts])
    start = vllm_engine.version
    policy = perturbed(model, scale=0.02)
    try:
        metrics = await sync.push(policy, start + 1)
        assert metrics["weight_sync/bytes"] > 5e8  # every weight, the head included (untied copy)
        local = TransformersEngine(policy, tokenizer)
        try:
            served, reference = await _both(vllm_engine, local, prompts, greedy)
        finally:
            local.close()
        assert [s.ids for s in served] == [r.ids for r in reference], "greedy ids of the pushed weights"
        assert [s.ids for s in served] != [b.ids for b in before], "the push changed what is served"
        assert {s.model_version for s in served} == {start + 1}
        assert await check_served_policy(vllm_engine, policy, start + 1, tolerance=1e-3) < 1e-3
    finally:
        await sync.push(model, start + 2)  # the original weights back, for the other tests
        await sync.aclose()
    after = await asyncio.gather(*[vllm_engine.generate(p, greedy) for p in prompts])
    assert [a.ids for a in after] == [b.ids for b in before]
    assert (
        max(
            abs(x - y)
            for a, b in zip(after, before, strict=True)
            for x, y in zip(a.logprobs, b.logprobs, strict=True)
        )
        < 1e-5
    )


async def test_a_push_is_not_undone_by_the_servers_prefix_cache(vllm_engine: Any, smollm2: Any) -> None:
    """A long prompt served before a push leaves its key/values in vLLM's prefix cache; served again after the
    push, it must be recomputed with the new weights, not read back from the old ones."""
    model, tokenizer = smollm2
    story = " ".join(f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(40))
    prompt = list(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": story + " How many lines?"}],
            add_generation_prompt=True,
            return_dict=False,
        )
    )
    assert len(prompt) > 500  # several cache blocks
    greedy = SamplingParams(temperature=0, max_tokens=8)
    await vllm_engine.generate(prompt, greedy)  # fills the prefix cache with version-0 key/values
    start = vllm_engine.version
    policy = perturbed(model, scale=0.02)
    sync = VllmReloadSync(vllm_engine, _config(vllm_engine))
    try:
        await sync.push(policy, start + 1)
        served = await vllm_engine.generate(prompt, greedy)
        local = TransformersEngine(policy, tokenizer)
        try:
            reference = await local.generate(prompt, greedy)
        finally:
            local.close()
        assert served.ids == reference.ids
        assert max(abs(a - b) for a, b in zip(served.logprobs, reference.logprobs, strict=True)) < 1e-3
    finally:
        await sync.push(model, start + 2)
        await sync.aclose()


async def test_a_lora_push_serves_the_adapter(vllm_engine: Any, smollm2: Any) -> None:
    model, tokenizer = smollm2
    sync = VllmLoraSync(vllm_engine, _config(vllm_engine))
    policy = prepare_policy(
        copy.deepcopy(model), LoraConfig(enabled=True, r=8, target_modules=["q_proj", "v_proj"])
    )
    prompts = _prompts(tokenizer)
    greedy = SamplingParams(temperature=0, max_tokens=24)
    start = vllm_engine.version
    try:
        for step in (1, 2):
            with torch.no_grad():
                for name, parameter in policy.named_parameters():
                    if "lora_B" in name:
                        parameter.normal_(0, 0.05)
            metrics = await sync.push(policy, start + step)
            assert metrics["weight_sync/bytes"] < 1e7  # the adapter, not the model
            assert vllm_engine.route.endswith(f"-v{start + step}")
            local = TransformersEngine(policy, tokenizer)
            try:
                served, reference = await _both(vllm_engine, local, prompts, greedy)
            finally:
                local.close()
            assert [s.ids for s in served] == [r.ids for r in reference]
            assert {s.model_version for s in served} == {start + step}
        listed = [m["id"] for m in (await vllm_engine.get("/v1/models"))["data"]]
        assert vllm_engine.route in listed and not any(
            name.endswith(f"-v{start + 1}") for name in listed
        )  # unloaded
    finally:
        await vllm_engine_back_to_base(vllm_engine, start + 3)
        await sync.aclose()


async def test_a_push_waits_for_running_completions(vllm_engine: Any, smollm2: Any) -> None:
    """A completion running when the push closes the gate finishes on the old version before the swap; one that
    arrives while the gate is closed waits and is served by the new version."""
    model, tokenizer = smollm2
    prompt = _prompts(tokenizer)[2]
    start = vllm_engine.version
    order: list[str] = []

    async def generate(max_tokens: int, label: str) -> Completion:
        completion = await vllm_engine.generate(
            prompt, SamplingParams(temperature=1.0, max_tokens=max_tokens, seed=1)
        )
        order.append(label)
        return completion

    sync = VllmReloadSync(vllm_engine, _config(vllm_engine))
    try:
        # The weights are written before the long completion starts: a push writes them first and only then
        # closes the gate, and on a busy machine the write alone can outlast any completion (CI saw that).
        target = sync.directory / f"v{start + 1}"
        await asyncio.to_thread(sync._write, model, target)
        long = asyncio.create_task(generate(400, "long"))
        while vllm_engine.active_requests == 0:
            await asyncio.sleep(0.01)

        async def push() -> None:
            await vllm_engine.load_weights(str(target), start + 1)  # the push's second half: gate, reload
            order.append("push")

        pushing = asyncio.create_task(push())
        while not vllm_engine.pushing:
            await asyncio.sleep(0.01)
        assert not long.done(), "make the long completion longer: it ended before the push closed the gate"
        late = asyncio.create_task(generate(4, "late"))
        running, arrived = await long, await late
        await pushing
        assert running.model_version == start and arrived.model_version == start + 1
        assert order[0] == "long" and sorted(order) == ["late", "long", "push"]  # the swap waited for "long"
    finally:
        await sync.aclose()


def _config(engine: Any) -> Any:
    from ajet.core.config import AjetConfig

    return AjetConfig.model_validate(
        {
            "workflow": "f.py:F",
            "engine": {"kind": "vllm", "base_url": engine.base_url},
            "train": {"lora": {"enabled": True}},
        }
    )


async def vllm_engine_back_to_base(engine: Any, version: int) -> None:
    async with engine.updating(version, route=engine.served_model):
        pass
