"""In-process inference on a Hugging Face transformers model, with continuous batching.

Why it is built this way:
- Episodes run as many coroutines (and the HTTP gateway runs uvicorn in another thread), each awaiting one
  completion at a time. Serving them one by one would waste most of the CPU/GPU, so requests from every
  thread and event loop go through one thread-safe queue to ONE worker thread that owns the model and decodes
  them together. torch never runs on an event loop, and each caller's future is settled on its own loop.
- Continuous batching: between two decode steps, newly queued requests are prefilled (left-padded among
  themselves) and merged into the running batch's KV cache, and finished rows leave it. Every row keeps its
  own positions (explicit `position_ids`) and padding is masked, so a row's numbers do not depend on its
  neighbours.
- Our own sampling loop rather than `model.generate`: we need the log-prob of every sampled token under
  exactly the distribution the trainer recomputes (logits / temperature, before top-p and before a grammar
  mask; see `ajet.core.engines.base`).
- Constrained decoding (a `Constraint`: JSON schema, JSON object, tool-call structural tag) masks the
  distribution a row samples from with xgrammar (`ajet.core.engines.grammar`); the token is drawn with the
  same noise as an unconstrained one, so the grammar costs one bit test on most steps (see `_draw`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from ajet.core.constraints import Constraint
from ajet.core.engines.base import InferenceEngine
from ajet.core.engines.grammar import GrammarCompiler, RowGrammar
from ajet.core.precision import autocast as precision_autocast
from ajet.core.precision import autocast_dtype
from ajet.core.types import Completion, SamplingParams, logprob_temperature

logger = logging.getLogger(__name__)

FinishReason = Literal["stop", "length"]


class EngineClosedError(RuntimeError):
    """The engine was closed before it could serve the request."""


@dataclass(eq=False)
class _Request:
    prompt_ids: list[int]
    sampling: SamplingParams
    max_tokens: int  # sampling.max_tokens clamped to the context left after the prompt
    seed: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Completion]
    # Set by the caller's thread when it stops waiting; the worker then drops the row. A plain attribute is
    # enough: the worker only needs to see it eventually.
    cancelled: bool = False
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    generator: torch.Generator | None = None
    version: int = 0
    grammar: RowGrammar | None = None  # the request's constraint, if it has one
    error: BaseException | None = None  # set when its grammar failed: the request fails alone

    @property
    def greedy(self) -> bool:
        return self.sampling.temperature == 0


@dataclass(eq=False)
class _LoadWeights:
    weights: Any
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    version: int | None = None


_WAKE = object()  # put on the queue by close() to wake a worker blocked on an empty queue


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any) -> None:
    """Resolve `future` on its own loop, from the worker thread. `result` may be an exception."""

    def settle() -> None:
        if future.done():  # the caller gave up (cancelled) meanwhile
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
        pass


def _left_pad(t: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - t.shape[dim]
    if missing == 0:
        return t
    pad = [0, 0] * (t.dim() - 1 - dim % t.dim()) + [missing, 0]  # F.pad lists dims from the last one
    return F.pad(t, pad)


class _Batch:
    """The running rows and their shared, left-padded KV cache.

    Invariant: for every row, the cache holds the prompt and every sampled token except the last one, which
    is `next_ids[row]`, the next step's input, at position `next_pos[row]`. `mask[row, j]` is 1 where cache
    column j is a real token of that row and 0 where it is padding.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.rows: list[_Request] = []
        self.cache: DynamicCache | None = None
        self.mask = torch.empty(0, 0, dtype=torch.long)
        self.next_ids = torch.empty(0, dtype=torch.long)
        self.next_pos = torch.empty(0, dtype=torch.long)

    def add(
        self,
        rows: list[_Request],
        cache: DynamicCache,
        mask: torch.Tensor,
        next_ids: torch.Tensor,
        next_pos: torch.Tensor,
    ) -> None:
        for layer in cache.layers:
            if type(layer) is not DynamicLayer:
                raise NotImplementedError(
                    "continuous batching needs full-attention cache layers; this model uses "
                    f"{type(layer).__name__}"
                )
        if self.cache is None or not self.rows:
            self.rows, self.cache, self.mask, self.next_ids, self.next_pos = (
                rows,
                cache,
                mask,
                next_ids,
                next_pos,
            )
            return
        length = max(self.mask.shape[1], mask.shape[1])
        for old, new in zip(self.cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_left_pad(old.keys, length, -2), _left_pad(new.keys, length, -2)])
            old.values = torch.cat([_left_pad(old.values, length, -2), _left_pad(new.values, length, -2)])
        self.mask = torch.cat([_left_pad(self.mask, length, -1), _left_pad(mask, length, -1)])
        self.next_ids = torch.cat([self.next_ids, next_ids])
        self.next_pos = torch.cat([self.next_pos, next_pos])
        self.rows = self.rows + rows

    def keep(self, indices: list[int]) -> None:
        if len(indices) == len(self.rows):
            return
        if not indices:
            self.clear()
            return
        assert self.cache is not None
        index = torch.tensor(indices, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.rows = [self.rows[i] for i in indices]
        self.mask, self.next_ids, self.next_pos = self.mask[index], self.next_ids[index], self.next_pos[index]
        # Columns that are padding for every remaining row (a long row just left) cost compute every step.
        first = int(self.mask.any(0).int().argmax())
        if first > 0:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
            self.mask = self.mask[:, first:]


class TransformersEngine(InferenceEngine):
    """Serve a transformers causal LM in-process: `await engine.generate(prompt_ids, sampling)` from anywhere.

    Concurrent requests are batched continuously by one daemon worker thread, up to `max_batch_size` rows;
    a lone request waits `batch_wait_ms` for company before it starts; new prompts are prefilled in batches
    of at most `max_prefill_tokens` padded tokens. `load_weights` waits for the running rows to finish, holds
    new ones, swaps weights and bumps `version`, so no completion mixes versions. A request may carry a
    `Constraint` (constrained decoding, see `ajet.core.engines.grammar`).
    """

    supports_constraints = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_name: str = "ajet-policy",
        max_batch_size: int = 32,
        batch_wait_ms: float = 2.0,
        max_prefill_tokens: int = 8192,
        autocast: str | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
        if max_prefill_tokens < 1:
            raise ValueError(f"max_prefill_tokens must be at least 1, not {max_prefill_tokens}")
        if batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, not {batch_wait_ms}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1000
        self.max_prefill_tokens = max_prefill_tokens
        self.device = next(model.parameters()).device
        self.autocast_dtype = autocast_dtype(autocast)  # the trainer uses the same (see ajet.core.precision)
        self.vocab_size: int = model.get_input_embeddings().num_embeddings
        self.max_context: int = int(getattr(model.config, "max_position_embeddings", None) or 2**31)
        self.eos_ids = _eos_ids(model, tokenizer)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # masked anyway
        self._cache_kwarg = _cache_kwarg(model)
        self._logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._fast_head = _FastHead.find(model)
        self._version = 0
        self._grammars = GrammarCompiler(tokenizer, self.vocab_size, self.eos_ids)

        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._submit_lock = threading.Lock()
        self._closed = False
        # Worker-thread state, touched by no other thread.
        self._pending: deque[_Request] = deque()
        self._pending_load: _LoadWeights | None = None
        self._batch = _Batch()
        self._thread = threading.Thread(target=self._run, name=f"ajet-engine-{model_name}", daemon=True)
        self._thread.start()

    @classmethod
    def from_spec(
        cls, spec: str, dtype: str = "float32", device: str = "cpu", **kw: Any
    ) -> TransformersEngine:
        """Load a model (see `ajet.core.models.resolve_model` for what `spec` may be) and serve it; `kw` go to
        the constructor (max_batch_size, autocast, ...)."""
        from ajet.core.models import load_model

        model, tokenizer = load_model(spec, dtype=dtype, device=device)
        return cls(model, tokenizer, **kw)

    @property
    def version(self) -> int:
        return self._version

    def shared_module(self) -> Any:
        return self.model

    @property
    def active_requests(self) -> int:
        """Requests the worker holds (decoding, or waiting for a slot); a snapshot, read from any thread."""
        return len(self._batch.rows) + len(self._pending)

    # ---- the caller's side (any thread, any event loop) ----

    async def generate(
        self, prompt_ids: list[int], sampling: SamplingParams, constraint: Constraint | None = None
    ) -> Completion:
        prompt = self._check_prompt(prompt_ids)
        # Compiled off the event loop: a large schema takes milliseconds (cached after the first time).
        grammar = await asyncio.to_thread(self._grammars.row, constraint) if constraint is not None else None
        loop = asyncio.get_running_loop()
        seed = sampling.seed if sampling.seed is not None else secrets.randbits(63)
        max_tokens = min(sampling.max_tokens, self.max_context - len(prompt))
        request = _Request(prompt, sampling, max_tokens, seed, loop, loop.create_future(), grammar=grammar)
        self._submit(request)
        try:
            return await request.future
        except asyncio.CancelledError:
            request.cancelled = True
            raise

    async def load_weights(self, weights: Any, version: int | None = None) -> None:
        """Serve `weights` from the next batch on, as `version` (default: the current version + 1).

        `weights` is a state dict (copied in; keys the model lacks are an error, keys it has but the dict
        lacks keep their values) or an `nn.Module`: the engine's own model or a module wrapping it, such as
        a peft model (nothing to copy: the trainer updated it in place), or another module (its state dict
        is copied).
        """
        loop = asyncio.get_running_loop()
        command = _LoadWeights(weights, loop, loop.create_future(), version)
        self._submit(command)
        await command.future

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Stop the worker; requests still queued or running fail with `EngineClosedError`."""
        with self._submit_lock:
            self._closed = True
            self._queue.put(_WAKE)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _submit(self, item: _Request | _LoadWeights) -> None:
        # Under the lock so nothing lands on the queue after the worker's final drain.
        with self._submit_lock:
            if self._closed:
                raise EngineClosedError("the engine is closed")
            self._queue.put(item)

    def _check_prompt(self, prompt_ids: list[int]) -> list[int]:
        prompt = [int(i) for i in prompt_ids]
        if not prompt:
            raise ValueError("prompt_ids is empty: the model needs at least one prompt token")
        bad = [i for i in prompt if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"prompt_ids has ids outside the vocabulary [0, {self.vocab_size}): {bad[:5]}")
        if len(prompt) > self.max_context - 1:
            raise ValueError(
                f"the prompt is {len(prompt)} tokens, but the model's context is {self.max_context} tokens "
                f"(max_position_embeddings), which leaves room for at most {self.max_context - 1} prompt "
                "tokens; shorten the conversation"
            )
        return prompt

    # ---- the worker thread ----

    def _run(self) -> None:
        while not self._closed:
            try:
                self._serve_once()
            except Exception as exc:  # a bug or OOM in one step must not stop the engine
                logger.exception("decode step failed; failing its %d requests", len(self._batch.rows))
                self._fail_running(exc)
        self._shutdown()

    def _serve_once(self) -> None:
        idle = not self._batch.rows and not self._pending and self._pending_load is None
        self._pull(block=idle)
        if self._closed:
            return
        self._drop_cancelled()
        if self._pending_load is not None:
            # Hold new admissions until the running rows drain, so every completion has one version.
            if not self._batch.rows:
                self._apply_load()
        elif self._pending and len(self._batch.rows) < self.max_batch_size:
            if not self._batch.rows:
                self._wait_for_more()
            with torch.inference_mode(), precision_autocast(self.device, self.autocast_dtype):
                self._admit()
        if self._batch.rows:
            with torch.inference_mode(), precision_autocast(self.device, self.autocast_dtype):
                self._step()

    def _pull(self, block: bool) -> None:
        """Move queued items to `_pending`, stopping at a weight load (later requests wait for it)."""
        while self._pending_load is None:
            try:
                item = self._queue.get(block=block)
            except queue.Empty:
                return
            block = False
            self._accept(item)

    def _accept(self, item: Any) -> None:
        if isinstance(item, _Request):
            self._pending.append(item)
        elif isinstance(item, _LoadWeights):
            self._pending_load = item

    def _wait_for_more(self) -> None:
        """Give requests sent together a moment to arrive, so they are prefilled as one batch."""
        deadline = time.monotonic() + self.batch_wait_s
        while len(self._pending) < self.max_batch_size and self._pending_load is None and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                self._accept(self._queue.get(timeout=remaining))
            except queue.Empty:
                return

    def _drop_cancelled(self) -> None:
        if any(r.cancelled for r in self._pending):
            self._pending = deque(r for r in self._pending if not r.cancelled)
        rows = self._batch.rows
        if any(r.cancelled for r in rows):
            self._batch.keep([i for i, r in enumerate(rows) if not r.cancelled])

    def _admit(self) -> None:
        free = self.max_batch_size - len(self._batch.rows)
        admitted = [self._pending.popleft() for _ in range(min(free, len(self._pending)))]
        for group in _prefill_groups(admitted, self.max_prefill_tokens):
            self._admit_group(group)

    def _admit_group(self, group: list[_Request]) -> None:
        try:
            self._prefill(group)
        except Exception as exc:
            if len(group) == 1:
                self._fail(group[0], exc)
                return
            # Retry one by one so that only the request that breaks fails, not the ones sent with it.
            logger.warning("prefill of %d requests failed (%s); retrying them one by one", len(group), exc)
            for request in group:
                try:
                    self._prefill([request])
                except Exception as single_exc:
                    self._fail(request, single_exc)

    def _prefill(self, group: list[_Request]) -> None:
        for request in group:
            request.ids, request.logprobs, request.version = [], [], self._version
            if not request.greedy:
                request.generator = torch.Generator(device=self.device).manual_seed(request.seed)
        lengths = [len(r.prompt_ids) for r in group]
        # The episodes of a GRPO group send the same prompt at once: prefill each distinct prompt once, then
        # give every request its own copy of that cache row (each still samples with its own seed).
        distinct: dict[tuple[int, ...], int] = {}
        row_of = [distinct.setdefault(tuple(r.prompt_ids), len(distinct)) for r in group]
        prompts = list(distinct)
        width = max(lengths)
        input_ids = torch.full((len(prompts), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            input_ids[i, width - len(prompt) :] = torch.tensor(prompt)
            mask[i, width - len(prompt) :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        logits = self._forward(input_ids, mask, positions, cache)  # [distinct prompts, vocab]
        if len(prompts) < len(group):
            select = torch.tensor(row_of, device=self.device)
            cache.reorder_cache(select)
            logits, mask = logits.index_select(0, select), mask.index_select(0, select)
        tokens = self._sample(group, logits)

        done = [self._finish(r) for r in group]
        staying = [i for i, d in enumerate(done) if d is None]
        if staying:
            index = torch.tensor(staying, device=self.device)
            if len(staying) < len(group):
                cache.batch_select_indices(index)
            self._batch.add(
                [group[i] for i in staying],
                cache,
                mask[index],
                tokens[index],
                torch.tensor(lengths, device=self.device)[index],
            )
        for request, finished in zip(group, done, strict=True):
            if finished is not None:
                self._complete(request, *finished)

    def _step(self) -> None:
        batch = self._batch
        assert batch.cache is not None
        ones = torch.ones((len(batch.rows), 1), dtype=batch.mask.dtype, device=batch.mask.device)
        mask = torch.cat([batch.mask, ones], dim=1)
        logits = self._forward(batch.next_ids[:, None], mask, batch.next_pos[:, None], batch.cache)
        batch.mask, batch.next_pos = mask, batch.next_pos + 1
        batch.next_ids = self._sample(batch.rows, logits)
        done = [self._finish(r) for r in batch.rows]
        finished = [(r, d) for r, d in zip(batch.rows, done, strict=True) if d is not None]
        batch.keep([i for i, d in enumerate(done) if d is None])
        for request, (reason, text) in finished:
            self._complete(request, reason, text)

    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """Logits of the last position of every row, as float32, shape [rows, vocab]."""
        if self._fast_head is not None:
            return self._fast_head(input_ids, mask, positions, cache)
        kwargs: dict[str, Any] = {self._cache_kwarg: cache, "use_cache": True}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1  # the prompt's other positions need no vocab projection
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, **kwargs)
        return out.logits[:, -1, :].float()

    def _sample(self, rows: list[_Request], logits: torch.Tensor) -> torch.Tensor:
        """Pick each row's next token (within its grammar, if it has one), recording its log-prob under
        logits / temperature: before top-p and before the grammar's mask, which the trainer cannot apply."""
        temperatures = torch.tensor([logprob_temperature(r.sampling) for r in rows], device=logits.device)
        logp = torch.log_softmax(logits / temperatures[:, None], dim=-1)
        tokens = logp.argmax(dim=-1)
        for i, request in enumerate(rows):
            if request.grammar is not None:
                try:
                    tokens[i] = _pick_constrained(logp[i], request)
                except Exception as exc:  # a grammar bug fails its own request, not the whole batch
                    logger.exception("constrained sampling failed; failing its request")
                    request.error = exc
            elif not request.greedy:
                tokens[i] = _draw(logp[i].exp(), request.sampling.top_p, request.generator)
        chosen = logp.gather(1, tokens[:, None])[:, 0].tolist()
        for request, token, logprob in zip(rows, tokens.tolist(), chosen, strict=True):
            request.ids.append(token)
            request.logprobs.append(logprob)
        return tokens

    def _finish(self, request: _Request) -> tuple[FinishReason, str] | None:
        """Whether the token just sampled ends the request, and with which reason and text."""
        if request.error is not None:
            return "stop", ""  # `_complete` fails it with the error
        if request.ids[-1] in self.eos_ids:
            return "stop", self._decode(request.ids)
        stops = [s for s in request.sampling.stop if s]
        if stops:
            text = self._decode(request.ids)
            cuts = [text.find(s) for s in stops]
            found = [c for c in cuts if c >= 0]
            if found:
                return "stop", text[: min(found)]
        if len(request.ids) >= request.max_tokens:
            return "length", self._decode(request.ids)
        return None

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _complete(self, request: _Request, reason: FinishReason, text: str) -> None:
        if request.error is not None:
            self._fail(request, request.error)
            return
        completion = Completion(
            ids=request.ids,
            logprobs=request.logprobs,
            text=text,
            finish_reason=reason,
            model_version=request.version,
        )
        _settle(request.loop, request.future, completion)

    def _fail(self, request: _Request, exc: BaseException) -> None:
        _settle(request.loop, request.future, exc)

    def _fail_running(self, exc: BaseException) -> None:
        for request in self._batch.rows:
            self._fail(request, exc)
        self._batch.clear()

    def _apply_load(self) -> None:
        command, self._pending_load = self._pending_load, None
        assert command is not None
        try:
            with torch.no_grad():
                self._copy_weights(command.weights)
        except Exception as exc:
            _settle(command.loop, command.future, exc)
            return
        self._version = command.version if command.version is not None else self._version + 1
        _settle(command.loop, command.future, None)

    def _copy_weights(self, weights: Any) -> None:
        if isinstance(weights, torch.nn.Module) and any(m is self.model for m in weights.modules()):
            # Our own module, or one wrapping it (a peft model injects its adapters into ours): the trainer
            # updated our parameters in place. Adapters may have changed its structure: re-check the head.
            self._fast_head = _FastHead.find(self.model)
            return
        if isinstance(weights, torch.nn.Module):
            weights = weights.state_dict()
        if not isinstance(weights, Mapping):
            raise TypeError(f"load_weights takes a state dict or an nn.Module, not {type(weights).__name__}")
        own = self.model.state_dict()
        unknown = [k for k in weights if k not in own]
        if unknown:
            raise ValueError(
                f"load_weights got {len(unknown)} keys the model does not have, e.g. {unknown[:3]}"
            )
        wrong = [k for k, v in weights.items() if tuple(v.shape) != tuple(own[k].shape)]
        if wrong:
            k = wrong[0]
            raise ValueError(
                f"load_weights got {len(wrong)} tensors of the wrong shape, e.g. {k}: "
                f"{tuple(weights[k].shape)} instead of {tuple(own[k].shape)}"
            )
        for key, value in weights.items():
            own[key].copy_(value)

    def _shutdown(self) -> None:
        error = EngineClosedError("the engine was closed before this request finished")
        self._fail_running(error)
        leftovers: list[Any] = list(self._pending)
        if self._pending_load is not None:
            leftovers.append(self._pending_load)
        while True:
            try:
                leftovers.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for item in leftovers:
            if isinstance(item, _Request | _LoadWeights):
                _settle(item.loop, item.future, error)
        self._pending.clear()
        self._pending_load = None


def _cache_kwarg(module: Any) -> str:
    # transformers 5 renamed `past_key_values` to `cache`; 4.x models still take the old name.
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


@dataclass
class _FastHead:
    """The model's decoder, then its vocabulary projection computed as `W @ hidden.T`.

    Why: on CPU, the `hidden @ W.T` that `nn.Linear` runs is 2-3x slower for some row counts (2, 3, 6, 7, 11:
    ~35 ms instead of ~15 ms for SmolLM2's 49k x 576 head) than `W @ hidden.T`, and the head is a large
    share of a decode step. Used only for a model whose own logits it reproduces on a probe input (models
    that scale or soft-cap their logits fall back to their own forward).
    """

    decoder: Any
    head: torch.nn.Linear
    cache_kwarg: str

    @classmethod
    def find(cls, model: Any) -> _FastHead | None:
        try:
            head, decoder = model.get_output_embeddings(), model.get_decoder()
            if not isinstance(head, torch.nn.Linear) or decoder is None:
                return None
            fast = cls(decoder, head, _cache_kwarg(decoder))
            device = next(model.parameters()).device
            probe = torch.tensor([[1, 2, 3]], device=device)
            mask, positions = torch.ones_like(probe), torch.arange(3, device=device)[None]
            with torch.inference_mode():
                expected = model(input_ids=probe).logits[:, -1].float()
                got = fast(probe, mask, positions, DynamicCache(config=model.config))
        except Exception:  # an unusual model: its own forward is always right
            logger.debug("using the model's own forward", exc_info=True)
            return None
        tolerance = 1e-4 if head.weight.dtype == torch.float32 else 5e-2
        return fast if torch.allclose(got, expected, atol=tolerance, rtol=tolerance) else None

    def __call__(
        self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        kwargs = {self.cache_kwarg: cache, "use_cache": True}
        out = self.decoder(input_ids=input_ids, attention_mask=mask, position_ids=positions, **kwargs)
        hidden = out.last_hidden_state[:, -1]
        logits = (self.head.weight @ hidden.T).T
        if self.head.bias is not None:
            logits = logits + self.head.bias
        return logits.float()


def _prefill_groups(requests: list[_Request], max_tokens: int) -> list[list[_Request]]:
    """Split requests into prefill batches of similar prompt lengths, each at most `max_tokens` padded tokens.

    Prefill activations (and attention scores) grow with rows x longest prompt, so 32 long prompts at once
    could exhaust memory; sorting by length also keeps padding small.
    """
    groups: list[list[_Request]] = []
    for request in sorted(requests, key=lambda r: len(r.prompt_ids)):
        # Sorted ascending, so the request being added is the longest of its group.
        if groups and (len(groups[-1]) + 1) * len(request.prompt_ids) <= max_tokens:
            groups[-1].append(request)
        else:
            groups.append([request])
    return groups


def _pick_constrained(logp: torch.Tensor, request: _Request) -> int:
    """The next token of a constrained row, from its distribution masked to what the grammar allows (top-p
    applies to the masked distribution, as in vLLM). Accepts it into the grammar."""
    grammar = request.grammar
    assert grammar is not None
    top_p = request.sampling.top_p
    if request.greedy:
        token = int(logp.argmax())
        if not grammar.allows(token):
            token = int(logp.masked_fill(~grammar.allowed(logp.device), float("-inf")).argmax())
    else:
        # Exponential race (see `_draw`) with one noise draw per step whatever happens, so a seeded request
        # is reproducible. Without top-p, the unmasked winner, when allowed, is also the winner of the race
        # restricted to the allowed tokens: the whole-vocabulary mask is needed only when it is not.
        noise = torch.rand(logp.shape, generator=request.generator, device=logp.device).log_().neg_()
        keys = logp - noise.log()  # argmax(log p_i - log E_i) = argmax(p_i / E_i)
        token = int(keys.argmax()) if top_p >= 1.0 else -1
        if token < 0 or not grammar.allows(token):
            allowed = grammar.allowed(logp.device)
            if top_p < 1.0:
                masked = torch.log_softmax(logp.masked_fill(~allowed, float("-inf")), dim=-1).exp()
                allowed = allowed & _nucleus(masked, top_p).bool()
            token = int(keys.masked_fill(~allowed, float("-inf")).argmax())
    grammar.accept(token)
    return token


def _draw(probs: torch.Tensor, top_p: float, generator: torch.Generator | None) -> int:
    """Sample one token id from `probs` after top-p truncation, with the exponential race (Gumbel-max).

    argmax(p_i / E_i) with E_i ~ Exp(1) is distributed as p. Unlike inverse-CDF sampling, whose answer hangs
    on a sort order and a cumulative sum over the whole vocabulary, a tiny change in the logits (another
    batch shape) almost never changes the winner, so a seeded request draws the same tokens in any batch.
    It is also ~4x cheaper than `torch.multinomial` on a CPU (0.2 vs 1 ms per 49k-token row).
    """
    if top_p < 1.0:
        probs = probs * _nucleus(probs, top_p)
    noise = torch.rand(probs.shape, generator=generator, device=probs.device).log_().neg_()  # Exp(1)
    return int((probs / noise).argmax())


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask of the smallest set of most likely tokens whose mass reaches top_p."""
    # A full sort of the vocabulary costs ~3 ms on CPU; the nucleus almost always lies in the top 1024.
    values, ids = probs.topk(min(1024, probs.numel()))
    if float(values.sum()) < top_p and values.numel() < probs.numel():
        values, ids = probs.sort(descending=True)
    keep = ids[(values.cumsum(0) - values) < top_p]
    return torch.zeros_like(probs).index_fill_(0, keep, 1.0)


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for source in (
        tokenizer.eos_token_id,
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
    ):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, list | tuple):
            ids.update(int(i) for i in source)
    return frozenset(ids)
