"""The agent's tools: plain Python functions. Type hints and the docstring are all a framework needs to describe
them to the model; each framework wraps them in its own tool type (FunctionTool, @tool, function_tool, ...)."""

from __future__ import annotations


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first integer
        b: the second integer
    """
    return a + b


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: the first integer
        b: the second integer
    """
    return a * b
