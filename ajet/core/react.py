"""`ReActSpec`: one ReAct agent described without any framework, so every adapter can build it natively.

An adapter that can run such an agent gives `Adapter(run_react=...)`, an `async run_react(model, spec) -> str`
that builds the agent with its framework's own classes around `model` (what `tuner.as_model()` returned for that
framework), runs it on `spec.query`, and returns the final answer text. The built-in
`ajet.workflows.react:ReActWorkflow` uses it, so the same tasks, tools and reward run in any framework by
changing only `framework:` in the config.

The contract every runner keeps (tests/adapters/test_contract.py checks it for every installed adapter):
- the system prompt is `spec.system_prompt` and the first user message is `spec.query`;
- every function in `spec.tools` is offered as a tool named after the function, with its typed parameters, and
  its docstring's first paragraph as the description; a tool call runs the function and its result (as text)
  goes back to the model;
- the model is called at most `spec.max_turns` times; the loop ends at the first answer without tool calls, and
  that answer's text is returned;
- when the turns run out first, the runner stops and returns whatever final text its framework gives (often "").
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReActSpec:
    #: the agent's instructions
    system_prompt: str
    #: the task's text, the agent's first user message
    query: str
    #: plain Python functions (sync or async) with type hints and a docstring; each becomes one tool
    tools: tuple[Callable[..., Any], ...] = ()
    #: the most model calls the agent may make
    max_turns: int = 4
    #: the agent's name, for frameworks whose agents have one (AgentScope, OpenAI Agents)
    agent_name: str = "assistant"
    #: the model name to put in requests, for clients that need one (the raw OpenAI SDK)
    model_name: str = "ajet-policy"

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, not {self.max_turns}")
        names = [getattr(fn, "__name__", None) for fn in self.tools]
        for fn, name in zip(self.tools, names, strict=True):
            if not callable(fn) or not name or not name.isidentifier():
                raise ValueError(f"tool {fn!r} is not a named function; write `def my_tool(...)` instead")
            if not inspect.getdoc(fn):
                raise ValueError(
                    f"tool {name!r} has no docstring; the model needs it to know what the tool does"
                )
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two tools share the name {duplicates[0]!r}; tool names must be unique")


def tool_description(fn: Callable[..., Any]) -> str:
    """The docstring's first paragraph (what runners that describe tools themselves use)."""
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n", 1)[0].strip()
