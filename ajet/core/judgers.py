"""Judgers: score an episode from its task (with the reference label) and the workflow's output, for workflows
that return `reward=None`.

A judger is a function or a class instance with `__call__(task, output) -> float | bool | JudgeResult`, sync or
async. Configure one with `judger: numeric_match` (a built-in), `judger: {path: my_pkg.judges:strict, args: ...}`,
or a plugin's `register_judgers` hook. A class is instantiated with `args`; for a function, `args` are passed as
keyword arguments on every call.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ajet.core.types import LabeledTask, WorkflowOutput


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

Judge = Callable[[LabeledTask, WorkflowOutput], Any]


def make_judge(target: Any, args: dict[str, Any]) -> Judge:
    """A class becomes an instance built with `args`; a function gets `args` as keyword arguments on each call."""
    if inspect.isclass(target):
        return target(**args)
    if not callable(target):
        raise JudgeError(f"a judger must be a function or a class, got {target!r}")
    return lambda task, output: target(task, output, **args)


async def judge_episode(judge: Judge, task: LabeledTask, output: WorkflowOutput) -> WorkflowOutput:
    """The output with the judger's reward (and success, when it says) filled in. Non-finite rewards raise."""
    result = judge(task, output)
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
