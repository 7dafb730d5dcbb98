"""The Countdown rules in examples/countdown/countdown_game.py: the safe evaluator, the numbers check, the reward,
and the task generator (reproducible, disjoint splits, every puzzle solvable)."""

from __future__ import annotations

import inspect
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import pytest

from ajet.core.tasks import import_object

GAME_FILE = Path(__file__).parents[2] / "examples" / "countdown" / "countdown_game.py"


@pytest.fixture(scope="module")
def game() -> ModuleType:
    # loaded the way ajet loads a file the config names
    module = inspect.getmodule(import_object(f"{GAME_FILE}:score"))
    assert module is not None
    return module


def test_evaluates_exactly_with_precedence_and_reports_numbers(game: ModuleType) -> None:
    result = game.evaluate_expression(" (3 + 5) * 2 - 7 / 2 ")
    assert result.value == Fraction(25, 2)
    assert result.numbers == [3, 5, 2, 7, 2]
    assert result.operators == 4


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('true')", "Call is not allowed"),
        ("x + 1", "Name is not allowed"),
        ("(1).real", "Attribute is not allowed"),
        ("2 ** 3", "Pow is not allowed"),
        ("7 % 3", "Mod is not allowed"),
        ("7 // 2", "FloorDiv is not allowed"),
        ("-3 + 5", "signs like -3"),
        ("1.5 * 2", "only whole numbers"),
        ("True + 1", "only whole numbers"),
        ("'a' + 'b'", "only whole numbers"),
        ("3 / (2 - 2)", "division by zero"),
        ("3 +", "does not parse"),
        ("", "empty"),
        ("1 + " * 60 + "1", "longer than"),
        ("[1, 2]", "List is not allowed"),
        ("1 if 1 else 2", "IfExp is not allowed"),
    ],
)
def test_rejects_everything_but_numbers_and_four_operators(
    game: ModuleType, expression: str, reason: str
) -> None:
    with pytest.raises(game.ExpressionError, match=reason):
        game.evaluate_expression(expression)


def test_each_given_number_may_be_used_at_most_once(game: ModuleType) -> None:
    assert game.unavailable_numbers([3, 5], [3, 5, 7]) == []
    assert game.unavailable_numbers([3, 3], [3, 5, 7]) == [3]
    assert game.unavailable_numbers([3, 3], [3, 3, 7]) == []
    assert game.unavailable_numbers([4, 9, 9], [3, 5]) == [4, 9, 9]


def test_score_full_partial_and_zero(game: ModuleType) -> None:
    numbers, target = [3, 5, 7], 22
    assert game.score("3 * 5 + 7", numbers, target) == 1.0
    assert game.score("7 + 3 * 5", numbers, target) == 1.0
    assert game.score("3 + 5", numbers, target) == 0.1  # well-formed, given numbers, wrong value
    assert game.score("3 * 5 + 7 + 7", numbers, target) == 0.0  # 7 used twice
    assert game.score("2 * 11", numbers, target) == 0.0  # right value, numbers not given
    assert game.score("22", numbers, target) == 0.0
    assert game.score("3 +", numbers, target) == 0.0
    assert game.score("", numbers, target) == 0.0


@pytest.mark.parametrize(
    ("reply", "expression"),
    [
        ("The answer is (3 + 5) * 2 = 16.", "(3 + 5) * 2"),
        ("Let me try 1 + 2.\n<answer>3 * 5 + 7 = 22</answer>", "3 * 5 + 7"),
        ("<answer>3*5+7</answer> and later 1 + 1", "3*5+7"),
        ("I cannot solve this.", ""),
        ("", ""),
    ],
)
def test_the_expression_is_taken_from_the_answer_tag_or_the_last_arithmetic(
    game: ModuleType, reply: str, expression: str
) -> None:
    assert game.extract_expression(reply) == expression


def test_tool_report_never_raises_and_says_what_happened(game: ModuleType) -> None:
    assert game.describe("3*5+7", [3, 5, 7], 22) == "3*5+7 = 22 (uses 3, 5, 7). This reaches the target 22."
    assert game.describe("3+5", [3, 5, 7], 22) == "3+5 = 8 (uses 3, 5). The target is 22."
    not_given = "7/2 = 7/2 (uses 7, 2). Not allowed: 2 (use only [3, 5, 7], each at most once)."
    assert game.describe("7/2", [3, 5, 7], 22) == not_given
    assert game.describe("open('x')", [3], 3).startswith("error: Call is not allowed")


def test_tasks_are_reproducible_disjoint_and_solvable(game: ModuleType) -> None:
    train = list(game.countdown_tasks("train", train_size=300, val_size=40, seed=7))
    val = list(game.countdown_tasks("val", train_size=300, val_size=40, seed=7))
    assert len(train) == 300 and len(val) == 40
    assert [t.model_dump() for t in train] == [
        t.model_dump() for t in game.countdown_tasks("train", train_size=300, val_size=40, seed=7)
    ]
    assert train[0].task_id == "train-0" and val[-1].task_id == "val-39"
    puzzle = lambda t: (tuple(sorted(t.metadata["numbers"])), t.metadata["target"])  # noqa: E731
    assert not {puzzle(t) for t in train} & {puzzle(t) for t in val}
    assert len({puzzle(t) for t in train}) == 300
    for task in train + val:
        numbers, target = task.metadata["numbers"], task.metadata["target"]
        assert 3 <= len(numbers) <= 4 and all(1 <= n <= 10 for n in numbers)
        assert task.label == target and 1 <= target <= 100 and target not in numbers
        assert game.score(task.metadata["solution"], numbers, target) == 1.0
        assert sorted(game.evaluate_expression(task.metadata["solution"]).numbers) == sorted(numbers)
        assert task.main_query == f"Numbers: {', '.join(map(str, numbers))}. Target: {target}."
    other_seed = list(game.countdown_tasks("val", val_size=40, seed=8))
    assert [t.metadata for t in other_seed] != [t.metadata for t in val]


def test_generator_rejects_bad_arguments(game: ModuleType) -> None:
    with pytest.raises(ValueError, match="split must be"):
        list(game.countdown_tasks("test"))
    with pytest.raises(ValueError, match="2 <= min_numbers"):
        list(game.countdown_tasks("val", min_numbers=1))
    with pytest.raises(ValueError, match="no puzzle found"):
        list(game.countdown_tasks("val", max_number=1, max_target=1))
    with pytest.raises(ValueError, match="distinct puzzles"):
        list(
            game.countdown_tasks("val", val_size=50, min_numbers=3, max_numbers=3, max_number=1, max_target=3)
        )
