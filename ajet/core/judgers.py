"""Judgers: score an episode from its task (with the reference label) and the workflow's output, for workflows
that return `reward=None`.

A judger is a function or a class instance with `__call__(task, output) -> float | bool | JudgeResult`, sync or
async. Configure one with `judger: numeric_match` (a built-in), `judger: {path: my_pkg.judges:strict, args: ...}`,
or a plugin's `register_judgers` hook. A class is instantiated with `args`; for a function, `args` are passed as
keyword arguments on every call.

A grader that reads the trajectory, not only the output's metadata, declares a parameter for it:

    def concise(task, output, messages):   # the episode's conversation, OpenAI chat format
        return 1.0 if len(messages[-1]["content"] or "") < 200 else 0.0

- `messages`: the conversation of the episode's last recorded call: its request messages (system, user,
  assistant, tool, ...) followed by the assistant's response. For one agent that keeps its history (a ReAct loop,
  a Strands or OpenAI Agents agent) this is the whole trajectory.
- `calls`: every recorded `LlmCall` of the episode, in order (each with `agent_name`, `target_tag`, `messages`,
  `response`), for episodes with several agents or an agent that rewrites its history.

Only the calls of trained agents are recorded (an untrained role's calls, or a framework model that bypasses the
tuner, are not), so these hold what the trained agents said and saw.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ajet.core.types import LabeledTask, LlmCall, WorkflowOutput


@dataclass(frozen=True)
class JudgeResult:
    reward: float
    is_success: bool | None = None
    explanation: str | None = None


class JudgeError(ValueError):
    pass


def _answer(output: WorkflowOutput, field: str) -> Any:
    if field not in output.metadata:
        raise JudgeError(
            f"the workflow output has no metadata[{field!r}] to judge; return "
            f"WorkflowOutput(metadata={{{field!r}: ...}}) or set judger.args.field"
        )
    return output.metadata[field]


def exact_match(
    task: LabeledTask, output: WorkflowOutput, *, field: str = "answer", case_sensitive: bool = False
) -> JudgeResult:
    """1.0 when `output.metadata[field]` equals the label as text (trimmed; case-insensitive by default)."""
    answer, label = str(_answer(output, field)).strip(), str(task.label).strip()
    if not case_sensitive:
        answer, label = answer.lower(), label.lower()
    ok = answer == label
    return JudgeResult(1.0 if ok else 0.0, ok)


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def parse_number(value: Any) -> float | None:
    """A number, or the last number in a text ('... so the answer is 12.' -> 12.0); None when there is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    found = _NUMBER.findall(str(value).replace(",", ""))
    return float(found[-1]) if found else None


def numeric_match(
    task: LabeledTask, output: WorkflowOutput, *, field: str = "answer", tolerance: float = 1e-6
) -> JudgeResult:
    """1.0 when the number in `output.metadata[field]` is within `tolerance` of the numeric label."""
    expected = parse_number(task.label)
    if expected is None:
        raise JudgeError(f"task {task.task_id}: the label {task.label!r} is not a number")
    got = parse_number(_answer(output, field))
    ok = got is not None and abs(got - expected) <= tolerance * max(1.0, abs(expected))
    return JudgeResult(1.0 if ok else 0.0, ok)


DEFAULT_JUDGE_PROMPT = (
    "You grade answers. Question:\n{question}\n\nReference answer:\n{label}\n\nCandidate answer:\n{answer}\n\n"
    "Is the candidate answer correct? Reply with one word: YES or NO."
)


class LlmJudge:
    """Asks any OpenAI-compatible endpoint whether the answer is right: reward 1.0 for YES, 0.0 for NO."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "none",
        field: str = "answer",
        prompt: str = DEFAULT_JUDGE_PROMPT,
        timeout_s: float = 60.0,
    ) -> None:
        self.base_url, self.model, self.api_key = base_url.rstrip("/"), model, api_key
        self.field, self.prompt, self.timeout_s = field, prompt, timeout_s

    async def __call__(self, task: LabeledTask, output: WorkflowOutput) -> JudgeResult:
        import httpx

        content = self.prompt.format(
            question=task.main_query, label=task.label, answer=_answer(output, self.field)
        )
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            response = await http.post(
                f"{self.base_url}/chat/completions",
                headers={"Authorization": f"Bearer {self.api_key}"},
                json={
                    "model": self.model,
                    "messages": [{"role": "user", "content": content}],
                    "temperature": 0,
                },
            )
        if response.status_code != 200:
            raise JudgeError(
                f"judge endpoint {self.base_url} answered {response.status_code}: {response.text[:200]}"
            )
        verdict = (response.json()["choices"][0]["message"].get("content") or "").strip()
        ok = verdict.upper().startswith("YES")
        return JudgeResult(1.0 if ok else 0.0, ok, explanation=verdict[:200])


BUILTIN_JUDGERS: dict[str, Callable[..., Any]] = {
    "exact_match": exact_match,
    "numeric_match": numeric_match,
    "llm_judge": LlmJudge,
}

#: a configured judger: (task, output, the episode's recorded calls, read only when the judger asks) -> result
Judge = Callable[[LabeledTask, WorkflowOutput, Callable[[], Sequence[LlmCall]]], Any]
#: the parameters a judger may declare to get the episode's trajectory (see the module docstring)
EPISODE_PARAMETERS = ("messages", "calls")


def conversation(calls: Sequence[LlmCall]) -> list[dict[str, Any]]:
    """The conversation of the last call: its request messages, then the response, as OpenAI chat messages."""
    if not calls:
        return []
    last = calls[-1]
    return [*(dict(m) for m in last.messages), {"role": "assistant", **last.response}]


def make_judge(target: Any, args: dict[str, Any]) -> Judge:
    """A class becomes an instance built with `args`; a function gets `args` as keyword arguments on each call.
    A judger that declares `messages` or `calls` also gets the episode's trajectory."""
    if inspect.isclass(target):
        fn, fixed = target(**args), {}
    elif callable(target):
        fn, fixed = target, dict(args)
    else:
        raise JudgeError(f"a judger must be a function or a class, got {target!r}")
    taken = sorted(set(fixed) & set(EPISODE_PARAMETERS))
    if taken:
        raise TypeError(f"{', '.join(taken)} are filled in with the episode's trajectory; rename these args")
    wants = _declared(fn)

    def judge(task: LabeledTask, output: WorkflowOutput, calls: Callable[[], Sequence[LlmCall]]) -> Any:
        trajectory: dict[str, Any] = {}
        if wants:
            recorded = list(calls())
            trajectory = {"messages": conversation(recorded), "calls": recorded}
        return fn(task, output, **{name: trajectory[name] for name in wants}, **fixed)

    return judge


def _declared(fn: Callable[..., Any]) -> list[str]:
    """Which of EPISODE_PARAMETERS `fn` names as parameters (a bare **kwargs asks for none of them)."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        return []
    return [
        name
        for name in EPISODE_PARAMETERS
        if name in parameters and parameters[name].kind is not inspect.Parameter.POSITIONAL_ONLY
    ]


async def judge_episode(
    judge: Judge,
    task: LabeledTask,
    output: WorkflowOutput,
    calls: Callable[[], Sequence[LlmCall]] = lambda: [],
) -> WorkflowOutput:
    """The output with the judger's reward (and success, when it says) filled in. Non-finite rewards raise.
    `calls` reads the episode's recorded calls, for a judger that asks for `messages` or `calls`."""
    result = judge(task, output, calls)
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, bool | int | float):
        result = JudgeResult(float(result))
    if not isinstance(result, JudgeResult):
        raise JudgeError(f"the judger returned {result!r}; return a number, a bool or a JudgeResult")
    if not math.isfinite(result.reward):
        raise JudgeError(f"the judger returned a non-finite reward ({result.reward})")
    metadata = dict(output.metadata)
    if result.explanation:
        metadata["judge_explanation"] = result.explanation
    is_success = result.is_success if result.is_success is not None else output.is_success
    return WorkflowOutput(reward=result.reward, is_success=is_success, metadata=metadata)
