"""Plugin discovery: built-ins through entry points, a third-party package on the path, misspelled hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ajet.core.adapter import Adapter
from ajet.core.hookspecs import hookimpl
from ajet.core.plugins import PluginError, collect_registry, load_registry, make_plugin_manager


def test_builtins_come_from_the_projects_own_entry_points() -> None:
    registry = load_registry()
    assert {"openai_sdk", "http"} <= set(registry.adapters)
    source = registry.adapters["openai_sdk"].source
    assert source.package == "ajet" and source.version
    assert {"transformers", "openai"} <= set(registry.engines)
    assert "hermes" in registry.tool_parsers
    assert registry.adapter_for_method("as_raw_openai_sdk_client") is registry.adapters["openai_sdk"].value


def test_each_factory_call_is_independent() -> None:
    class Extra:
        @hookimpl
        def register_adapters(self, register):
            register(Adapter(name="extra", make_model=lambda handle: handle))

    with_extra = collect_registry(make_plugin_manager(plugins=[Extra()]))
    without = load_registry()
    assert "extra" in with_extra.adapters and "extra" not in without.adapters
    assert with_extra.adapters["extra"].source.package is None


def test_misspelled_hook_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def register_adaptors(self, register):  # not a hook
            pass

    with pytest.raises(PluginError, match=r"register_adaptors.*Known hooks: register_adapters"):
        make_plugin_manager(load_entrypoints=False, plugins=[Typo()])


def test_duplicate_adapter_names_are_an_error() -> None:
    class Clash:
        @hookimpl
        def register_adapters(self, register):
            register(Adapter(name="openai_sdk", make_model=lambda handle: handle))

    with pytest.raises(PluginError, match="registered twice"):
        collect_registry(make_plugin_manager(plugins=[Clash()]))


def test_unknown_adapter_lists_what_was_found() -> None:
    with pytest.raises(PluginError, match=r"adapters found: .*openai_sdk"):
        load_registry().adapter("crewai")


def test_adapter_reports_missing_framework() -> None:
    adapter = Adapter(
        name="nope", make_model=lambda h: h, requires=("surely_not_installed_xyz",), extra="nope"
    )
    assert adapter.missing_modules() == ["surely_not_installed_xyz"]
    assert adapter.install_hint() == "pip install 'ajet[nope]'"
    assert adapter.tuner_methods() == ("as_nope_model",)
    outside = Adapter(
        name="x", make_model=lambda h: h, requires=("pydantic_ai",), install="pydantic-ai-slim[openai]"
    )
    assert outside.install_hint() == "pip install 'pydantic-ai-slim[openai]'"


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_still_load(tmp_path: Path) -> None:
    (tmp_path / "ajet_broken_plugin.py").write_text("import surely_not_installed_xyz\n")
    info = tmp_path / "ajet_broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ajet-broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ajet]\nbroken = ajet_broken_plugin\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "ajet.cli.main", "plugins", "--json"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert "openai_sdk" in {row["name"] for row in listing["adapters"]}
    (failure,) = listing["failed"]
    assert (failure["plugin"], failure["package"], failure["version"]) == (
        "broken",
        "ajet-broken-plugin",
        "1.0",
    )
    assert "ModuleNotFoundError" in failure["error"] and "surely_not_installed_xyz" in failure["error"]
    code = "from ajet.core.plugins import load_registry; load_registry().adapter('broken')"
    lookup = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert lookup.returncode != 0
    assert "failed to load" in lookup.stderr and "ajet-broken-plugin 1.0 failed to import" in lookup.stderr


def write_plugin_package(root: Path) -> None:
    """A minimal installed distribution: a module plus its .dist-info with an `ajet` entry point."""
    (root / "ajet_echo_plugin.py").write_text(
        textwrap.dedent(
            """
            from ajet.core.adapter import Adapter
            from ajet.core.hookspecs import hookimpl

            @hookimpl
            def register_adapters(register):
                register(Adapter(name="echo", make_model=lambda handle: handle.api_key,
                                 requires=("json",), description="returns the agent's key"))
            """
        )
    )
    info = root / "ajet_echo_plugin-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ajet-echo-plugin\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text("[ajet]\necho = ajet_echo_plugin\n")
    (info / "RECORD").write_text("")


def test_ajet_plugins_shows_a_third_party_plugin(tmp_path: Path) -> None:
    write_plugin_package(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "ajet.cli.main", "plugins", "--json"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    adapters = {row["name"]: row for row in json.loads(result.stdout)["adapters"]}
    assert adapters["echo"]["package"] == "ajet-echo-plugin"
    assert adapters["echo"]["version"] == "0.3.1"
    assert adapters["echo"]["methods"] == ["as_echo_model"]
    assert adapters["echo"]["installed"] is True
    assert adapters["openai_sdk"]["package"] == "ajet"

    table = subprocess.run(
        [sys.executable, "-m", "ajet.cli.main", "plugins"], capture_output=True, text=True, env=env
    )
    assert "echo" in table.stdout and "ajet-echo-plugin 0.3.1" in table.stdout


def test_a_plugin_adds_a_trainer_algorithm_through_the_hook() -> None:
    import torch

    from ajet.trainer.algorithms.registry import POLICY_LOSSES, get_policy_loss, install_plugin_algorithms

    def halved_pg(logprobs, old_logprobs, advantages, mask):
        return -0.5 * advantages[:, None] * logprobs * mask, {}

    class Algorithms:
        @hookimpl
        def register_algorithms(self, register):
            register("policy_loss", "halved_pg", halved_pg)

    registry = collect_registry(make_plugin_manager(plugins=[Algorithms()]))
    assert "policy_loss:halved_pg" in registry.algorithms
    try:
        install_plugin_algorithms({k: r.value for k, r in registry.algorithms.items()})
        install_plugin_algorithms({k: r.value for k, r in registry.algorithms.items()})  # idempotent
        loss, _ = get_policy_loss("halved_pg")(
            torch.tensor([[-1.0]]), torch.tensor([[-1.0]]), torch.tensor([2.0]), torch.tensor([[1.0]])
        )
        assert loss.item() == 1.0  # -0.5 * 2 * -1
        with pytest.raises(ValueError, match="unknown kind"):
            install_plugin_algorithms({"optimizer:adam": halved_pg})
    finally:
        POLICY_LOSSES.pop("halved_pg", None)
