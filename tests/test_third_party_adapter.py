"""The third-party adapter package in examples/third_party_adapter (`ajet-pydantic-ai`), installed the way a user
installs it: `pip install` into a throwaway directory (never into the running venv), found by ajet only through
the `ajet` entry point in its dist-info. Then `ajet plugins` lists it, a Pydantic AI agent calls its tool through
the real gateway without touching the network, and `ajet debug` runs the example on the real SmolLM2."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pydantic_ai")

from ajet.core.config import load_config
from ajet.core.loading import load_workflow_factory
from ajet.core.plugins import collect_registry, make_plugin_manager
from ajet.core.rollout import RolloutExecutor
from ajet.core.runtime import Runtime, build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.tasks import load_tasks
from ajet.core.types import EpisodeStatus, LlmCall
from tests.adapters.netcheck import no_sockets
from tests.adapters.scripted_engine import ScriptedEngine, tool_call
from tests.examples.cli import ROOT, explain

PACKAGE = ROOT / "examples" / "third_party_adapter"
CONFIG = PACKAGE / "config.yaml"


def setuptools_major() -> int:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return 0


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install --no-deps --target DIR` of a copy of the package (building in the checkout would leave
    build/ and *.egg-info there). With setuptools>=77 at hand the build runs offline (--no-build-isolation);
    otherwise pip fetches setuptools into an isolated build environment, which needs the package index."""
    work = tmp_path_factory.mktemp("ajet-pydantic-ai")
    source = work / "source"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = work / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--target", str(site)]
    if setuptools_major() >= 77:  # what the package's [build-system] asks for
        command.append("--no-build-isolation")
    result = subprocess.run([*command, str(source)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, explain(result)
    return site


def ajet_with(site: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    """`ajet ARGS...` in a subprocess; with `site`, the installed package is on its PYTHONPATH."""
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "ajet.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
    )


def listed_adapters(site: Path | None) -> dict[str, dict[str, Any]]:
    result = ajet_with(site, "plugins", "--json")
    assert result.returncode == 0, explain(result)
    return {row["name"]: row for row in json.loads(result.stdout)["adapters"]}


def test_ajet_plugins_lists_the_adapter_with_its_package(site_dir: Path) -> None:
    row = listed_adapters(site_dir)["pydantic_ai"]
    assert row["package"] == "ajet-pydantic-ai" and row["version"] == "0.1.0"
    assert row["methods"] == ["as_pydantic_ai_model"]
    assert row["installed"] is True and row["install"] is None
    # the control: without the installed dist-info on the path, nothing in ajet knows the adapter
    assert "pydantic_ai" not in listed_adapters(None)


def test_loading_the_plugin_imports_neither_its_framework_nor_the_trainer(site_dir: Path) -> None:
    code = "import sys, ajet_pydantic_ai; print([m for m in ('pydantic_ai', 'ajet.trainer') if m in sys.modules])"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site_dir), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, explain(result)
    assert result.stdout.strip() == "[]"


# -- in-process: the example workflow's tool loop through the real gateway ------------------------------------


def calculator_first(prompt_text: str, call_index: int) -> str | None:
    """The first prompt is answered with a calculator call, so Pydantic AI runs its tool and sends the
    result back (the tiny random model never writes a tool call itself); every later completion is the
    model's own."""
    return tool_call("calculator", {"expression": "3 + 4"}) if call_index == 0 else None


@pytest.fixture
async def runtime(
    site_dir: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_and_tokenizer: tuple[Any, Any]
) -> AsyncIterator[Runtime]:
    monkeypatch.syspath_prepend(str(site_dir))  # as if installed: make_plugin_manager() finds the entry point
    # max_tokens: room for the scripted calculator call (33 tokens), cut at max_tokens as a real engine would
    config = load_config(
        CONFIG,
        {
            "rollout.group_size": 1,
            "rollout.sampling.max_tokens": 48,
            "gateway.http": False,
            "store": "memory",
        },
    )
    registry = collect_registry(make_plugin_manager())
    assert registry.adapters["pydantic_ai"].source.package == "ajet-pydantic-ai"
    engine = ScriptedEngine(*tiny_model_and_tokenizer, calculator_first)
    rt = await build_runtime(config, registry, MemoryStore(), engine)
    try:
        yield rt
    finally:
        await rt.close()


def assert_recorded(call: LlmCall) -> None:
    assert call.trainable and call.agent_name == "default"
    assert call.prompt_ids and call.completion_ids
    assert call.logprobs is not None and len(call.logprobs) == len(call.completion_ids)
    assert call.tools is not None and [t["function"]["name"] for t in call.tools] == ["calculator"]


async def test_the_example_agent_calls_its_tool_through_the_gateway_offline(runtime: Runtime) -> None:
    task = load_tasks(runtime.config.data.train, runtime.config.base_dir)[0]  # "What is 3 + 4?"
    with no_sockets() as events:
        (episode,) = await RolloutExecutor(runtime, load_workflow_factory(runtime.config)).run([task])
    assert events == []  # in-process gateway, no telemetry: no connect, no DNS lookup
    assert episode.status == EpisodeStatus.OK, episode.error
    assert episode.metadata["tool_calls"] == 1 and episode.reward in (0.0, 1.0)  # scored by the judger
    first, second = runtime.store.calls(episode.episode_id)
    assert_recorded(first)
    assert_recorded(second)
    assert first.messages[-1] == {"role": "user", "content": "What is 3 + 4?"}
    # Pydantic AI ran the tool and sent the call and its result back: the second prompt carries both
    assistant, tool_result = second.messages[-2:]
    (tool_call,) = assistant["tool_calls"]
    assert tool_call["function"]["name"] == "calculator"
    assert json.loads(tool_call["function"]["arguments"]) == {"expression": "3 + 4"}
    assert tool_result == {"role": "tool", "tool_call_id": tool_call["id"], "content": "7"}


# -- the command line, as a user runs it ---------------------------------------------------------------------


@pytest.mark.slow
def test_ajet_debug_runs_the_example_on_smollm2(site_dir: Path, smollm2_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "trajectories.jsonl"
    result = ajet_with(
        site_dir,
        "debug",
        "-c",
        str(CONFIG),
        "--tasks",
        "1",
        "--store",
        "memory",
        "--out",
        str(out),
        "--strict",
    )
    assert result.returncode == 0, explain(result)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2  # 1 task x group_size 2
    for row in rows:
        assert row["status"] == "ok", row["error"]
        assert row["reward"] in (0.0, 1.0) and "reply" in row["metadata"]
        assert row["calls"], "the agent's model calls are recorded"
        for call in row["calls"]:
            assert_recorded(LlmCall.model_validate(call))
            assert all(lp <= 0.0 for lp in call["logprobs"])
