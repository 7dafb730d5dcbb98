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


def test_missing_workflow_is_explained_where_one_is_needed() -> None:
    from ajet.core.loading import load_workflow_factory

    config = parse_config({})  # `ajet serve` needs none: its clients run the episodes
    with pytest.raises(
        ConfigError, match=r"workflow: this command runs your workflow.*workflow\.py:MyWorkflow"
    ):
        load_workflow_factory(config)


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


def test_shorthands_expand_to_their_sections() -> None:
    config = parse_config(
        {
            **MINIMAL,
            "model": "./weights",
            "judger": "numeric_match",
            "data": {"train": "train.jsonl", "val": "./saved_dataset"},
        }
    )
    assert config.model.path == "./weights" and config.judger is not None
    assert config.judger.path == "numeric_match"
    assert (config.data.train.kind, str(config.data.train.path)) == ("file", "train.jsonl")  # type: ignore[union-attr]
    assert config.data.val is not None and config.data.val.kind == "hf_dataset"
    generated = parse_config({**MINIMAL, "data": {"train": "gen.py:make_tasks"}}).data.train
    assert generated is not None and generated.kind == "generator"
    # A mapping without `kind` gets the one its keys imply.
    no_kind = parse_config({**MINIMAL, "data": {"train": {"path": "t.csv", "limit": 3}}}).data.train
    assert no_kind is not None and (no_kind.kind, no_kind.limit) == ("file", 3)


def test_set_reaches_inside_a_shorthand(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "workflow: flow.py:Flow\nmodel: smollm2-135m-instruct\njudger: numeric_match\ndata: {train: t.jsonl}\n"
    )
    overrides = {
        "workflow.args.turns": 2,
        "model.dtype": "bfloat16",
        "judger.args.field": "x",
        "data.train.limit": 5,
    }
    config = load_config(path, overrides)
    assert (config.workflow.path, config.workflow.args) == ("flow.py:Flow", {"turns": 2})
    assert (config.model.path, config.model.dtype) == ("smollm2-135m-instruct", "bfloat16")
    assert config.judger is not None and (config.judger.path, config.judger.args) == (
        "numeric_match",
        {"field": "x"},
    )
    assert config.data.train is not None and config.data.train.limit == 5
    with pytest.raises(ConfigError, match=r"cannot set name\.x: name is 'ajet-run'"):
        load_config(path, {"name": "ajet-run", "name.x": 1})  # not a section, and no shorthand of one


def test_load_config_explains_file_problems_on_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(tmp_path / "empty.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    (tmp_path / "tabs.yaml").write_text("workflow: f.py:F\nrollout:\n\tgroup_size: 2\n")
    with pytest.raises(ConfigError, match=r"line 3 column 1: .*indent with spaces") as err:
        load_config(tmp_path / "tabs.yaml")
    assert "\n" not in str(err.value)
    (tmp_path / "latin1.yaml").write_bytes("workflow: caf\xe9.py:F\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(tmp_path / "latin1.yaml")
