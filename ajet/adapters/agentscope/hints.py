"""What to install when a workflow's AgentScope import fails: the seeds' (AgentJet's and ASTuner's docs') code is
AgentScope 1.x, and the default install (`ajet[agentscope]`, part of `all`) is 2.x, where e.g. `ReActAgent`,
`agentscope.memory` and `agentscope.tool.execute_python_code` no longer exist."""

from __future__ import annotations

import importlib.util
import re

INSTALL_1X = "pip install -e '.[agentscope1]' in an ajet checkout, or pip install 'ajet[agentscope1]'"
INSTALL_2X = "pip install -e '.[agentscope]' in an ajet checkout, or pip install 'ajet[agentscope]'"
# Names of 1.x that 2.0 removed (checked against 2.0.10): modules, and names imported from a module.
_1X_ONLY_MODULES = ("agentscope.memory", "agentscope.plan")
_1X_ONLY_NAMES = frozenset(
    {"ReActAgent", "ReActAgentBase", "UserAgent", "execute_python_code", "execute_shell_command",
     "ToolUseBlock", "InMemoryMemory", "MsgHub", "sequential_pipeline", "fanout_pipeline"}
)  # fmt: skip
_CANNOT_IMPORT = re.compile(r"cannot import name '(\w+)'")
# Names that exist in AgentScope 2.x only: importing one on 1.x means the workflow was written for 2.x.
_2X_ONLY = ("'Agent' from 'agentscope.agent'", "agentscope.credential", "agentscope.permission")


def agentscope_import_hint(exc: ImportError) -> str | None:
    """A sentence naming the extra to install, or None when `exc` is not about AgentScope."""
    module = exc.name or ""
    if module != "agentscope" and not module.startswith("agentscope."):
        return None
    if importlib.util.find_spec("agentscope") is None:
        return (
            "AgentScope is not installed: for AgentScope 1.x code (ReActAgent, formatters passed to the agent, as "
            f"in the AgentJet and ASTuner docs) {INSTALL_1X}; for 2.x code {INSTALL_2X}"
        )
    from ajet.adapters.agentscope import installed_major_version

    version = _version()
    if installed_major_version() >= 2:
        match = _CANNOT_IMPORT.search(str(exc))
        removed = (match is not None and match.group(1) in _1X_ONLY_NAMES) or module.startswith(
            _1X_ONLY_MODULES
        )
        if removed:
            return (
                f"this is AgentScope 1.x code (as in the AgentJet and ASTuner docs) and AgentScope {version} is "
                f"installed, which no longer has it: to run it as written, {INSTALL_1X} (it installs AgentScope "
                "1.x in place of 2.x)"
            )
        return (
            f"AgentScope {version} is installed; if this is AgentScope 1.x code (as in the AgentJet and ASTuner "
            f"docs), {INSTALL_1X}"
        )
    if any(name in str(exc) for name in _2X_ONLY) or module in _2X_ONLY:
        return (
            f"this looks like AgentScope 2.x code and AgentScope {version} is installed: {INSTALL_2X} "
            "(it installs AgentScope 2.x in place of 1.x)"
        )
    return None


def _version() -> str:
    import agentscope

    return str(agentscope.__version__)
