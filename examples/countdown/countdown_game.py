"""The Countdown numbers game: rules, a safe expression evaluator, the reward, and a seeded task generator.

Pure Python with no ajet or LangChain code, so the rules can be tested (and reused) on their own. The
evaluator never calls `eval`: it parses with `ast` and walks the tree, accepting only integer literals,
parentheses and the four operators + - * /, and computes with exact fractions.
"""

from __future__ import annotations

import ast
import operator
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ajet import LabeledTask

MAX_EXPRESSION_CHARS = 200  # longer text is not an expression a player writes; refuse it before parsing
MAX_LITERAL = 10**6  # keeps exact arithmetic on weird input cheap

_OPERATORS: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_SYMBOLS: dict[type[ast.operator], str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}

FULL_REWARD = 1.0
FORMAT_REWARD = 0.1


class ExpressionError(ValueError):
    """Text that is not an allowed arithmetic expression; the message says why, for the player to read."""


@dataclass(frozen=True)
class Evaluation:
    value: Fraction
    numbers: list[int]  # the integer literals, in the order they appear
    operators: int  # how many binary operations the expression has


def evaluate_expression(expression: str) -> Evaluation:
    """Evaluate `expression` exactly, allowing only non-negative integer literals, parentheses and + - * /.

    Raises ExpressionError for anything else: names, calls, attributes, other operators (**, %, //), unary
    signs, floats, division by zero, or text that does not parse.
    """
    text = expression.strip()
    if not text:
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ExpressionError(f"{text!r} does not parse as arithmetic") from None
    numbers: list[int] = []
    count = 0

    def walk(node: ast.AST) -> Fraction:
        nonlocal count
        if isinstance(node, ast.Constant):
            # bool is an int subclass: `True` is a name to a player, not a number
            if type(node.value) is not int:
                raise ExpressionError(f"only whole numbers are allowed, not {node.value!r}")
            if node.value > MAX_LITERAL:
                raise ExpressionError(f"{node.value} is too large to be one of the numbers")
            numbers.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = walk(node.left), walk(node.right)
            count += 1
            if isinstance(node.op, ast.Div) and right == 0:
                raise ExpressionError("division by zero")
            return _OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.BinOp):
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed; use + - * /")
        if isinstance(node, ast.UnaryOp):
            raise ExpressionError("signs like -3 are not allowed; use only the given numbers and + - * /")
        raise ExpressionError(f"{type(node).__name__} is not allowed; use only numbers, ( ) and + - * /")

    value = walk(tree.body)
    return Evaluation(value=value, numbers=numbers, operators=count)


def unavailable_numbers(used: list[int], given: list[int]) -> list[int]:
    """The numbers in `used` beyond what `given` allows (each given number may be used at most once)."""
    extra = Counter(used) - Counter(given)
    return sorted(extra.elements())


def format_value(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def describe(expression: str, numbers: list[int], target: int) -> str:
    """What the `evaluate` tool tells the agent: the value, the numbers used, and whether it is a solution.
    Never raises: a bad expression is the agent's mistake, reported back to it."""
    try:
        result = evaluate_expression(expression)
    except ExpressionError as exc:
        return f"error: {exc}"
    used = ", ".join(str(n) for n in result.numbers)
    report = f"{expression.strip()} = {format_value(result.value)} (uses {used})."
    extra = unavailable_numbers(result.numbers, numbers)
    if extra:
        report += f" Not allowed: {', '.join(map(str, extra))} (use only {numbers}, each at most once)."
    elif result.value == target:
        report += f" This reaches the target {target}."
    else:
        report += f" The target is {target}."
    return report


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ARITHMETIC_RUN = re.compile(r"[0-9()+\-*/ ]+")


def extract_expression(reply: str) -> str:
    """The expression in a final reply: within the last `<answer>...</answer>` if there is one, else within
    the whole reply, the last run of digits, spaces, parentheses and + - * / that has a digit and an operator.
    So `The answer is (3 + 5) * 2 = 16.` gives `(3 + 5) * 2`. Empty when there is none."""
    tagged = _ANSWER_TAG.findall(reply)
    text = tagged[-1] if tagged else reply
    runs = [run.strip() for run in _ARITHMETIC_RUN.findall(text)]
    candidates = [run for run in runs if any(c.isdigit() for c in run) and any(c in "+-*/" for c in run)]
    return candidates[-1] if candidates else ""


def score(expression: str, numbers: list[int], target: int) -> float:
    """1.0 for an expression equal to the target that uses only the given numbers, each at most once;
    0.1 for an expression that parses, has at least one operator and uses only the given numbers but
    misses the target; 0.0 otherwise (no expression, not parseable, or numbers that were not given)."""
    try:
        result = evaluate_expression(expression)
    except ExpressionError:
        return 0.0
    if unavailable_numbers(result.numbers, numbers):
        return 0.0
    if result.value == target:
        return FULL_REWARD
    return FORMAT_REWARD if result.operators > 0 else 0.0


# ------------------------------------------------------------------------------------------------------------
# Tasks


def random_solution(rng: random.Random, numbers: list[int]) -> str | None:
    """A random expression that uses every number once, or None when it divides unevenly or goes below 1.
    Building targets this way guarantees every task has a solution."""
    parts: list[tuple[str, Fraction]] = [(str(n), Fraction(n)) for n in numbers]
    rng.shuffle(parts)
    while len(parts) > 1:
        (left, a), (right, b) = parts.pop(rng.randrange(len(parts))), parts.pop(rng.randrange(len(parts)))
        op = rng.choice(list(_OPERATORS))
        value = _OPERATORS[op](a, b)
        if value.denominator != 1 or value < 1:
            return None
        parts.append((f"({left} {_SYMBOLS[op]} {right})", value))
    text = parts[0][0]
    return text[1:-1] if text.startswith("(") else text


def make_task(
    rng: random.Random, min_numbers: int, max_numbers: int, max_number: int, max_target: int
) -> dict[str, Any]:
    """One solvable puzzle: numbers, a target made from all of them (at most `max_target`, not one of the
    numbers), and that solution."""
    for _ in range(10_000):
        numbers = [rng.randint(1, max_number) for _ in range(rng.randint(min_numbers, max_numbers))]
        solution = random_solution(rng, numbers)
        if solution is None:
            continue
        target = evaluate_expression(solution).value
        if target <= max_target and target not in numbers:  # a target equal to a number is too easy
            return {"numbers": numbers, "target": int(target), "solution": solution}
    raise ValueError(f"no puzzle found with numbers up to {max_number} and targets up to {max_target}")


def countdown_tasks(
    split: str,
    train_size: int = 1000,
    val_size: int = 64,
    seed: int = 0,
    min_numbers: int = 3,
    max_numbers: int = 4,
    max_number: int = 10,
    max_target: int = 100,
) -> Iterator[LabeledTask]:
    """Countdown tasks from one seeded stream: the first `val_size` distinct puzzles are the validation split,
    the next `train_size` the training split, so the splits never share a puzzle and the same arguments always
    give the same tasks. Each task's metadata holds `numbers`, `target` and one known `solution`."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    if not 2 <= min_numbers <= max_numbers:
        raise ValueError(f"need 2 <= min_numbers <= max_numbers, got {min_numbers} and {max_numbers}")
    rng = random.Random(seed)
    seen: set[tuple[tuple[int, ...], int]] = set()
    wanted = val_size if split == "val" else val_size + train_size
    draws = 0
    while len(seen) < wanted:
        draws += 1
        if draws > 100 * wanted:  # settings that allow fewer distinct puzzles than asked for
            raise ValueError(
                f"only {len(seen)} distinct puzzles found for {wanted} wanted; raise max_number or max_target"
            )
        task = make_task(rng, min_numbers, max_numbers, max_number, max_target)
        key = (tuple(sorted(task["numbers"])), task["target"])
        if key in seen:
            continue
        seen.add(key)
        index = len(seen) - 1 if split == "val" else len(seen) - 1 - val_size
        if index < 0:
            continue  # a validation puzzle, skipped in the training split
        numbers = ", ".join(map(str, task["numbers"]))
        yield LabeledTask(
            task_id=f"{split}-{index}",
            main_query=f"Numbers: {numbers}. Target: {task['target']}.",
            label=task["target"],
            metadata=task,
        )
