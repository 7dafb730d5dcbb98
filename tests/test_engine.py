"""The in-process transformers engine: batching, finish reasons, log-probs, weight loads, failures.

Most tests use the tiny random model (real SmolLM2 tokenizer); the `slow` ones use the real SmolLM2.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import torch

from ajet.core.engines.transformers_engine import EngineClosedError, TransformersEngine, _draw
from ajet.core.models import build_tiny_model
from ajet.core.types import Completion, SamplingParams

GREEDY = SamplingParams(temperature=0, max_tokens=12)
QUESTIONS = [
    "Hi",
    "What is 7 + 5?",
    "Write a long poem about the sea, the wind, and the boats that sail on it.",
]


def chat(tokenizer: Any, text: str) -> list[int]:
    out = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
    return list(out if isinstance(out, list) else out["input_ids"])


def recomputed_logprobs(
    model: Any, prompt: list[int], completion: Completion, temperature: float
) -> torch.Tensor:
    """What a trainer computes: one forward pass over prompt + completion, at the sampling temperature."""
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + completion.ids])).logits[0, len(prompt) - 1 : -1].float()
    logp = torch.log_softmax(logits / (temperature or 1.0), dim=-1)
    return logp.gather(1, torch.tensor(completion.ids)[:, None])[:, 0]


@pytest.fixture
async def engine(tiny_model_and_tokenizer: tuple[Any, Any]) -> AsyncIterator[TransformersEngine]:
    model, tokenizer = tiny_model_and_tokenizer
    engine = TransformersEngine(model, tokenizer)
    yield engine
    await engine.aclose()


@pytest.fixture
def prompts(tiny_model_and_tokenizer: tuple[Any, Any]) -> list[list[int]]:
    return [chat(tiny_model_and_tokenizer[1], q) for q in QUESTIONS]


async def test_completion_is_consistent(engine: TransformersEngine, prompts: list[list[int]]) -> None:
    out = await engine.generate(prompts[1], SamplingParams(max_tokens=9, seed=1))
    assert len(out.ids) == len(out.logprobs) == 9
    assert out.finish_reason == "length"
    assert out.text == engine.tokenizer.decode(out.ids, skip_special_tokens=True)
    assert all(lp <= 0 for lp in out.logprobs)
    assert out.model_version == engine.version == 0


async def test_eos_stops_and_is_kept_with_its_logprob(prompts: list[list[int]]) -> None:
    # The tiny model never picks the real EOS, so declare the token it picks greedily to be an EOS id,
    # as a model's generation_config may list several.
    model, tokenizer = build_tiny_model(seed=0)
    probe = TransformersEngine(model, tokenizer)
    first = (await probe.generate(prompts[0], GREEDY)).ids[0]
    await probe.aclose()
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, first]
    engine = TransformersEngine(model, tokenizer)
    try:
        assert engine.eos_ids == {tokenizer.eos_token_id, first}
        out = await engine.generate(prompts[0], GREEDY)
        assert out.ids == [first] and len(out.logprobs) == 1
        assert out.finish_reason == "stop"
    finally:
        await engine.aclose()


async def test_stop_string_cuts_text_and_keeps_the_token_that_completed_it(
    engine: TransformersEngine, prompts: list[list[int]]
) -> None:
    sampling = SamplingParams(temperature=1.0, max_tokens=20, seed=5)
    full = await engine.generate(prompts[1], sampling)
    decode = engine.tokenizer.decode
    stop = decode(full.ids[6:8], skip_special_tokens=True).strip()
    assert stop, "pick a seed whose 7th and 8th tokens are visible text"
    needed = next(k for k in range(1, 21) if stop in decode(full.ids[:k], skip_special_tokens=True))

    out = await engine.generate(prompts[1], sampling.model_copy(update={"stop": ["@@never@@", stop]}))
    assert out.finish_reason == "stop"
    assert out.ids == full.ids[:needed] and out.logprobs == pytest.approx(full.logprobs[:needed], abs=1e-5)
    assert out.text == full.text[: full.text.find(stop)]
    assert stop not in out.text


async def test_greedy_is_the_same_alone_and_batched(
    engine: TransformersEngine, prompts: list[list[int]]
) -> None:
    alone = [await engine.generate(p, GREEDY) for p in prompts]
    together = await asyncio.gather(*(engine.generate(p, GREEDY) for p in prompts))
    for a, b in zip(alone, together, strict=True):
        assert a.ids == b.ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


async def test_requests_joining_and_leaving_a_running_batch(
    engine: TransformersEngine, prompts: list[list[int]]
) -> None:
    # A long request is decoding when shorter ones of other lengths join, finish and leave before it does.
    long = SamplingParams(temperature=0.8, max_tokens=150, seed=3)
    short = SamplingParams(temperature=0.8, max_tokens=5, seed=4)
    long_alone = await engine.generate(prompts[0], long)
    short_alone = [await engine.generate(p, short) for p in prompts]

    long_task = asyncio.create_task(engine.generate(prompts[0], long))
    await asyncio.sleep(0.05)
    joined = [await engine.generate(p, short) for p in prompts]  # one after another, each joining mid-flight
    assert not long_task.done(), "the long request should still be running"
    long_batched = await long_task

    assert long_batched.ids == long_alone.ids
    assert long_batched.logprobs == pytest.approx(long_alone.logprobs, abs=1e-5)
    for a, b in zip(short_alone, joined, strict=True):
        assert a.ids == b.ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


async def test_seeded_sampling_is_reproducible_in_any_batch(
    engine: TransformersEngine, prompts: list[list[int]]
) -> None:
    sampling = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=15, seed=11)
    alone = await engine.generate(prompts[2], sampling)
    assert (await engine.generate(prompts[2], sampling)).ids == alone.ids
    others = [
        engine.generate(p, SamplingParams(temperature=1.0, max_tokens=15, seed=i))
        for i, p in enumerate(prompts)
    ]
    batched, *_ = await asyncio.gather(engine.generate(prompts[2], sampling), *others)
    assert batched.ids == alone.ids
    reseeded = await engine.generate(prompts[2], sampling.model_copy(update={"seed": 12}))
    assert reseeded.ids != alone.ids


async def test_a_group_with_one_prompt_is_prefilled_once(
    engine: TransformersEngine, prompts: list[list[int]]
) -> None:
    """GRPO sends a prompt `group_size` times at once: it is prefilled once and the cache row copied, and every
    request still samples with its own seed, as it would alone."""
    samplings = [SamplingParams(temperature=1.0, max_tokens=12, seed=seed) for seed in range(4)]
    alone = [await engine.generate(prompts[1], s) for s in samplings]
    other_alone = await engine.generate(prompts[0], samplings[0])
    prefill_rows: list[int] = []
    forward = engine._forward

    def counting(input_ids: torch.Tensor, *args: Any) -> torch.Tensor:
        if input_ids.shape[1] > 1:  # a prefill; decode steps feed one token per row
            prefill_rows.append(input_ids.shape[0])
        return forward(input_ids, *args)

    engine._forward = counting  # type: ignore[method-assign]
    together = await asyncio.gather(
        *(engine.generate(prompts[1], s) for s in samplings), engine.generate(prompts[0], samplings[0])
    )
    assert sum(prefill_rows) == 2  # two distinct prompts, five requests
    for got, expected in zip(together, [*alone, other_alone], strict=True):
        assert got.ids == expected.ids
        assert torch.allclose(torch.tensor(got.logprobs), torch.tensor(expected.logprobs), atol=1e-4)
    assert len({tuple(c.ids) for c in together[:4]}) > 1, "different seeds, different samples"


async def test_logprobs_match_one_forward_pass(
    engine: TransformersEngine, prompts: list[list[int]], tiny_model_and_tokenizer: tuple[Any, Any]
) -> None:
    model = tiny_model_and_tokenizer[0]
    settings = [(0.0, 1.0), (1.0, 1.0), (0.7, 0.9), (1.3, 1.0), (1.0, 0.5)]  # (temperature, top_p)
    requests = [
        (prompt, SamplingParams(temperature=t, top_p=top_p, max_tokens=16, seed=seed))
        for seed, (t, top_p) in enumerate(settings)
        for prompt in prompts
    ]
    outs = await asyncio.gather(*(engine.generate(p, s) for p, s in requests))
    for (prompt, sampling), out in zip(requests, outs, strict=True):
        expected = recomputed_logprobs(model, prompt, out, sampling.temperature)
        assert (expected - torch.tensor(out.logprobs)).abs().mean() < 1e-4


def test_draw_follows_the_distribution_within_the_nucleus() -> None:
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3, 0.0])
    generator = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.tensor([_draw(probs, 1.0, generator) for _ in range(4000)]), minlength=5)
    assert (counts / 4000 - probs).abs().max() < 0.03 and counts[4] == 0
    # top_p 0.7 keeps the two likeliest tokens (0.5 + 0.3), renormalised to 5/8 and 3/8.
    counts = torch.bincount(torch.tensor([_draw(probs, 0.7, generator) for _ in range(4000)]), minlength=5)
    assert counts[[0, 2, 4]].sum() == 0 and abs(counts[1] / 4000 - 5 / 8) < 0.03


async def test_long_prompts_are_prefilled_in_smaller_batches(
    tiny_model_and_tokenizer: tuple[Any, Any], prompts: list[list[int]]
) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    engine = TransformersEngine(model, tokenizer, max_prefill_tokens=64)  # one prompt per prefill
    try:
        small = await asyncio.gather(*(engine.generate(p, GREEDY) for p in prompts))
    finally:
        await engine.aclose()
    big = TransformersEngine(model, tokenizer)
    try:
        expected = await asyncio.gather(*(big.generate(p, GREEDY) for p in prompts))
    finally:
        await big.aclose()
    assert [c.ids for c in small] == [c.ids for c in expected]
    assert [c.logprobs for c in small] == [pytest.approx(c.logprobs, abs=1e-5) for c in expected]


async def test_load_weights_bumps_version_and_changes_outputs(prompts: list[list[int]]) -> None:
    model, tokenizer = build_tiny_model(seed=0)
    other, _ = build_tiny_model(seed=1)
    engine = TransformersEngine(model, tokenizer)
    reference = TransformersEngine(other, tokenizer)
    try:
        before = await engine.generate(prompts[1], GREEDY)
        await engine.load_weights(other.state_dict())
        after = await engine.generate(prompts[1], GREEDY)
        assert (engine.version, before.model_version, after.model_version) == (1, 0, 1)
        assert after.logprobs != pytest.approx(before.logprobs, abs=1e-3)
        expected = await reference.generate(prompts[1], GREEDY)
        assert after.ids == expected.ids and after.logprobs == pytest.approx(expected.logprobs, abs=1e-6)

        await engine.load_weights(engine.model)  # a trainer that updated our own module in place
        assert engine.version == 2
        with pytest.raises(ValueError, match="keys the model does not have"):
            await engine.load_weights({"not.a.weight": torch.zeros(1)})
        with pytest.raises(ValueError, match="wrong shape"):
            await engine.load_weights({"model.norm.weight": torch.zeros(3)})
        with pytest.raises(TypeError, match="state dict or an nn"):
            await engine.load_weights([1, 2])
        assert engine.version == 2
    finally:
        await engine.aclose()
        await reference.aclose()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft calls a deprecated transformers method
async def test_load_weights_of_a_peft_model_wrapping_the_engines_own(prompts: list[list[int]]) -> None:
    peft = pytest.importorskip("peft")
    model, tokenizer = build_tiny_model(seed=0)
    engine = TransformersEngine(model, tokenizer)
    try:
        before = await engine.generate(prompts[1], GREEDY)
        policy = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
        with torch.no_grad():  # what optimizer steps do: the adapters move away from their zero init
            for name, parameter in policy.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(std=0.5)
        await engine.load_weights(policy)
        after = await engine.generate(prompts[1], GREEDY)
        assert (engine.version, after.model_version) == (1, 1)
        assert after.logprobs != pytest.approx(before.logprobs, abs=1e-3)
        expected = recomputed_logprobs(policy, prompts[1], after, 0.0)
        assert (expected - torch.tensor(after.logprobs)).abs().max() < 1e-4
    finally:
        await engine.aclose()


async def test_load_weights_waits_for_running_rows(prompts: list[list[int]]) -> None:
    model, tokenizer = build_tiny_model(seed=0)
    old_engine = TransformersEngine(build_tiny_model(seed=0)[0], tokenizer)
    engine = TransformersEngine(model, tokenizer)
    long = SamplingParams(temperature=0, max_tokens=80)
    try:
        expected = await old_engine.generate(prompts[2], long)
        running = asyncio.create_task(engine.generate(prompts[2], long))
        await asyncio.sleep(0.05)
        load = asyncio.create_task(engine.load_weights(build_tiny_model(seed=1)[0].state_dict()))
        await asyncio.sleep(0)
        queued = asyncio.create_task(engine.generate(prompts[0], GREEDY))  # sent after the load: new weights
        finished = await running
        await load
        assert finished.model_version == 0
        assert finished.ids == expected.ids  # the old weights all the way through
        assert (await queued).model_version == 1
    finally:
        await engine.aclose()
        await old_engine.aclose()


async def test_prompt_must_fit_the_context(prompts: list[list[int]]) -> None:
    model, tokenizer = build_tiny_model(seed=0)
    model.config.max_position_embeddings = 64
    engine = TransformersEngine(model, tokenizer)
    try:
        with pytest.raises(ValueError, match="the prompt is 64 tokens, but the model's context is 64 tokens"):
            await engine.generate([1] * 64, GREEDY)
        out = await engine.generate([1] * 62, SamplingParams(temperature=0, max_tokens=100))
        assert len(out.ids) == 2 and out.finish_reason == "length"  # max_tokens clamped to the room left
        with pytest.raises(ValueError, match="empty"):
            await engine.generate([], GREEDY)
        with pytest.raises(ValueError, match="outside the vocabulary"):
            await engine.generate([1, 49152], GREEDY)
    finally:
        await engine.aclose()


async def test_a_failing_request_fails_alone_and_the_engine_keeps_serving(prompts: list[list[int]]) -> None:
    model, tokenizer = build_tiny_model(seed=0)
    poison = 4242
    state = {"fail_decode_steps": 0}

    def hook(module: Any, args: tuple[torch.Tensor, ...]) -> None:
        input_ids = args[0]
        if (input_ids == poison).any():
            raise RuntimeError("poisoned prompt")
        if input_ids.shape[1] == 1 and state["fail_decode_steps"] > 0:
            state["fail_decode_steps"] -= 1
            raise RuntimeError("decode step failed")

    model.get_input_embeddings().register_forward_pre_hook(hook)
    engine = TransformersEngine(model, tokenizer)
    try:
        good = [engine.generate(p, GREEDY) for p in prompts]
        results = await asyncio.gather(engine.generate([1, poison, 2], GREEDY), *good, return_exceptions=True)
        assert isinstance(results[0], RuntimeError) and "poisoned" in str(results[0])
        assert all(isinstance(r, Completion) and len(r.ids) == 12 for r in results[1:])

        state["fail_decode_steps"] = 1  # the rows in a failed decode step fail; later requests are served
        failed = await asyncio.gather(*(engine.generate(p, GREEDY) for p in prompts), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) and "decode step failed" in str(r) for r in failed)
        assert len((await engine.generate(prompts[0], GREEDY)).ids) == 12
    finally:
        await engine.aclose()


async def test_cancelled_requests_are_dropped(engine: TransformersEngine, prompts: list[list[int]]) -> None:
    task = asyncio.create_task(engine.generate(prompts[0], SamplingParams(max_tokens=5000, seed=0)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    out = await engine.generate(prompts[1], GREEDY)  # served in a batch the cancelled row has left
    assert len(out.ids) == 12
    for _ in range(100):
        if not engine._batch.rows:
            break
        await asyncio.sleep(0.01)
    assert not engine._batch.rows


async def test_callers_on_other_threads_and_loops(
    engine: TransformersEngine, prompts: list[list[int]]
) -> None:
    expected = [await engine.generate(p, GREEDY) for p in prompts]
    results: dict[int, list[Completion]] = {}

    def other_thread(index: int) -> None:
        async def run() -> list[Completion]:
            return list(await asyncio.gather(*(engine.generate(p, GREEDY) for p in prompts)))

        results[index] = asyncio.run(run())

    threads = [threading.Thread(target=other_thread, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    here = await asyncio.gather(*(engine.generate(p, GREEDY) for p in prompts))
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    for batch in [here, *results.values()]:
        assert [c.ids for c in batch] == [c.ids for c in expected]
    assert len(results) == 2


async def test_close_fails_pending_requests_and_refuses_new_ones(
    tiny_model_and_tokenizer: tuple[Any, Any], prompts: list[list[int]]
) -> None:
    engine = TransformersEngine(*tiny_model_and_tokenizer)
    running = asyncio.create_task(engine.generate(prompts[0], SamplingParams(max_tokens=5000)))
    await asyncio.sleep(0.05)
    await engine.aclose()
    with pytest.raises(EngineClosedError):
        await running
    with pytest.raises(EngineClosedError):
        await engine.generate(prompts[0], GREEDY)
    assert not engine._thread.is_alive()


@pytest.mark.slow
async def test_smollm2_logprobs_match_a_forward_pass_at_temperature(
    smollm2_model_and_tokenizer: tuple[Any, Any],
) -> None:
    model, tokenizer = smollm2_model_and_tokenizer
    engine = TransformersEngine(model, tokenizer)
    questions = [
        "What is 2+3?",
        "Name a color.",
        "Tell me a story about a dragon who guards a small village.",
    ]
    smollm_prompts = [chat(tokenizer, q) for q in questions]
    try:
        for temperature in (1.0, 0.7):
            sampling = [SamplingParams(temperature=temperature, max_tokens=24, seed=i) for i in range(3)]
            outs = await asyncio.gather(
                *(engine.generate(p, s) for p, s in zip(smollm_prompts, sampling, strict=True))
            )
            for prompt, out in zip(smollm_prompts, outs, strict=True):
                expected = recomputed_logprobs(model, prompt, out, temperature)
                assert (expected - torch.tensor(out.logprobs)).abs().mean() < 1e-3
    finally:
        await engine.aclose()


@pytest.mark.slow
async def test_smollm2_stops_at_im_end(smollm2_model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = smollm2_model_and_tokenizer
    engine = TransformersEngine(model, tokenizer)
    try:
        out = await engine.generate(
            chat(tokenizer, "What is 2+3?"), SamplingParams(temperature=0, max_tokens=40)
        )
        assert out.finish_reason == "stop"
        assert out.ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>") == 2
        assert len(out.logprobs) == len(out.ids)
        assert "5" in out.text and "<|im_end|>" not in out.text
    finally:
        await engine.aclose()


@pytest.mark.slow
async def test_from_spec_loads_the_model(smollm2_dir: Any) -> None:
    engine = TransformersEngine.from_spec(str(smollm2_dir), model_name="smol", max_batch_size=4)
    try:
        assert (engine.model_name, engine.version, engine.max_context) == ("smol", 0, 8192)
        assert engine.eos_ids == {2}
    finally:
        await engine.aclose()
