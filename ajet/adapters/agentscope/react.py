"""A ReAct agent in AgentScope: `agentscope.agent.Agent` with a `Toolkit` of `FunctionTool`s (2.x), or
`ReActAgent` with a `Toolkit` of registered functions (1.x), whichever is installed.

AgentScope's loop makes `max_iters` reasoning-acting iterations and then, if the model is still calling tools,
one last call that asks for a text answer; so `max_iters = max_turns - 1` keeps it within `spec.max_turns`
model calls. That last call carries AgentScope's own reminder message and offers no tools, so with
`max_turns: 1` the agent answers without tools.

2.x: tools are allowed without asking (a `FunctionTool` asks the user by default, which would stop an
unattended episode), and the current time is not injected into the prompt (it would make prompts differ
between runs). 1.x: tool functions must return a `ToolResponse`, so each plain function is wrapped in one that
keeps its name, signature and docstring.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

from ajet.core.react import ReActSpec


async def run_react(model: Any, spec: ReActSpec) -> str:
    from ajet.adapters.agentscope import installed_major_version

    if installed_major_version() >= 2:
        return await _run_v2(model, spec)
    return await _run_v1(model, spec)


async def _run_v2(model: Any, spec: ReActSpec) -> str:
    from agentscope.agent import Agent, InjectionConfig, ReActConfig
    from agentscope.message import UserMsg
    from agentscope.permission import PermissionBehavior, PermissionDecision
    from agentscope.tool import FunctionTool, Toolkit

    allow = PermissionDecision(
        behavior=PermissionBehavior.ALLOW, message="allowed by the ajet ReAct workflow"
    )
    agent = Agent(
        name=spec.agent_name,
        system_prompt=spec.system_prompt,
        model=model,
        toolkit=Toolkit(tools=[FunctionTool(fn, permission=allow) for fn in spec.tools]),
        react_config=ReActConfig(max_iters=spec.max_turns - 1),
        injection_config=InjectionConfig(inject_runtime_state=False),
    )
    reply = await agent.reply(UserMsg(name="user", content=spec.query))
    return reply.get_text_content() or ""


async def _run_v1(model: Any, spec: ReActSpec) -> str:
    from agentscope.agent import ReActAgent
    from agentscope.formatter import OpenAIChatFormatter
    from agentscope.message import Msg
    from agentscope.tool import Toolkit

    toolkit = Toolkit()
    for fn in spec.tools:
        toolkit.register_tool_function(_v1_tool(fn), include_long_description=False)
    agent = ReActAgent(
        name=spec.agent_name,
        sys_prompt=spec.system_prompt,
        model=model,
        formatter=OpenAIChatFormatter(),
        toolkit=toolkit,
        max_iters=spec.max_turns - 1,
    )
    agent.set_console_output_enabled(False)
    reply = await agent(Msg("user", spec.query, "user"))
    return reply.get_text_content() or ""


def _v1_tool(fn: Callable[..., Any]) -> Callable[..., Any]:
    from agentscope.message import TextBlock
    from agentscope.tool import ToolResponse

    @functools.wraps(fn)  # the name, docstring and signature AgentScope describes the tool from
    async def tool(*args: Any, **kwargs: Any) -> ToolResponse:
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        text = result if isinstance(result, str) else json.dumps(result, default=str)
        return ToolResponse(content=[TextBlock(type="text", text=text)])

    return tool
