"""Switching framework by config: examples/switch_framework (the built-in ReActWorkflow) runs the same tasks, tools
and reward in every built-in framework, changing nothing but `framework:`.

The episodes run through the real runtime (gateway, recorder, judger) on the tiny random model, so the answers
are nonsense; what is checked is that each framework's own agent ran, its calls were recorded for training, it
offered the same tools, and its answer reached the judger. One CLI run on SmolLM2 checks `--set framework=...`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ajet.core.config import AjetConfig, ConfigError, load_config
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.loading import load_workflow_factory
from ajet.core.plugins import load_registry
from ajet.core.rollout import RolloutExecutor
from ajet.core.runtime import Runtime, build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.tasks import load_tasks
from ajet.core.types import Episode, EpisodeStatus
from tests.examples.cli import ROOT, explain, run_ajet

CONFIG = ROOT / "examples" / "switch_framework" / "config.yaml"
BUILT_IN = ["openai_sdk", "agentscope", "langchain", "openai_agents", "strands"]
REGISTRY = load_registry()


def example_config(**overrides: Any) -> AjetConfig:
    """The example's config, made small for the tiny model, with `overrides` as `--set` would apply them."""
    small = {"rollout.group_size": 2, "rollout.sampling.max_tokens": 8, "gateway.http": False}
    return load_config(CONFIG, {**small, **overrides})


@pytest.fixture
async def run_example(tiny_model_and_tokenizer: tuple[Any, Any]) -> AsyncIterator[Any]:
    runtimes: list[Runtime] = []

    async def run(config: AjetConfig, n_tasks: int = 2) -> tuple[Runtime, list[Episode]]:
        engine = TransformersEngine(*tiny_model_and_tokenizer)
        runtime = await build_runtime(config, REGISTRY, MemoryStore(), engine)
        runtimes.append(runtime)
        assert config.data.train is not None
        tasks = load_tasks(config.data.train, config.base_dir)[:n_tasks]
        return runtime, await RolloutExecutor(runtime, load_workflow_factory(config)).run(tasks)

    yield run
    for runtime in runtimes:
        await runtime.close()


@pytest.mark.parametrize("framework", BUILT_IN)
async def test_the_same_tasks_run_in_every_framework(framework: str, run_example: Any) -> None:
    adapter = REGISTRY.adapter(framework)
    if adapter.missing_modules():
        pytest.skip(f"{framework} is not installed ({adapter.install_hint()})")
    runtime, episodes = await run_example(example_config(framework=framework))
    assert [(e.task_id, e.status) for e in episodes] == [
        ("add-1", EpisodeStatus.OK),
        ("add-1", EpisodeStatus.OK),
        ("mul-1", EpisodeStatus.OK),
        ("mul-1", EpisodeStatus.OK),
    ], [e.error for e in episodes]
    for episode in episodes:
        assert episode.metadata["framework"] == framework
        assert episode.reward in (0.0, 1.0)  # the judger scored the answer the framework's agent returned
        calls = runtime.store.calls(episode.episode_id)
        assert 1 <= len(calls) <= 4  # max_turns
        for call in calls:
            assert call.trainable and call.agent_name == "default"
            assert call.prompt_ids and call.completion_ids
            assert call.logprobs is not None and len(call.logprobs) == len(call.completion_ids)
            assert [t["function"]["name"] for t in call.tools or []] == ["add", "multiply"]
        text = calls[-1].response["content"] or ""
        if not calls[-1].response.get(
            "tool_calls"
        ):  # the random model wrote no tool call: that is the answer
            assert episode.metadata["answer"] == text
        assert episode.task.main_query in json.dumps(calls[0].messages)


async def test_an_adapter_without_a_react_runner_fails_clearly(run_example: Any) -> None:
    """The `http` adapter gives a base_url, not a framework with an agent: the error says what to do."""
    _, episodes = await run_example(example_config(framework="http", **{"rollout.group_size": 1}), n_tasks=1)
    (episode,) = episodes
    assert episode.status == EpisodeStatus.FAILED
    assert "framework 'http' has no ReAct runner" in (episode.error or "")
    assert "agentscope, langchain, openai_agents, openai_sdk, strands" in (episode.error or "")


async def test_no_framework_in_the_config_fails_clearly(run_example: Any) -> None:
    _, episodes = await run_example(example_config(framework=None, **{"rollout.group_size": 1}), n_tasks=1)
    (episode,) = episodes
    assert episode.status == EpisodeStatus.FAILED
    assert "add e.g. `framework: openai_sdk`" in (episode.error or "")


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        (["tools.py:divide"], "has no attribute 'divide'"),
        (["missing.py:add"], "not found"),
        (["{tmp}/undocumented.py:double"], "has no docstring"),
        (["tools.py:add", "tools.py:add"], "two tools share the name 'add'"),
    ],
)
def test_bad_tools_are_config_errors(tools: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "undocumented.py").write_text("def double(x: int) -> int:\n    return 2 * x\n")
    tools = [ref.format(tmp=tmp_path) for ref in tools]
    with pytest.raises(ConfigError, match=r"workflow\.args do not fit ReActWorkflow") as error:
        load_workflow_factory(example_config(**{"workflow.args.tools": tools}))
    assert message in str(error.value)


async def test_the_plain_loop_tells_the_model_about_bad_tool_calls() -> None:
    """The openai_sdk runner answers a failing or malformed tool call with an error text, as frameworks do."""
    from ajet.adapters.openai_sdk.react import call_tool

    def divide(a: int, b: int) -> float:
        """Divide a by b."""
        return a / b

    async def negate(a: int) -> int:
        """Negate a."""
        return -a

    assert await call_tool(divide, '{"a": 6, "b": 3}') == "2.0"
    assert await call_tool(negate, '{"a": 6}') == "-6"
    assert (await call_tool(divide, '{"a": 6, "b": 0}')).startswith("error: ZeroDivisionError")
    assert (await call_tool(divide, '{"a": "six", "b": 3}')).startswith("error: bad arguments for divide")
    assert (await call_tool(divide, "not json")).startswith("error: bad arguments for divide")


@pytest.mark.slow
def test_cli_switches_framework_with_set(tmp_path: Path) -> None:
    out = tmp_path / "trajectories.jsonl"
    result = run_ajet(
        "debug", "-c", str(CONFIG), "--tasks", "1", "--group-size", "1", "--store", "memory", "--strict",
        "--out", str(out), "--set", "framework=langchain", "--set", "rollout.sampling.max_tokens=48",
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["status"] == "ok" and record["metadata"]["framework"] == "langchain"
    assert record["reward"] in (0.0, 1.0)
    assert record["calls"] and all(len(c["completion_ids"]) == len(c["logprobs"]) for c in record["calls"])
    assert [t["function"]["name"] for t in record["calls"][0]["tools"]] == ["add", "multiply"]
