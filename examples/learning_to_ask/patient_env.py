"""A simulated patient, written here in pure Python: no network, no language model, every reply deterministic.

A case is a chief complaint the doctor sees first, four hidden facts (one per topic: symptoms, duration,
allergies, medications) and the diagnosis, one of `LABELS`. The complaint never gives the diagnosis away; the
symptoms fact does. The patient answers a question by keyword matching: the topic whose keyword appears earliest
in the question is the one answered, with that topic's fact, word for word. A question that names no topic gets
"I'm not sure." One question reveals at most one fact, so a question listing every topic is answered only on
the first.

`Consultation` runs one episode: it parses the doctor's replies (`ASK: <question>` or `ANSWER: <label>`),
answers them, and scores the episode with `reward` (see `RewardWeights` and the README).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ajet import LabeledTask

LABELS: tuple[str, ...] = ("flu", "migraine", "allergy", "food_poisoning")
TOPICS: tuple[str, ...] = ("symptoms", "duration", "allergies", "medications")

# Keywords are matched as word prefixes in the lowercased question ("allerg" matches "allergic", "allergies").
KEYWORDS: dict[str, tuple[str, ...]] = {
    "symptoms": ("symptom", "feel", "hurt", "pain", "wrong", "else", "other", "describe", "experienc"),
    "duration": ("how long", "when", "start", "began", "begin", "since", "duration", "days"),
    "allergies": ("allerg",),
    "medications": ("medic", "medicine", "drug", "pill", "taking"),
}
NOT_SURE = "I'm not sure."
FORMAT_HELP = "Please ask one question as ASK: <question>, or give your diagnosis as ANSWER: <label>."

COMPLAINTS: tuple[str, ...] = (
    "I don't feel well.",
    "I feel sick, doctor.",
    "Something is wrong with me.",
    "I have felt bad lately.",
)
# The symptoms fact carries the diagnosis: each phrasing names a sign of that condition and no other.
SYMPTOMS: dict[str, tuple[str, ...]] = {
    "flu": (
        "I have a fever and my whole body aches.",
        "I have a high fever and chills.",
        "I have a fever, a cough and sore muscles.",
    ),
    "migraine": (
        "I have a pounding headache and bright light hurts my eyes.",
        "One side of my head throbs and light bothers me.",
        "I have a bad headache and I see flashing lights.",
    ),
    "allergy": (
        "I keep sneezing and my eyes are itchy.",
        "My nose runs and my eyes itch, mostly outside.",
        "I sneeze a lot and I have an itchy rash.",
    ),
    "food_poisoning": (
        "I threw up after eating old chicken.",
        "I have been vomiting since I ate at a food stall.",
        "I have stomach cramps and diarrhea after a meal.",
    ),
}
DURATIONS: tuple[str, ...] = (
    "It started yesterday.",
    "It started two days ago.",
    "It began this morning.",
    "About three days now.",
)
ALLERGIES: tuple[str, ...] = (
    "I have no allergies.",
    "I am allergic to penicillin.",
    "I am allergic to peanuts.",
)
MEDICATIONS: tuple[str, ...] = (
    "I am not taking any medicine.",
    "I take ibuprofen sometimes.",
    "I take a vitamin every day.",
)

_ASK = re.compile(r"\bASK\s*:\s*(.*)", re.IGNORECASE)
_ANSWER = re.compile(r"\bANSWER\s*:\s*(.*)", re.IGNORECASE)


@dataclass(frozen=True)
class Case:
    complaint: str
    facts: dict[str, str]  # topic -> the patient's answer
    diagnosis: str

    def __post_init__(self) -> None:
        if self.diagnosis not in LABELS:
            raise ValueError(f"diagnosis must be one of {', '.join(LABELS)}, not {self.diagnosis!r}")
        unknown = set(self.facts) - set(TOPICS)
        if unknown or not self.facts:
            raise ValueError(
                f"facts must map some of the topics {', '.join(TOPICS)}, got {sorted(self.facts)}"
            )

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> Case:
        return cls(metadata["complaint"], dict(metadata["facts"]), metadata["diagnosis"])


def topic_of(question: str) -> str | None:
    """The topic the question asks about: the one whose keyword appears earliest in it, or None."""
    text = question.lower()
    best: tuple[int, str] | None = None
    for topic, words in KEYWORDS.items():
        for word in words:
            match = re.search(r"\b" + re.escape(word), text)
            if match and (best is None or match.start() < best[0]):
                best = (match.start(), topic)
    return None if best is None else best[1]


def parse_label(text: str) -> str | None:
    """The label an answer names ("Food poisoning." -> food_poisoning), or None when it names none."""
    words = re.sub(r"[^a-z]+", " ", text.lower()).split()
    joined = "_".join(words)
    for label in LABELS:
        if joined == label or joined.startswith(label + "_") or (words and words[0] == label):
            return label
    return None


@dataclass(frozen=True)
class RewardWeights:
    """reward = facts * (facts found / facts hidden) + answer * (diagnosis right)
    - format_error * (replies with neither ASK: nor ANSWER:) - extra_question * (questions beyond the facts)."""

    facts: float = 0.5
    answer: float = 0.5
    format_error: float = 0.1
    extra_question: float = 0.05


@dataclass
class Consultation:
    """One episode: feed it the doctor's replies with `respond`, read the patient's answers and the score."""

    case: Case
    weights: RewardWeights = field(default_factory=RewardWeights)
    found: set[str] = field(default_factory=set)
    questions: int = 0
    format_errors: int = 0
    answer: str | None = None  # the label given, "" for an ANSWER: naming no label
    done: bool = False

    def respond(self, reply: str) -> str:
        """The patient's answer to one doctor reply (its first ASK: or ANSWER:, whichever comes first)."""
        if self.done:
            return "The consultation is over."
        ask, answer = _ASK.search(reply), _ANSWER.search(reply)
        if answer and (ask is None or answer.start() < ask.start()):
            self.answer = parse_label(answer.group(1).splitlines()[0] if answer.group(1) else "") or ""
            self.done = True
            return "Thank you, doctor."
        if ask is None:
            self.format_errors += 1
            return FORMAT_HELP
        self.questions += 1
        question = ask.group(1).splitlines()[0] if ask.group(1) else ""
        topic = topic_of(question)
        if topic is None or topic not in self.case.facts:
            return NOT_SURE
        self.found.add(topic)
        return self.case.facts[topic]

    @property
    def correct(self) -> bool:
        return self.answer == self.case.diagnosis

    @property
    def facts_fraction(self) -> float:
        return len(self.found) / len(self.case.facts)

    @property
    def reward(self) -> float:
        w = self.weights
        extra = max(0, self.questions - len(self.case.facts))
        score = w.facts * self.facts_fraction + w.answer * self.correct
        return round(score - w.format_error * self.format_errors - w.extra_question * extra, 6)


def make_case(rng: random.Random) -> Case:
    diagnosis = rng.choice(LABELS)
    facts = {
        "symptoms": rng.choice(SYMPTOMS[diagnosis]),
        "duration": rng.choice(DURATIONS),
        "allergies": rng.choice(ALLERGIES),
        "medications": rng.choice(MEDICATIONS),
    }
    return Case(rng.choice(COMPLAINTS), facts, diagnosis)


def patient_tasks(
    split: str, train_size: int = 1000, val_size: int = 64, seed: int = 0
) -> Iterator[LabeledTask]:
    """Cases from one seeded stream: the first `val_size` distinct cases are the validation split, the next
    `train_size` the training split, so the splits never share a case and the same arguments give the same
    tasks. The task's `main_query` is the chief complaint; its metadata holds the case (the workflow's patient
    reads it, the model never sees it) and its label is the diagnosis."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    rng = random.Random(seed)
    seen: set[tuple[str, ...]] = set()
    wanted = val_size if split == "val" else val_size + train_size
    draws = 0
    while len(seen) < wanted:
        draws += 1
        if draws > 100 * wanted:
            raise ValueError(f"only {len(seen)} distinct cases found for {wanted} wanted; lower the sizes")
        case = make_case(rng)
        key = (case.complaint, *case.facts.values())
        if key in seen:
            continue
        seen.add(key)
        index = len(seen) - 1 if split == "val" else len(seen) - 1 - val_size
        if index < 0:
            continue  # a validation case, skipped in the training split
        yield LabeledTask(
            task_id=f"{split}-{index}",
            main_query=case.complaint,
            label=case.diagnosis,
            metadata={"complaint": case.complaint, "facts": case.facts, "diagnosis": case.diagnosis},
        )
