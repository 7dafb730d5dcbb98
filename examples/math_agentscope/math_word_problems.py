"""What both workflows share: the arithmetic word problems (a seeded generator) and the calculator tool's safe
evaluator. Framework-free, so the AgentScope 1.x and 2.x workflows differ only in their agent code."""

from __future__ import annotations

import ast
import operator
import random
from collections.abc import Callable, Iterator

from ajet import LabeledTask

# (question template, expression template); {n} is a name, {a} and {b} single-digit numbers with a >= b
TEMPLATES: list[tuple[str, str]] = [
    ("{n} has {a} apples and buys {b} more. How many apples does {n} have now?", "{a} + {b}"),
    ("{n} had {a} cookies and ate {b} of them. How many cookies are left?", "{a} - {b}"),
    ("A box holds {a} pencils. How many pencils are in {b} boxes?", "{a} * {b}"),
    ("{n} reads {a} pages on Monday and {b} pages on Tuesday. How many pages is that in total?", "{a} + {b}"),
    ("There are {a} birds on a tree and {b} fly away. How many birds are still on the tree?", "{a} - {b}"),
]
NAMES = ["Tom", "Ana", "Li", "Sara", "Omar", "Mia"]

_OPERATORS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
MAX_EXPRESSION_CHARS = 200


def evaluate(expression: str) -> float:
    """+ - * / and parentheses over numbers, nothing else: no names, calls, attributes or powers (`ast`, never
    `eval`). Raises ValueError for anything else, ZeroDivisionError for a division by zero."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        raise ValueError(f"only numbers, + - * / and parentheses are allowed, not {ast.dump(node)[:40]}")

    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from exc
    return walk(tree.body)


def calculator_text(expression: str) -> str:
    """The tool's answer as the model reads it: the value (integers without '.0'), or 'error: ...'. A bad call
    is the agent's mistake, so it goes back to the agent instead of failing the episode."""
    try:
        value = evaluate(expression)
    except (ValueError, ZeroDivisionError) as exc:
        return f"error: {exc}"
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def word_problems(split: str, count: int = 32, seed: int = 0) -> Iterator[LabeledTask]:
    """`count` problems; 'train' and 'val' draw from differently seeded generators, so the splits differ."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    rng = random.Random(f"{split}-{seed}")
    for i in range(count):
        question, expression = rng.choice(TEMPLATES)
        a, b = sorted((rng.randint(1, 9), rng.randint(1, 9)), reverse=True)
        values = {"n": rng.choice(NAMES), "a": a, "b": b}
        expr = expression.format(**values)
        yield LabeledTask(
            task_id=f"{split}-{i}",
            main_query=question.format(**values),
            label=int(evaluate(expr)),
            metadata={"expression": expr},
        )
