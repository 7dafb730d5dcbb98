"""Constrained decoding for in-process engines, with xgrammar (the grammar library vLLM uses by default).

`GrammarCompiler` compiles a `Constraint` once per distinct constraint (xgrammar caches compiled grammars) and
hands out one `RowGrammar` per request: the state of that request's completion in the grammar. Each sampling
step the engine asks the row which tokens it allows (`allows` for one token, cheap; `allowed` for the whole
vocabulary, when the token it would have drawn is not allowed) and then `accept`s the token it picked.

xgrammar is imported on the first constrained request only: it takes ~2 s to import, which unconstrained runs
should not pay.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import torch

from ajet.core.constraints import Constraint, ConstraintError, ConstraintsUnavailableError

_INSTALL_HINT = "pip install 'ajet[engine]' (or pip install xgrammar)"
_CACHE_SIZE = 256  # compiled grammars kept (an episode's agent sends the same schema every turn)


def _xgrammar() -> Any:
    try:
        import xgrammar
    except ImportError as exc:
        raise ConstraintsUnavailableError(
            f"constrained decoding (response_format, tool_choice 'required' or a named function) needs "
            f"the xgrammar package: {_INSTALL_HINT}"
        ) from exc
    return xgrammar


class RowGrammar:
    """One request's position in its grammar. Used by the engine's worker thread only."""

    def __init__(self, xgr: Any, compiled: Any, vocab_size: int) -> None:
        self._xgr = xgr
        self._matcher = xgr.GrammarMatcher(compiled)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._vocab_size = vocab_size
        self._filled = False  # the bitmask is that of the current state

    def _fill(self) -> torch.Tensor:
        if not self._filled:
            self._matcher.fill_next_token_bitmask(self._bitmask)
            self._filled = True
        return self._bitmask[0]

    def allows(self, token: int) -> bool:
        words = self._fill()
        return bool((int(words[token >> 5]) >> (token & 31)) & 1)

    def allowed(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """A bool mask over the vocabulary: True where the grammar allows the token next."""
        words = self._fill().to(device)
        shifts = torch.arange(32, dtype=torch.int32, device=device)
        return ((words[:, None] >> shifts) & 1).flatten()[: self._vocab_size].bool()

    def accept(self, token: int) -> None:
        if not self._matcher.accept_token(token):
            raise RuntimeError(f"the grammar rejected token {token}, which it had allowed")
        self._filled = False

    @property
    def finished(self) -> bool:
        """The constraint is complete and its end-of-sequence token was accepted."""
        return bool(self._matcher.is_terminated())


class GrammarCompiler:
    """Compiles constraints for one tokenizer and vocabulary size (the model's, which may exceed the
    tokenizer's: padding rows are never allowed). Thread-safe."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: Iterable[int]) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._stop_ids = sorted(set(stop_token_ids))
        self._lock = threading.Lock()
        self._compiler: Any = None
        self._xgr: Any = None
        self._compiled: OrderedDict[str, Any] = OrderedDict()

    def _ensure(self) -> tuple[Any, Any]:
        with self._lock:
            if self._compiler is None:
                xgr = _xgrammar()
                info = xgr.TokenizerInfo.from_huggingface(
                    self._tokenizer, vocab_size=self._vocab_size, stop_token_ids=self._stop_ids or None
                )
                self._compiler = xgr.GrammarCompiler(info, max_threads=1)
                self._xgr = xgr
        return self._xgr, self._compiler

    def row(self, constraint: Constraint) -> RowGrammar:
        """A fresh matcher for one request (compiling the constraint, or taking it from the cache)."""
        xgr, _ = self._ensure()
        key = constraint.key()
        with self._lock:
            compiled = self._compiled.get(key)
            if compiled is not None:
                self._compiled.move_to_end(key)
        if compiled is None:
            try:
                compiled = self._compile(xgr, constraint)
            except Exception as exc:  # xgrammar: RuntimeError / InvalidJSONError / InvalidStructuralTagError
                raise ConstraintError(f"cannot compile the constraint: {_first_line(exc)}") from exc
            with self._lock:
                self._compiled[key] = compiled
                while len(self._compiled) > _CACHE_SIZE:
                    self._compiled.popitem(last=False)
        return RowGrammar(xgr, compiled, self._vocab_size)

    def _compile(self, xgr: Any, constraint: Constraint) -> Any:
        if constraint.kind == "json_schema":
            return self._compiler.compile_json_schema(
                json.dumps(constraint.spec), any_whitespace=False, strict_mode=True
            )
        if constraint.kind == "json_object":
            return self._compiler.compile_json_schema('{"type": "object"}', any_whitespace=False)
        return self._compiler.compile_structural_tag(json.dumps(_canonical_json(xgr, constraint.spec)))


def _canonical_json(xgr: Any, node: Any) -> Any:
    """The structural tag with each JSON-schema part replaced by the grammar of its canonical layout.

    JSON is decoded in one layout, as json.dumps writes it (`{"a": 1, "b": [2, 3]}`), in tool-call arguments
    as in `response_format`: with free whitespace (xgrammar's default inside a structural tag) a weak model
    fills its whole budget with blanks and newlines, and a cut-off call is no call at all.
    """
    if isinstance(node, list):
        return [_canonical_json(xgr, item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "json_schema" and node.get("style", "json") == "json":
        schema = node.get("json_schema")
        if isinstance(schema, dict):
            grammar = xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=True)
            return {"type": "grammar", "grammar": str(grammar)}
    return {key: _canonical_json(xgr, value) for key, value in node.items()}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    # xgrammar's messages start with a "[hh:mm:ss] /path/file.cc:123: " location prefix
    line = text[-1] if text else type(exc).__name__
    return line.split(": ", 1)[1] if line.startswith("[") and ": " in line else line
