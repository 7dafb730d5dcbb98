"""Constrained decoding: `tool_choice` "required" / a named function and `response_format` give a valid tool
call / schema-valid JSON even from the tiny random model (which never writes either on its own), through the
real gateway, engine and xgrammar; and the recorded log-probs stay those of the unmasked distribution, which
the trainer recomputes from the model and the token ids alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
import torch

pytest.importorskip("xgrammar")

from ajet.core.constraints import Constraint
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.gateway.app import Gateway
from ajet.core.gateway.backends import EngineChatBackend
from ajet.core.gateway.keys import KeyBinding
from ajet.core.gateway.render import ChatRenderer
from ajet.core.gateway.schemas import ChatCompletionRequest, FunctionTool
from ajet.core.gateway.tool_parsers import HermesToolParser, NoToolParser
from ajet.core.store.memory import MemoryStore
from ajet.core.types import Episode, EpisodeStatus, LabeledTask, SamplingParams
from ajet.trainer.engine import TrainingEngine
from ajet.trainer.samples import build_samples

SET_LIGHT = {
    "type": "function",
    "function": {
        "name": "set_light",
        "description": "Switch a lamp.",
        "parameters": {
            "type": "object",
            "properties": {
                "room": {"type": "string", "enum": ["kitchen", "hall"]},
                "on": {"type": "boolean"},
                "level": {"type": "integer", "minimum": 0, "maximum": 10},
            },
            "required": ["room", "on", "level"],
        },
    },
}
WAIT = {
    "type": "function",
    "function": {"name": "wait", "description": "Do nothing."},  # no parameters: `{}` is its only argument
}
TOOLS = [SET_LIGHT, WAIT]
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["yes", "no"]},
        "confidence": {"type": "integer", "minimum": 0, "maximum": 100},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
    },
    "required": ["verdict", "confidence", "tags"],
}
HI = [{"role": "user", "content": "Turn on the kitchen light."}]


def make_gateway(engine: TransformersEngine, parser: Any = None) -> Gateway:
    renderer = ChatRenderer(engine.tokenizer)
    backend = EngineChatBackend(engine, renderer, parser or HermesToolParser(), SamplingParams(max_tokens=96))
    return Gateway(backend, MemoryStore())


@pytest.fixture(scope="module")
def gateway(engine: TransformersEngine) -> Iterator[Gateway]:
    gateway = make_gateway(engine)
    asyncio.run(gateway.start_http())  # loopback HTTP, as an agent's own client reaches it
    yield gateway
    asyncio.run(gateway.aclose())


def client_for(gateway: Gateway) -> tuple[str, openai.AsyncOpenAI]:
    episode = Episode(task=LabeledTask(task_id="t", main_query="q"), group_id="g")
    gateway.store.add_episode(episode)
    key = gateway.keys.issue(KeyBinding(episode_id=episode.episode_id))
    assert gateway.base_url is not None
    return episode.episode_id, openai.AsyncOpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)


def assert_valid_calls(message: Any, allowed: list[dict[str, Any]]) -> None:
    schemas = {t["function"]["name"]: t["function"].get("parameters") for t in allowed}
    assert message.tool_calls, message.content
    for call in message.tool_calls:
        assert call.function.name in schemas
        arguments = json.loads(call.function.arguments)
        jsonschema.validate(arguments, schemas[call.function.name] or {"type": "object", "maxProperties": 0})


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_tool_choice_required_gives_valid_tool_calls(gateway: Gateway, seed: int) -> None:
    _, client = client_for(gateway)
    auto = await client.chat.completions.create(
        model="m", messages=HI, tools=TOOLS, tool_choice="auto", seed=seed, max_tokens=24
    )
    assert not auto.choices[0].message.tool_calls  # left free, the random model writes noise

    response = await client.chat.completions.create(
        model="m", messages=HI, tools=TOOLS, tool_choice="required", seed=seed, max_tokens=256
    )  # parallel calls allowed: after each call the random model goes on with another one half the time
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert_valid_calls(choice.message, TOOLS)


@pytest.mark.parametrize("name", ["set_light", "wait"])
async def test_named_function_gives_exactly_that_call(gateway: Gateway, name: str) -> None:
    episode_id, client = client_for(gateway)
    response = await client.chat.completions.create(
        model="m",
        messages=HI,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": name}},
        seed=5,
        temperature=0.8,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    assert choice.message.tool_calls[0].function.name == name
    assert_valid_calls(choice.message, TOOLS)
    (call,) = gateway.store.calls(episode_id)
    assert call.finish_reason == "tool_calls" and call.completion_text is not None
    assert call.completion_text.startswith('<tool_call>\n{"name": ')  # the markup the renderer teaches


async def test_no_parallel_calls_means_one_call(gateway: Gateway) -> None:
    _, client = client_for(gateway)
    for seed in range(3):
        response = await client.chat.completions.create(
            model="m", messages=HI, tools=TOOLS, tool_choice="required", parallel_tool_calls=False, seed=seed
        )
        assert len(response.choices[0].message.tool_calls or []) == 1


@pytest.mark.parametrize(("seed", "temperature"), [(0, 1.0), (1, 0.7), (2, 1.3)])
async def test_response_format_json_schema_validates(gateway: Gateway, seed: int, temperature: float) -> None:
    _, client = client_for(gateway)
    response = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Is the sky blue?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "Answer", "schema": ANSWER_SCHEMA, "strict": True},
        },
        seed=seed,
        temperature=temperature,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content is not None
    jsonschema.validate(json.loads(choice.message.content), ANSWER_SCHEMA)


async def test_response_format_json_object_is_one_object(engine: TransformersEngine) -> None:
    # Any object, so the random model's keys may run long: a greedy run at a generous budget.
    prompt = ChatRenderer(engine.tokenizer).render(HI)
    out = await engine.generate(prompt, SamplingParams(max_tokens=200, seed=3), Constraint.json_object())
    if out.finish_reason == "stop":
        assert isinstance(json.loads(out.text), dict)
    else:  # cut at max_tokens: still a prefix of an object
        assert out.text.startswith("{")


async def test_recorded_logprobs_are_the_unmasked_distribution(
    gateway: Gateway, tiny_model_and_tokenizer: tuple[Any, Any]
) -> None:
    """What the trainer recomputes (model + token ids, no grammar) equals what was recorded: the importance
    ratio is 1 before an update. The grammar forced tokens the random model finds unlikely, so the
    recorded log-probs are far from those of the masked distribution (which would be ~0 for forced text)."""
    temperature = 0.7
    episode_id, client = client_for(gateway)
    await client.chat.completions.create(
        model="m", messages=HI, tools=TOOLS, tool_choice="required", seed=1, temperature=temperature
    )
    await client.chat.completions.create(
        model="m",
        messages=HI,
        response_format={"type": "json_schema", "json_schema": {"name": "A", "schema": ANSWER_SCHEMA}},
        seed=2,
        temperature=temperature,
        top_p=0.9,
    )
    calls = gateway.store.calls(episode_id)
    assert len(calls) == 2
    episode = gateway.store.get_episode(episode_id).model_copy(
        update={"status": EpisodeStatus.OK, "reward": 1.0}
    )
    samples, _ = build_samples([(episode, calls)])
    model, tokenizer = tiny_model_and_tokenizer
    trainer = TrainingEngine(model, pad_id=tokenizer.pad_token_id)  # its defaults, as in a training run
    recomputed = trainer.recompute_logprobs(samples)  # each call at its own recorded temperature
    for sample, new in zip(samples, recomputed, strict=True):
        mask = torch.tensor(sample.loss_mask, dtype=torch.bool)
        old, new_t = torch.tensor(sample.old_logprobs)[mask], torch.tensor(new)[mask]
        assert old.numel() > 10
        assert (old - new_t).abs().max() < 1e-4
        assert (old < -5).float().mean() > 0.5  # forced, not chosen: unmasked log-probs are low


async def test_constrained_seeded_sampling_is_the_same_alone_and_batched(engine: TransformersEngine) -> None:
    prompt = ChatRenderer(engine.tokenizer).render(HI)
    constraint = HermesToolParser().constraint([FunctionTool.model_validate(SET_LIGHT)], parallel=False)
    sampling = SamplingParams(temperature=1.0, max_tokens=96, seed=11)
    alone = await engine.generate(prompt, sampling, constraint)
    others = [engine.generate(prompt, SamplingParams(max_tokens=20, seed=s)) for s in range(3)]
    batched, *_ = await asyncio.gather(engine.generate(prompt, sampling, constraint), *others)
    assert batched.ids == alone.ids
    assert batched.logprobs == pytest.approx(alone.logprobs, abs=1e-5)


async def test_greedy_constrained_decoding(engine: TransformersEngine) -> None:
    prompt = ChatRenderer(engine.tokenizer).render(HI)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    out = await engine.generate(
        prompt, SamplingParams(temperature=0, max_tokens=20), Constraint.json_schema(schema)
    )
    assert out.finish_reason == "stop" and json.loads(out.text) in ({"ok": True}, {"ok": False})
    assert out.ids[-1] in engine.eos_ids


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "wizard"}}}},
            400,
            'response_format.json_schema.schema: cannot compile the constraint: Unsupported type "wizard"',
        ),
        ({"response_format": {"type": "xml"}}, 400, "response_format"),
        ({"tool_choice": "required"}, 400, "tool_choice is 'required' but the request has no tools"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "wizard"}}}],
                "tool_choice": "required",
            },
            400,
            'tools: cannot compile the constraint: Unsupported type "wizard"',
        ),
    ],
)
async def test_bad_constraints_get_a_400_naming_the_field(
    gateway: Gateway, body: dict[str, Any], status: int, expected: str
) -> None:
    _, client = client_for(gateway)
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model="m", messages=HI, **body)
    assert info.value.status_code == status
    assert expected in info.value.message


def test_response_format_is_forwarded_as_sent() -> None:
    """The debug backend forwards the validated request: `json_schema.schema` keeps its wire name."""
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "Answer", "schema": ANSWER_SCHEMA, "strict": True},
    }
    request = ChatCompletionRequest.model_validate({"messages": HI, "response_format": response_format})
    assert request.model_dump(mode="json", exclude_none=True)["response_format"] == response_format


async def test_a_parser_without_a_format_cannot_force_a_tool_call(engine: TransformersEngine) -> None:
    gateway = make_gateway(engine, NoToolParser())
    await gateway.start_http()
    try:
        _, client = client_for(gateway)
        with pytest.raises(openai.BadRequestError, match="tool parser 'none' has none"):
            await client.chat.completions.create(model="m", messages=HI, tools=TOOLS, tool_choice="required")
    finally:
        await gateway.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
async def test_smollm2_structured_output_through_langchain(
    smollm2_model_and_tokenizer: tuple[Any, Any], method: str
) -> None:
    """With a real (small) model, LangChain's `with_structured_output` gets its object either way it asks:
    `response_format` json_schema, or a forced call of a tool named after the schema."""
    pytest.importorskip("langchain_openai")
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    class Joke(BaseModel):
        """Joke to tell user."""

        setup: str
        punchline: str

    model, tokenizer = smollm2_model_and_tokenizer
    engine = TransformersEngine(model, tokenizer)
    gateway = make_gateway(engine)
    await gateway.start_http()
    try:
        episode_id, client = client_for(gateway)
        llm = ChatOpenAI(
            model="m",
            base_url=gateway.base_url,
            api_key=client.api_key,
            max_tokens=160,
            seed=0,
            max_retries=0,
        )
        joke = await llm.with_structured_output(Joke, method=method).ainvoke("Tell me a joke about cats.")
        assert isinstance(joke, Joke) and joke.setup and joke.punchline
        (call,) = gateway.store.calls(episode_id)
        assert call.finish_reason == ("stop" if method == "json_schema" else "tool_calls")
    finally:
        await gateway.aclose()
        await engine.aclose()
