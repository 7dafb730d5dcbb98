"""Shared fixtures. Models load once per test session: the tiny random model (real SmolLM2 tokenizer, random
weights, loads in well under a second) for shape and plumbing tests, the real SmolLM2-135M-Instruct for the
few tests that need real behaviour (marked `slow`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_model_and_tokenizer() -> tuple[Any, Any]:
    from ajet.core.models import build_tiny_model

    return build_tiny_model(seed=0)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    from ajet.core.models import resolve_model

    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def smollm2_model_and_tokenizer(smollm2_dir: Path) -> tuple[Any, Any]:
    from ajet.core.models import load_model

    return load_model(str(smollm2_dir))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random model saved as a Hugging Face directory, for configs' `model.path`."""
    from ajet.core.models import build_tiny_model

    directory = tmp_path_factory.mktemp("tiny-model")
    model, tokenizer = build_tiny_model(seed=0)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def engine(tiny_model_and_tokenizer: tuple[Any, Any]) -> Iterator[Any]:
    """An in-process TransformersEngine on the tiny model, one per test module (gateway and engine tests)."""
    from ajet.core.engines.transformers_engine import TransformersEngine

    model, tokenizer = tiny_model_and_tokenizer
    engine = TransformersEngine(model, tokenizer)
    yield engine
    engine.close()
