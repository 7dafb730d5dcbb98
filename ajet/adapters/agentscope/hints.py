"""What to install when a workflow's AgentScope import fails: the seeds' (AgentJet's and ASTuner's docs') code is
AgentScope 1.x, and the default install (`ajet[agentscope]`, part of `all`) is 2.x, where e.g. `ReActAgent`,
`agentscope.memory` and `agentscope.tool.execute_python_code` no longer exist."""

from __future__ import annotations

import importlib.util

INSTALL_1X = "pip install -e '.[agentscope1]' in an ajet checkout, or pip install 'ajet[agentscope1]'"
INSTALL_2X = "pip install -e '.[agentscope]' in an ajet checkout, or pip install 'ajet[agentscope]'"
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
        return (
            f"this looks like AgentScope 1.x code (as in the AgentJet and ASTuner docs) and AgentScope {version} is "
            f"installed, where the name is gone: to run it as written, {INSTALL_1X} (it installs AgentScope 1.x "
            "in place of 2.x)"
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
