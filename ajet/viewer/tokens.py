"""A trained sample's tokens as HTML: each token decoded with the run's tokenizer, trained tokens (loss mask 1)
apart from context, shaded by log-prob, with the id, log-prob and advantage on hover; merge mismatches marked at
their position.

The tokenizer is the run's `model.path`, loaded once per path and only from local files (the viewer never
downloads): where it cannot be loaded the tokens show as ids, and the page says why."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

log = logging.getLogger(__name__)

#: log-prob bucket bounds: a trained token with logprob >= LOGPROB_BUCKETS[i] gets class p{i}, lower ones the last
LOGPROB_BUCKETS = (-0.1, -0.5, -1.0, -2.0, -4.0)


@dataclass
class Decoder:
    """Token id -> text, memoised; `note` says why tokens show as ids when there is no tokenizer."""

    tokenizer: Any = None
    note: str = ""
    _cache: dict[int, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def text(self, token_id: int) -> str:
        if self.tokenizer is None:
            return f"[{token_id}]"
        cached = self._cache.get(token_id)
        if cached is None:
            try:
                cached = self.tokenizer.decode([token_id])
            except Exception:  # an id outside the vocabulary (a model with added tokens)
                cached = f"[{token_id}]"
            with self._lock:
                self._cache[token_id] = cached
        return cached


class Tokenizers:
    """One decoder per model path, loaded on first use (transformers is imported only then)."""

    def __init__(self, loader: Callable[[str, str | None], Any] | None = None) -> None:
        self._loader = loader or load_local_tokenizer
        self._decoders: dict[tuple[str, str | None], Decoder] = {}
        self._lock = threading.Lock()

    def for_model(self, model_path: str, base_dir: str | None) -> Decoder:
        key = (model_path, base_dir)
        with self._lock:  # one load per path even when two requests ask at once
            decoder = self._decoders.get(key)
            if decoder is None:
                try:
                    decoder = Decoder(tokenizer=self._loader(model_path, base_dir))
                except Exception as exc:
                    log.info("no tokenizer for %s: %s", model_path, exc)
                    decoder = Decoder(note=f"the tokenizer of {model_path!r} could not be loaded ({exc})")
                self._decoders[key] = decoder
            return decoder


def load_local_tokenizer(model_path: str, base_dir: str | None) -> Any:
    """The tokenizer of `model.path` from local files only: a model directory, a .gguf file or the built-in alias
    (through `resolve_model`, whose GGUF conversion the run already cached), or a hub id in the local cache."""
    from ajet.core.models import SMOLLM2_ALIAS, load_tokenizer, resolve_model

    path = Path(model_path).expanduser()
    if model_path.strip().lower() != SMOLLM2_ALIAS and not path.is_absolute():
        # model paths are relative to the working directory of `ajet train`; the config's directory is a guess
        for base in (Path.cwd(), Path(base_dir) if base_dir else None):
            if base is not None and (base / path).exists():
                path = base / path
                break
    if model_path.strip().lower() == SMOLLM2_ALIAS or path.exists():
        return load_tokenizer(resolve_model(str(path) if path.exists() else model_path))
    from huggingface_hub import snapshot_download

    local = snapshot_download(
        model_path, local_files_only=True, allow_patterns=["tokenizer*", "*.json", "*.model", "*.txt"]
    )
    return load_tokenizer(Path(local))


def logprob_class(logprob: float) -> str:
    for index, bound in enumerate(LOGPROB_BUCKETS):
        if logprob >= bound:
            return f"p{index}"
    return f"p{len(LOGPROB_BUCKETS)}"


@dataclass(frozen=True)
class TokenMark:
    """A merge mismatch to mark in a sample: before the token at `position` (or at the end, past the last)."""

    position: int
    label: str


def render_tokens(
    input_ids: list[int],
    loss_mask: list[int],
    logprobs: list[float],
    advantage: float,
    decoder: Decoder,
    marks: list[TokenMark] | None = None,
) -> Markup:
    """The tokens as spans: class `tr pN` (trained, N the log-prob bucket) or `cx` (context), hover title with the
    token id, position, log-prob and advantage; a `mm` marker before each mismatch position."""
    by_position: dict[int, list[TokenMark]] = {}
    for mark in marks or []:
        by_position.setdefault(min(mark.position, len(input_ids)), []).append(mark)
    parts: list[str] = []
    for position, token_id in enumerate(input_ids):
        for mark in by_position.get(position, ()):
            parts.append(_marker(mark))
        text = escape(decoder.text(token_id))
        mismatch = " mmtok" if position in by_position else ""
        if position < len(loss_mask) and loss_mask[position]:
            logprob = logprobs[position] if position < len(logprobs) else float("nan")
            parts.append(
                f'<span class="tr {logprob_class(logprob)}{mismatch}" title="id {token_id} · #{position} · '
                f'logprob {logprob:.3f} · advantage {advantage:.3f}">{text}</span>'
            )
        else:
            parts.append(
                f'<span class="cx{mismatch}" title="id {token_id} · #{position} · context">{text}</span>'
            )
    for mark in by_position.get(len(input_ids), ()):
        parts.append(_marker(mark))
    return Markup("".join(parts))


def _marker(mark: TokenMark) -> str:
    # the reason in the text, the whole story (position, expected and found tokens) on hover
    return f'<span class="mm" title="{escape(mark.label)}">⚠ {escape(mark.label.split(" ", 1)[0])}</span>'
