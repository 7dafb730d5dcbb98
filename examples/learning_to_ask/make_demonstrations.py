"""Writes data/demonstrations.jsonl: scripted consultations for the supervised warm start (warm_start.yaml).
Each asks one question per topic (symptoms, duration, allergies, medications; the phrasing varies), gets the
simulated patient's real answers, and ends with the right diagnosis. The cases are the first training cases,
never validation ones.

    python examples/learning_to_ask/make_demonstrations.py
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from patient_env import TOPICS, Case, Consultation, patient_tasks  # noqa: E402
from workflow import first_messages  # noqa: E402

QUESTIONS: dict[str, tuple[str, ...]] = {
    "symptoms": ("What symptoms do you have?", "How do you feel?", "Can you describe your symptoms?"),
    "duration": ("How long have you had this?", "When did it start?", "How long has it lasted?"),
    "allergies": ("Do you have any allergies?", "Are you allergic to anything?"),
    "medications": ("What medications are you taking?", "Do you take any medicine?"),
}


def demonstration(case: Case, rng: random.Random) -> dict[str, Any]:
    consultation = Consultation(case)
    messages = first_messages(case.complaint)
    for topic in TOPICS:
        reply = f"ASK: {rng.choice(QUESTIONS[topic])}"
        messages.append({"role": "assistant", "content": reply})
        messages.append({"role": "user", "content": consultation.respond(reply)})
    reply = f"ANSWER: {case.diagnosis}"
    messages.append({"role": "assistant", "content": reply})
    consultation.respond(reply)
    assert consultation.reward == 1.0, (case, consultation)
    return {"messages": messages}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write the scripted demonstrations for warm_start.yaml.")
    parser.add_argument("--count", type=int, default=256, help="how many demonstrations (default 256)")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "demonstrations.jsonl")
    args = parser.parse_args()
    rng = random.Random(0)
    tasks = patient_tasks("train", train_size=args.count)
    rows = [demonstration(Case.from_metadata(task.metadata), rng) for task in tasks]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"wrote {len(rows)} demonstrations to {args.out}")
