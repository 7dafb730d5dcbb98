"""Single-digit addition with the raw OpenAI SDK: the learning example.

SmolLM2-135M-Instruct answers these right about a quarter of the time when sampling (measured), so groups of
four often mix right and wrong answers: a usable GRPO signal that minutes of CPU training improve. The workflow
returns the reply and the config's judger (`numeric_match`) scores it against the task's label, which the
workflow never sees.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from ajet import AjetTuner, LabeledTask, Workflow, WorkflowOutput, WorkflowTask

SYSTEM_PROMPT = "You are a calculator. Reply with the result only."


class ArithmeticWorkflow(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        client = tuner.as_raw_openai_sdk_client()
        response = await client.chat.completions.create(
            model="ajet-policy",
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": workflow_task.task.main_query},
            ],
        )
        return WorkflowOutput(reward=None, metadata={"reply": response.choices[0].message.content or ""})


def addition_tasks(split: str, held_out: int = 25, seed: int = 0) -> Iterator[LabeledTask]:
    """The 100 problems 'What is a + b?' (a, b in 0..9), shuffled once: the first `held_out` are the validation
    split, the rest the training split, so validation problems are never trained on."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    pairs = [(a, b) for a in range(10) for b in range(10)]
    random.Random(seed).shuffle(pairs)
    chosen = pairs[:held_out] if split == "val" else pairs[held_out:]
    for a, b in chosen:
        yield LabeledTask(task_id=f"{a}+{b}", main_query=f"What is {a} + {b}?", label=a + b)
