"""Config validation: errors name the field and say what to write instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from ajet.core.config import ConfigError, load_config, parse_config

MINIMAL = {"workflow": "my_pkg.flows:MathWorkflow"}


def test_minimal_config_gets_sane_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.workflow.path == "my_pkg.flows:MathWorkflow"
    assert config.model.path == "smollm2-135m-instruct"
    assert config.engine.kind == "transformers"
    assert config.gateway.host == "127.0.0.1"
    assert config.rollout.group_size == 4
    assert config.resolved_run_dir() == Path("runs/ajet-run")


def test_misspelled_field_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "rollout": {"group_sise": 4}})
    message = str(err.value)
    assert "rollout.group_sise" in message
    assert "Did you mean 'group_size'?" in message


def test_bad_value_names_the_field_and_what_to_write() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "rollout": {"group_size": 0, "sampling": {"temperature": -1}}})
    message = str(err.value)
    assert "rollout.group_size" in message and "you wrote 0" in message
    assert "episodes per task" in message
    assert "rollout.sampling.temperature" in message


def test_missing_workflow_is_explained() -> None:
    with pytest.raises(
        ConfigError, match=r"workflow: required setting is missing\. Write the workflow class"
    ):
        parse_config({})


def test_openai_engine_needs_an_endpoint() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        parse_config({**MINIMAL, "engine": {"kind": "openai"}})


def test_load_config_resolves_relative_to_the_file_and_applies_overrides(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("workflow: flow.py:Flow\nrollout:\n  group_size: 3\n")
    config = load_config(path, {"rollout.group_size": 5, "store": "memory"})
    assert config.base_dir == tmp_path.resolve()
    assert config.rollout.group_size == 5
    assert config.store == "memory"


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("workflow: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_example_config_is_valid() -> None:
    config = load_config(Path(__file__).parents[1] / "examples/math_openai/config.yaml")
    assert config.framework == "openai_sdk"
    assert config.data.train is not None
