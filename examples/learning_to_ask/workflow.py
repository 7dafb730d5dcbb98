"""Learning to Ask: a doctor agent questions a simulated patient, then diagnoses, written with the raw OpenAI SDK.

One conversation per episode: the system prompt, the chief complaint, then alternating doctor replies
(`ASK: <question>` or `ANSWER: <label>`) and the patient's answers as user messages, for up to `max_turns`
model calls. Each call extends the previous one's conversation, so the sample builder merges an episode's calls
into one training sequence (`samples/merges` in the metrics). The ajet lines are
`tuner.as_raw_openai_sdk_client()` and the returned `WorkflowOutput`.
"""

from __future__ import annotations

from typing import Any

from patient_env import LABELS, Case, Consultation, RewardWeights

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask

SYSTEM_PROMPT = (
    "You are a doctor. Ask the patient one short question per reply, written as ASK: <question>. "
    "Ask about their symptoms, how long it has lasted, allergies and medications. "
    f"Then give the diagnosis as ANSWER: <one of {', '.join(LABELS)}>."
)


def first_messages(complaint: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": complaint},
    ]


class LearningToAskWorkflow(Workflow):
    max_turns: int = 6  # model calls per episode: four questions, the answer, one spare
    model: str = "ajet-policy"

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        client = tuner.as_raw_openai_sdk_client()
        case = Case.from_metadata(workflow_task.task.metadata)
        consultation = Consultation(case, RewardWeights())
        messages = first_messages(workflow_task.task.main_query)
        for _ in range(self.max_turns):
            response = await client.chat.completions.create(model=self.model, messages=messages)
            reply = response.choices[0].message.content or ""
            # the reply goes back verbatim, so the next call's prompt extends this one token for token
            messages.append({"role": "assistant", "content": reply})
            patient = consultation.respond(reply)
            if consultation.done:
                break
            messages.append({"role": "user", "content": patient})
        return WorkflowOutput(
            reward=consultation.reward,
            is_success=consultation.correct,
            metadata={
                "facts_found": len(consultation.found),
                "facts_hidden": len(case.facts),
                "answer": consultation.answer,
                "diagnosis": case.diagnosis,
                "correct": consultation.correct,
                "questions": consultation.questions,
                "format_errors": consultation.format_errors,
                "turns": sum(m["role"] == "assistant" for m in messages),
            },
        )
