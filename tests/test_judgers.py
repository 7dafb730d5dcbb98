"""Judgers that read the episode's trajectory: a judger declaring `messages` (or `calls`) gets the recorded
conversation of the trained agent, through the real runtime (gateway, recorder, store) and a scripted engine."""

from __future__ import annotations

from typing import Any

import pytest

from ajet import AjetTuner, LabeledTask, Workflow, WorkflowOutput, WorkflowTask
from ajet.core.config import ConfigError, parse_config
from ajet.core.judgers import JudgeResult, judge_episode, make_judge
from ajet.core.plugins import load_registry
from ajet.core.rollout import RolloutExecutor
from ajet.core.runtime import build_runtime, load_judge
from ajet.core.store.memory import MemoryStore
from ajet.core.types import EpisodeStatus, LlmCall
from tests.adapters.scripted_engine import ScriptedEngine

TASK = LabeledTask(task_id="capital", main_query="What is the capital of France?", label="Paris")


class AskTwice(Workflow):
    """Answers, is asked to be brief, answers again; returns no reward, so the judger scores the episode."""

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        client = tuner.as_raw_openai_sdk_client(agent_name="solver")
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": workflow_task.task.main_query},
        ]
        for follow_up in ("Say only the city.", None):
            reply = await client.chat.completions.create(model="m", messages=messages, max_tokens=16)
            messages.append({"role": "assistant", "content": reply.choices[0].message.content})
            if follow_up:
                messages.append({"role": "user", "content": follow_up})
        return WorkflowOutput(metadata={"answer": messages[-1]["content"]})


async def test_a_judger_that_declares_messages_reads_the_conversation(
    tiny_model_and_tokenizer: tuple[Any, Any],
) -> None:
    seen: dict[str, Any] = {}

    def reads_the_trajectory(task: LabeledTask, output: WorkflowOutput, messages: list, calls: list) -> float:
        seen.update(messages=messages, calls=calls)
        return 1.0 if messages[-1]["content"] == task.label else 0.0

    config = parse_config({"workflow": "unused:Unused", "gateway": {"http": False}})
    engine = ScriptedEngine(*tiny_model_and_tokenizer, ["It is Paris, in France.", "Paris"])
    runtime = await build_runtime(config, store=MemoryStore(), engine=engine)
    runtime.judge = make_judge(reads_the_trajectory, {})
    try:
        executor = RolloutExecutor(runtime, AskTwice)
        executor.settings.group_size = 1
        (episode,) = await executor.run([TASK])
    finally:
        await runtime.close()
    assert episode.status == EpisodeStatus.OK and episode.reward == 1.0, episode.error
    assert [m["role"] for m in seen["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert [m["content"] for m in seen["messages"][2:]] == [
        "It is Paris, in France.",
        "Say only the city.",
        "Paris",
    ]
    assert [(c.agent_name, c.seq) for c in seen["calls"]] == [("solver", 0), ("solver", 1)]


def _call(content: str) -> LlmCall:
    return LlmCall(
        episode_id="e",
        messages=[{"role": "user", "content": "q"}],
        finish_reason="stop",
        response={"role": "assistant", "content": content},
    )


async def test_a_class_judger_gets_messages_and_a_plain_one_never_reads_the_store() -> None:
    class LastWord:
        def __init__(self, word: str) -> None:
            self.word = word

        async def __call__(self, task: LabeledTask, output: WorkflowOutput, messages: list) -> JudgeResult:
            return JudgeResult(float(messages[-1]["content"].endswith(self.word)), explanation="read it")

    judged = await judge_episode(
        make_judge(LastWord, {"word": "Paris"}), TASK, WorkflowOutput(), lambda: [_call("Paris")]
    )
    assert judged.reward == 1.0 and judged.metadata["judge_explanation"] == "read it"

    def no_store() -> list[LlmCall]:
        raise AssertionError("a judger that asks for no trajectory must not make the store be read")

    plain = make_judge(lambda task, output, field="answer": float(output.metadata[field] == task.label), {})
    assert (
        await judge_episode(plain, TASK, WorkflowOutput(metadata={"answer": "Paris"}), no_store)
    ).reward == 1.0


def grader(task: LabeledTask, output: WorkflowOutput, messages: list) -> float:
    return 0.0


def test_args_cannot_take_the_trajectorys_names() -> None:
    judger = {"path": "tests.test_judgers:grader", "args": {"messages": []}}
    config = parse_config({"workflow": "unused:Unused", "judger": judger})
    with pytest.raises(ConfigError) as error:
        load_judge(config, load_registry())
    assert "judger.args do not fit" in str(error.value)
    assert "messages are filled in with the episode's trajectory; rename these args" in str(error.value)
