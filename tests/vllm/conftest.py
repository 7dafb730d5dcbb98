"""The vLLM tests run against a real vLLM server, started by ajet's own launcher from a separate environment.

    bash scripts/setup-vllm-cpu.sh .venv-vllm
    AJET_VLLM_PYTHON=.venv-vllm/bin/python pytest -m vllm tests/vllm

Without AJET_VLLM_PYTHON they are skipped (the main suite stays fast), unless AJET_REQUIRE_VLLM=1, which CI
sets so that a missing environment fails instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.vllm)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def vllm_python() -> str:
    python = os.environ.get("AJET_VLLM_PYTHON")
    if not python:
        message = (
            "set AJET_VLLM_PYTHON to the python of a vLLM environment (bash scripts/setup-vllm-cpu.sh DIR)"
        )
        if os.environ.get("AJET_REQUIRE_VLLM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    if not Path(python).exists():
        pytest.fail(f"AJET_VLLM_PYTHON={python} does not exist")
    return python


def vllm_config(vllm_python: str, model_dir: Path, run_dir: Path, **engine: Any) -> Any:
    from ajet.core.config import AjetConfig

    return AjetConfig.model_validate(
        {
            "workflow": "flow.py:Flow",
            "model": {"path": str(model_dir)},
            "engine": {
                "kind": "vllm",
                "launch": {
                    "python": vllm_python,
                    "max_model_len": 2048,
                    "env": {"VLLM_CPU_KVCACHE_SPACE": "1"},
                },
                **engine,
            },
            # LoRA on, and full reloads: one server takes both kinds of push (--enable-lora, untied copy)
            "train": {"lora": {"enabled": True, "r": 16}},
            "run_dir": str(run_dir),
        }
    )


@pytest.fixture(scope="session")
def vllm_engine(
    vllm_python: str, smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One vLLM server for the engine-level tests: SmolLM2 in float32, eager, LoRA enabled, untied."""
    from ajet.core.engines.vllm_engine import engine_from_config

    run_dir = tmp_path_factory.mktemp("vllm-run")
    config = vllm_config(vllm_python, smollm2_dir, run_dir, weight_sync="vllm_reload")
    engine = engine_from_config(config, run_dir, show_progress=False)
    yield engine
    asyncio.run(engine.aclose())
