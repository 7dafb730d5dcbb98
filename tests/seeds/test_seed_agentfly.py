"""AgentFly's "Build an Agent" (seed 004) in ajet: an agent with `tools=[calculator]` run with `max_turns=3`,
`num_chains=1` on "What is the result of 1 + 1?", then its trajectories and `tokenize_trajectories()`.

    AgentFly                                        ajet
    HFAgent(model_name_or_path=..., tools=[calc])   config: model.path, workflow ReActWorkflow, tools: [calculator]
    agent.run(messages, max_turns=3, num_chains=1)  workflow.args.max_turns: 3, rollout.group_size: 1, ajet debug
    result.trajectories                             ajet.trainer.token_dataset.trajectories(out)
    agent.tokenize_trajectories()                   ajet.tokenize_trajectories(out) / ajet tokenize out --out ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from ajet import tokenize_trajectories
from ajet.cli.main import app
from ajet.trainer.token_dataset import trajectories
from tests.examples.cli import debug_episodes

# `from agentfly.tools import calculator`: here the tool is a plain function in the user's file
TOOLS = '''
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as 1 + 1.

    Args:
        expression: the expression to evaluate, with + - * / and parentheses
    """
    import ast

    return str(eval(compile(ast.parse(expression, mode="eval"), "<calculator>", "eval"), {"__builtins__": {}}))
'''


def agent_config(directory: Path, model: str) -> Path:
    """The seed's HFAgent(tools=[calculator]) + agent.run(max_turns=3, num_chains=1), as an ajet config."""
    (directory / "tools.py").write_text(TOOLS)
    task = {"id": "one-plus-one", "question": "What is the result of 1 + 1?", "answer": 2}
    (directory / "tasks.jsonl").write_text(json.dumps(task) + "\n")
    config = {
        "name": "agentfly-seed",
        "framework": "openai_sdk",
        "workflow": {
            "path": "ajet.workflows.react:ReActWorkflow",
            "args": {"tools": ["tools.py:calculator"], "max_turns": 3},
        },
        "judger": {"path": "numeric_match", "args": {"field": "answer"}},
        "model": {"path": model},
        "rollout": {"group_size": 1, "sampling": {"max_tokens": 32}},  # num_chains=1
        "data": {
            "train": {
                "kind": "file",
                "path": "tasks.jsonl",
                "fields": {"task_id": "id", "main_query": "question", "label": "answer"},
            }
        },
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("model", ["tiny", pytest.param("smollm2-135m-instruct", marks=pytest.mark.slow)])
def test_agentfly_seed_tokenize_trajectories(
    model: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tiny_model_and_tokenizer: tuple[Any, Any],
) -> None:
    if model == "tiny":
        model = str(request.getfixturevalue("tiny_dir"))
    _, tokenizer = tiny_model_and_tokenizer  # SmolLM2's tokenizer, which both models use
    out = tmp_path / "trajectories.jsonl"
    episodes = debug_episodes(agent_config(tmp_path, model), out)  # `result = await agent.run(...)`
    assert len(episodes) == 1  # one query, num_chains=1
    calls = {call["call_id"]: call for call in episodes[0]["calls"]}
    assert 1 <= len(calls) <= 3  # max_turns=3

    # `result.trajectories`: the conversation as OpenAI messages, the final assistant reply included
    (trajectory,) = trajectories(out)
    messages = trajectory["messages"]
    assert messages[1] == {"role": "user", "content": "What is the result of 1 + 1?"}
    assert messages[-1]["role"] == "assistant"

    # `inputs = agent.tokenize_trajectories()`
    inputs = tokenize_trajectories(out)
    assert inputs and sum(row["num_calls"] for row in inputs) == len(calls)
    for row in inputs:
        input_ids, labels, action_mask = row["input_ids"], row["labels"], row["action_mask"]
        assert len(input_ids) == len(row["attention_mask"]) == len(labels) == len(action_mask)
        assert labels == [t if m else -100 for t, m in zip(input_ids, action_mask, strict=True)]
        # action_mask is 1 exactly on what the engine generated: one run of 1s per call, its completion ids
        runs = _runs_of_ones(action_mask)
        row_calls = [calls[call_id] for call_id in row["call_ids"]]
        assert len(runs) == len(row_calls)
        for (start, end), call in zip(runs, row_calls, strict=True):
            assert input_ids[start:end] == call["completion_ids"]
            text = tokenizer.decode(input_ids[start:end], skip_special_tokens=True)
            assert text == call["completion_text"]
            assert input_ids[:start] == call["prompt_ids"]  # merged: everything before is the prompt it saw

    # the same through the command line, to Parquet, read back with pyarrow
    data = tmp_path / "data.parquet"
    result = CliRunner().invoke(app, ["tokenize", str(out), "--out", str(data)])
    assert result.exit_code == 0, result.output
    assert f"wrote {len(inputs)} samples" in result.output
    assert pq.read_table(data).to_pylist() == inputs


def _runs_of_ones(mask: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each maximal run of 1s."""
    runs: list[tuple[int, int]] = []
    for i, m in enumerate(mask):
        if m and (i == 0 or not mask[i - 1]):
            runs.append((i, i))
        if m:
            runs[-1] = (runs[-1][0], i + 1)
    return runs
