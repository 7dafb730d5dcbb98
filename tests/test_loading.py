"""Loading the config's `workflow:`: a bare module finds its one concrete Workflow (Osmosis' discovery rule),
and a class default `trainable_targets = []` is refused before anything runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ajet.core.config import ConfigError, parse_config
from ajet.core.loading import load_workflow_factory
from ajet.core.targets import EMPTY_TARGETS_MESSAGE
from tests.examples.cli import explain, run_ajet

HEADER = """\
from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask
"""
EXECUTE = """\
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        return WorkflowOutput(reward=1.0)
"""


def write(path: Path, code: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


def load(tmp_path: Path, workflow: str) -> type:
    factory = load_workflow_factory(parse_config({"workflow": workflow}, base_dir=tmp_path))
    return type(factory())


# -- trainable_targets = [] as a class default ---------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["trainable_targets: list = []", "trainable_targets: list[str] | None = []"]
)
def test_an_empty_class_default_for_trainable_targets_is_refused(tmp_path: Path, field: str) -> None:
    write(tmp_path / "flow.py", HEADER + f"\n\nclass Flow(Workflow):\n    {field}\n" + EXECUTE)
    with pytest.raises(ConfigError) as error:
        load(tmp_path, "flow.py:Flow")
    assert str(error.value) == f"workflow Flow: {EMPTY_TARGETS_MESSAGE}"


def test_an_unannotated_empty_default_is_refused_too(tmp_path: Path) -> None:
    # pydantic refuses an unannotated override of a field when the class is made; either way it never runs.
    write(tmp_path / "flow.py", HEADER + "\n\nclass Flow(Workflow):\n    trainable_targets = []\n" + EXECUTE)
    with pytest.raises(ConfigError, match="trainable_targets"):
        load(tmp_path, "flow.py:Flow")


def test_a_non_empty_class_default_still_loads(tmp_path: Path) -> None:
    write(
        tmp_path / "flow.py",
        HEADER + "\n\nclass Flow(Workflow):\n    trainable_targets: list[str] | None = ['a']\n" + EXECUTE,
    )
    assert load(tmp_path, "flow.py:Flow")().trainable_targets == ["a"]


def test_debug_prints_the_empty_targets_error_as_one_line(tmp_path: Path) -> None:
    write(
        tmp_path / "flow.py",
        HEADER + "\n\nclass Flow(Workflow):\n    trainable_targets: list = []\n" + EXECUTE,
    )
    (tmp_path / "tasks.jsonl").write_text('{"main_query": "hi"}\n')
    config = write(
        tmp_path / "config.yaml", "workflow: flow.py:Flow\ndata: {train: {kind: file, path: tasks.jsonl}}\n"
    )
    result = run_ajet("debug", "-c", str(config), "--store", "memory", timeout=120)
    assert result.returncode == 2, explain(result)
    assert "Traceback" not in result.stdout + result.stderr
    assert f"configuration error: workflow Flow: {EMPTY_TARGETS_MESSAGE}" in result.stdout.splitlines(), (
        explain(result)
    )


# -- `workflow: entry.py` without a class name ---------------------------------------------------------------


def test_a_bare_file_finds_the_one_concrete_workflow_defined_there(tmp_path: Path) -> None:
    # A base class imported from a sibling module, an abstract helper base, and the imported `Workflow` itself
    # are all in the module's namespace; only the class defined there and runnable counts.
    write(tmp_path / "base.py", HEADER + "\n\nclass SharedBase(Workflow):\n" + EXECUTE)
    write(
        tmp_path / "entry.py",
        HEADER
        + "from abc import abstractmethod\n\nfrom base import SharedBase\n\n\n"
        + "class Helper(Workflow):\n    @abstractmethod\n    def grade(self) -> float: ...\n\n\n"
        + "class SearchWorkflow(Helper):\n    def grade(self) -> float:\n        return 1.0\n\n"
        + EXECUTE,
    )
    assert load(tmp_path, "entry.py").__name__ == "SearchWorkflow"


def test_a_bare_dotted_module_finds_its_workflow(tmp_path: Path) -> None:
    write(tmp_path / "flows" / "math_flow.py", HEADER + "\n\nclass MathFlow(Workflow):\n" + EXECUTE)
    assert load(tmp_path, "flows.math_flow").__name__ == "MathFlow"


def test_several_workflows_in_the_file_are_named(tmp_path: Path) -> None:
    write(
        tmp_path / "entry.py",
        HEADER + "\n\nclass B(Workflow):\n" + EXECUTE + "\n\nclass A(Workflow):\n" + EXECUTE,
    )
    with pytest.raises(ConfigError) as error:
        load(tmp_path, "entry.py")
    assert str(error.value) == (
        "workflow.path: 'entry.py' defines 2 concrete Workflow subclasses (A, B); say which one to run, "
        "e.g. 'entry.py:A'"
    )


def test_a_file_without_a_workflow_says_so(tmp_path: Path) -> None:
    write(tmp_path / "entry.py", HEADER + "\n\nclass NotOne:\n    pass\n")
    with pytest.raises(
        ConfigError, match=r"'entry.py' defines no concrete Workflow subclass .*'entry.py:ClassName'"
    ):
        load(tmp_path, "entry.py")
