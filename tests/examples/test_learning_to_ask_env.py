"""The simulated patient in examples/learning_to_ask/patient_env.py: topic matching, deterministic answers, the
reply format, hand-computed rewards, and reproducible task splits; and the committed demonstrations."""

from __future__ import annotations

import inspect
import json
import random
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ajet.core.tasks import import_object

EXAMPLE = Path(__file__).parents[2] / "examples" / "learning_to_ask"

FACTS = {
    "symptoms": "I have a high fever and chills.",
    "duration": "It started yesterday.",
    "allergies": "I am allergic to penicillin.",
    "medications": "I take ibuprofen sometimes.",
}


@pytest.fixture(scope="module")
def env() -> ModuleType:
    # loaded the way ajet loads a file the config names
    module = inspect.getmodule(import_object(f"{EXAMPLE / 'patient_env.py'}:Case"))
    assert module is not None
    return module


@pytest.fixture
def case(env: ModuleType) -> object:
    return env.Case("I don't feel well.", dict(FACTS), "flu")


def test_questions_are_matched_to_the_earliest_topic_they_name(env: ModuleType) -> None:
    assert env.topic_of("What symptoms do you have?") == "symptoms"
    assert env.topic_of("How long have you felt this way?") == "duration"
    assert env.topic_of("When did it start?") == "duration"
    assert env.topic_of("Are you ALLERGIC to anything?") == "allergies"
    assert env.topic_of("Which medications are you taking?") == "medications"
    assert env.topic_of("Are you taking pills for the pain?") == "medications"  # "taking" before "pain"
    assert env.topic_of("Any allergies, medications or symptoms?") == "allergies"  # one question, one topic
    assert env.topic_of("What is your name?") is None
    assert env.topic_of("Is it painless?") == "symptoms"  # keywords are word prefixes
    assert env.topic_of("Did you eat today?") is None  # "days" must start a word


def test_the_patient_answers_with_the_fact_or_is_not_sure(env: ModuleType, case: object) -> None:
    visit = env.Consultation(case)
    assert visit.respond("ASK: What symptoms do you have?") == FACTS["symptoms"]
    assert visit.respond("Let me see. ask: how long has it lasted?\nand more") == FACTS["duration"]
    assert visit.respond("ASK: What is your name?") == env.NOT_SURE
    assert visit.respond("ASK: how do you feel?") == FACTS["symptoms"]  # asked again: same words
    assert visit.found == {"symptoms", "duration"} and visit.questions == 4 and not visit.done
    # the same questions always get the same answers
    again = env.Consultation(case)
    assert again.respond("ASK: What symptoms do you have?") == FACTS["symptoms"]


def test_a_reply_with_neither_ask_nor_answer_is_a_format_error(env: ModuleType, case: object) -> None:
    visit = env.Consultation(case)
    assert visit.respond("You probably have the flu.") == env.FORMAT_HELP
    assert visit.respond("") == env.FORMAT_HELP
    assert visit.format_errors == 2 and visit.questions == 0 and not visit.done


def test_the_answer_ends_the_consultation_and_names_a_label(env: ModuleType, case: object) -> None:
    visit = env.Consultation(case)
    assert visit.respond("ANSWER: Flu.") == "Thank you, doctor."
    assert visit.done and visit.answer == "flu" and visit.correct
    assert visit.respond("ASK: anything else?") == "The consultation is over."
    assert visit.questions == 0
    assert env.parse_label("food poisoning, I think") == "food_poisoning"
    assert env.parse_label("Food_Poisoning") == "food_poisoning"
    assert env.parse_label("a cold") is None
    # whichever comes first counts
    first = env.Consultation(case)
    first.respond("ANSWER: migraine. ASK: any allergies?")
    assert first.done and first.answer == "migraine" and not first.correct
    unknown = env.Consultation(case)
    unknown.respond("ANSWER: a cold")
    assert unknown.done and unknown.answer == "" and not unknown.correct


def test_rewards_by_hand(env: ModuleType, case: object) -> None:
    # all four facts, right answer: 0.5 * 4/4 + 0.5 = 1.0
    perfect = env.Consultation(case)
    for question in ("symptoms?", "how long?", "allergies?", "medications?"):
        perfect.respond(f"ASK: {question}")
    perfect.respond("ANSWER: flu")
    assert perfect.reward == 1.0
    # two facts, one format error, wrong answer: 0.5 * 2/4 - 0.1 = 0.15
    partial = env.Consultation(case)
    partial.respond("ASK: What symptoms?")
    partial.respond("I think it is a cold")
    partial.respond("ASK: When did it begin?")
    partial.respond("ANSWER: allergy")
    assert partial.reward == pytest.approx(0.15)
    # six questions (two beyond the four facts), three facts, right answer: 0.5*3/4 + 0.5 - 2*0.05 = 0.775
    chatty = env.Consultation(case)
    for question in ("symptoms?", "symptoms?", "name?", "how long?", "allergies?", "age?"):
        chatty.respond(f"ASK: {question}")
    chatty.respond("ANSWER: flu")
    assert chatty.reward == pytest.approx(0.775)
    # no answer at all: facts only
    silent = env.Consultation(case)
    silent.respond("ASK: any allergies?")
    assert silent.reward == pytest.approx(0.125) and silent.answer is None and not silent.correct
    # weights are settable
    weighted = env.Consultation(case, env.RewardWeights(facts=1.0, answer=0.0))
    weighted.respond("ASK: any allergies?")
    assert weighted.reward == pytest.approx(0.25)


def test_bad_cases_are_refused(env: ModuleType) -> None:
    with pytest.raises(ValueError, match="diagnosis must be one of"):
        env.Case("hi", dict(FACTS), "cold")
    with pytest.raises(ValueError, match="facts must map"):
        env.Case("hi", {"age": "40"}, "flu")


def test_the_symptoms_fact_names_its_diagnosis_and_the_complaint_does_not(env: ModuleType) -> None:
    for task in env.patient_tasks("val"):
        case = env.Case.from_metadata(task.metadata)
        assert case.facts["symptoms"] in env.SYMPTOMS[case.diagnosis]
        assert task.main_query == case.complaint in env.COMPLAINTS
        assert task.label == case.diagnosis
    every_symptom = [s for phrasings in env.SYMPTOMS.values() for s in phrasings]
    assert len(set(every_symptom)) == len(every_symptom)


def test_task_splits_are_reproducible_and_disjoint(env: ModuleType) -> None:
    val = list(env.patient_tasks("val"))
    train = list(env.patient_tasks("train", train_size=200))
    assert len(val) == 64 and len(train) == 200
    assert [t.task_id for t in val[:2]] == ["val-0", "val-1"] and train[0].task_id == "train-0"
    assert [t.metadata for t in val] == [t.metadata for t in env.patient_tasks("val")]
    keys = {json.dumps(t.metadata, sort_keys=True) for t in val}
    assert not keys & {json.dumps(t.metadata, sort_keys=True) for t in train}
    assert {t.label for t in val} == set(env.LABELS)
    with pytest.raises(ValueError, match="split must be"):
        list(env.patient_tasks("test"))
    with pytest.raises(ValueError, match="distinct cases"):
        list(env.patient_tasks("train", train_size=5000))
    assert env.make_case(random.Random(3)) == env.make_case(random.Random(3))


def test_committed_demonstrations_are_what_the_script_writes(tmp_path: Path) -> None:
    out = tmp_path / "demonstrations.jsonl"
    script = EXAMPLE / "make_demonstrations.py"
    result = subprocess.run([sys.executable, str(script), "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == (EXAMPLE / "data" / "demonstrations.jsonl").read_text()
    first = json.loads(out.read_text().splitlines()[0])["messages"]
    assert [m["role"] for m in first] == ["system", "user"] + ["assistant", "user"] * 4 + ["assistant"]
    assert first[-1]["content"].startswith("ANSWER: ")
