"""A grader in Osmosis' manner for the seed 003 workflows: it reads the trained agent's conversation (the judger
declares `messages`) and compares the last answer with the task's label."""

from ajet import LabeledTask, WorkflowOutput
from ajet.core.judgers import JudgeResult


def grade(task: LabeledTask, output: WorkflowOutput, messages: list[dict]) -> JudgeResult:
    answer = (messages[-1].get("content") or "") if messages else ""
    roles = ",".join(m["role"] for m in messages)
    return JudgeResult(
        float(str(task.label) in str(answer)), explanation=f"read {len(messages)} messages: {roles}"
    )
