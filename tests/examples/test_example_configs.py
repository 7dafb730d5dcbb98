"""Every example's config loads as a user's would: the fields validate, the workflow class builds from its
`workflow.args`, the task files or generators give tasks, and an SFT config's demonstrations exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from ajet.core.config import load_config
from ajet.core.loading import load_workflow_factory
from ajet.core.tasks import load_tasks
from tests.examples.cli import ROOT

CONFIGS = sorted((ROOT / "examples").glob("*/*.yaml"))
# The AgentScope example has one config per major version; each loads only where that major is installed.
NEEDS_OTHER_ENVIRONMENT = {
    "math_agentscope/config_v1.yaml": "agentscope 1.x",
    "math_agentscope/config.yaml": "agentscope 2.x",
}


def _agentscope_major() -> int | None:
    try:
        import agentscope
    except ImportError:
        return None
    return int(str(agentscope.__version__).split(".")[0])


def _skip_reason(name: str) -> str | None:
    needs = NEEDS_OTHER_ENVIRONMENT.get(name)
    if needs is None:
        return None
    major = _agentscope_major()
    if (needs == "agentscope 1.x" and major == 1) or (needs == "agentscope 2.x" and major == 2):
        return None
    return f"needs {needs}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_config_loads_and_names_files_that_exist(path: Path) -> None:
    name = f"{path.parent.name}/{path.name}"
    reason = _skip_reason(name)
    if reason is not None:
        pytest.skip(reason)
    config = load_config(path)
    assert load_workflow_factory(config)() is not None
    for spec in (config.data.train, config.data.val):
        if spec is not None:
            assert len(load_tasks(spec, config.base_dir)) > 0
    if config.train.algorithm == "sft":
        assert config.train.demonstrations and (path.parent / config.train.demonstrations).is_file()
    else:
        assert config.data.train is not None, "an RL config needs training tasks"
