"""The seed tests run `ajet debug` / `ajet train` on the tiny random model (real SmolLM2 tokenizer), saved once
per session as a model directory a config can name: the seeds' plumbing is under test, not the answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_and_tokenizer: tuple[Any, Any]
) -> Path:
    path = tmp_path_factory.mktemp("tiny-model")
    model, tokenizer = tiny_model_and_tokenizer
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
