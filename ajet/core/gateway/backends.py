"""What answers a chat request behind the gateway.

- `EngineChatBackend`: the policy. Renders the prompt, asks a token engine (under the request's constraint,
  see `gateway.grammar`), parses tool calls; keeps the exact prompt ids, completion ids and log-probs for
  training.
- `OpenAIChatBackend`: any OpenAI-compatible endpoint (a hosted model to debug a workflow against, or the
  `debug_model` of an agent that is not trained). No token ids come back from it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ajet.core.constraints import ConstraintError, ConstraintsUnavailableError
from ajet.core.engines.base import EngineRequestError, EngineUnavailableError, InferenceEngine
from ajet.core.gateway.grammar import request_constraint
from ajet.core.gateway.limits import completion_room
from ajet.core.gateway.render import ChatRenderer, RenderError
from ajet.core.gateway.schemas import ChatCompletionRequest, GatewayError, logprobs_block, usage
from ajet.core.gateway.tool_parsers import ParsedCompletion, ToolParser
from ajet.core.types import Completion, SamplingParams

logger = logging.getLogger(__name__)

# Used when neither the engine nor its model says how long its context is.
DEFAULT_CONTEXT_TOKENS = 8192
_FINISH_REASONS = {"stop", "length", "tool_calls"}


@dataclass(slots=True)
class ChatResult:
    """One answered request: the OpenAI assistant message, plus everything training needs (token engines)."""

    message: dict[str, Any]
    finish_reason: str  # "stop" | "length" | "tool_calls"
    usage: dict[str, int]
    model: str
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    logprobs: list[float] | None = None
    completion_text: str | None = None
    #: the `choices[0].logprobs` block, only when the request asked for log-probs
    logprobs_block: dict[str, Any] | None = None
    model_version: int | None = None
    sampling: dict[str, Any] = field(default_factory=dict)


class ChatBackend(ABC):
    @abstractmethod
    async def complete(
        self, request: ChatCompletionRequest, *, known_completions: Mapping[str, str] | None = None
    ) -> ChatResult:
        """Answer one request, or raise `GatewayError` with the status the client should get.

        `known_completions` maps the ids of tool calls this episode received earlier to the raw completion
        text they were parsed from (see `ChatRenderer`); backends that do not render prompts ignore it.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""


class EngineChatBackend(ChatBackend):
    def __init__(
        self,
        engine: InferenceEngine,
        renderer: ChatRenderer,
        tool_parser: ToolParser,
        default_sampling: SamplingParams | None = None,
        *,
        max_context_tokens: int | None = None,
    ) -> None:
        self.engine = engine
        self.renderer = renderer
        self.tool_parser = tool_parser
        self.default_sampling = default_sampling or SamplingParams()
        self.max_context_tokens = max_context_tokens or context_length(engine)
        # The Rust tokenizer decodes single tokens ~4x faster than the Python wrapper. One `decode` per token
        # rather than `decode_batch`: the batch call releases the GIL, and taking it back while another thread
        # runs Python costs up to a 5 ms switch interval.
        rust = getattr(renderer.tokenizer, "_tokenizer", None)
        self._rust_tokenizer: Any = rust if callable(getattr(rust, "decode", None)) else None
        self._warned_unconstrained = False

    async def complete(
        self, request: ChatCompletionRequest, *, known_completions: Mapping[str, str] | None = None
    ) -> ChatResult:
        try:
            prompt_ids = self.renderer.render(
                request.messages, request.tools, request.tool_choice, known_completions
            )
        except RenderError as exc:
            raise GatewayError(400, str(exc), code="invalid_messages") from exc
        room = completion_room(len(prompt_ids), request, self.max_context_tokens)
        sampling = self.sampling_for(request, room)
        constrained = request_constraint(request, self.tool_parser)
        if constrained is not None and not self.engine.supports_constraints:
            if not self._warned_unconstrained:
                self._warned_unconstrained = True
                logger.warning(
                    "the engine %s cannot constrain decoding: requests with tool_choice 'required', a named "
                    "function or response_format are generated unconstrained",
                    type(self.engine).__name__,
                )
            constrained = None
        try:
            if constrained is None:
                completion = await self.engine.generate(prompt_ids, sampling)
            else:
                completion = await self.engine.generate(prompt_ids, sampling, constrained.constraint)
        except ConstraintError as exc:
            assert constrained is not None
            raise GatewayError(
                400, f"{constrained.param}: {exc}", code="invalid_constraint", param=constrained.param
            ) from exc
        except ConstraintsUnavailableError as exc:
            raise GatewayError(500, str(exc), type="server_error", code="constraints_unavailable") from exc
        except EngineRequestError as exc:
            raise GatewayError(400, str(exc), code="unsupported_request") from exc
        except EngineUnavailableError as exc:
            raise GatewayError(503, str(exc), type="server_error", code="engine_unavailable") from exc
        except Exception as exc:
            raise GatewayError(
                500,
                f"the inference engine failed: {type(exc).__name__}: {exc}",
                type="server_error",
                code="engine_error",
            ) from exc

        return self.result_from(request, prompt_ids, sampling, completion)

    def result_from(
        self,
        request: ChatCompletionRequest,
        prompt_ids: list[int],
        sampling: SamplingParams,
        completion: Completion,
    ) -> ChatResult:
        """Parse the completion's tool calls and assemble the result (pure: no engine, no I/O)."""
        wants_tools = bool(request.tools) and request.tool_choice != "none"
        parsed = self.tool_parser.parse(completion.text) if wants_tools else ParsedCompletion(completion.text)
        message: dict[str, Any] = {"role": "assistant", "content": parsed.content}
        finish_reason: str = completion.finish_reason
        if parsed.tool_calls:
            message["tool_calls"] = parsed.tool_calls
            if finish_reason == "stop":  # a cut-off completion stays "length", as OpenAI reports it
                finish_reason = "tool_calls"
        block = None
        if request.logprobs:
            block = logprobs_block(self.token_strings(completion.ids), completion.logprobs)
        return ChatResult(
            message=message,
            finish_reason=finish_reason,
            usage=usage(len(prompt_ids), len(completion.ids)),
            model=self.engine.model_name,
            prompt_ids=prompt_ids,
            completion_ids=completion.ids,
            logprobs=completion.logprobs,
            completion_text=completion.text,
            logprobs_block=block,
            model_version=completion.model_version,
            sampling=sampling.model_dump(),
        )

    def token_strings(self, ids: list[int]) -> list[str]:
        """Each token's own text (special tokens included), for the logprobs block."""
        rust = self._rust_tokenizer
        if rust is not None:
            return [rust.decode([i], skip_special_tokens=False) for i in ids]
        return list(self.renderer.tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False))

    def sampling_for(self, request: ChatCompletionRequest, room: int) -> SamplingParams:
        """The defaults, overridden by what the request sets; max_tokens clamped to the context left."""
        update: dict[str, Any] = {}
        if request.temperature is not None:
            update["temperature"] = request.temperature
        if request.top_p is not None:
            if request.top_p == 0.0:
                # OpenAI allows top_p=0 and clients send it to mean "only the top token": that is greedy.
                update["temperature"], update["top_p"] = 0.0, 1.0
            else:
                update["top_p"] = request.top_p
        if request.stop is not None:
            update["stop"] = request.stop_list
        if request.seed is not None:
            update["seed"] = request.seed
        wanted = request.requested_max_tokens or self.default_sampling.max_tokens
        update["max_tokens"] = min(wanted, room)
        # The request was validated against the same bounds: model_copy (no re-validation) is safe and cheap.
        return self.default_sampling.model_copy(update=update)


def context_length(engine: InferenceEngine) -> int:
    """The engine's context length: its own attribute, its model's config, or the tokenizer's limit."""
    for name in ("max_context_tokens", "max_context", "max_model_len", "context_length"):
        value = getattr(engine, name, None)
        if isinstance(value, int) and value > 0:
            return value
    config = getattr(getattr(engine, "model", None), "config", None)
    value = getattr(config, "max_position_embeddings", None)
    if isinstance(value, int) and value > 0:
        return value
    # Tokenizers without a known limit report a huge sentinel (1e30); only trust plausible values.
    value = getattr(getattr(engine, "tokenizer", None), "model_max_length", None)
    if isinstance(value, int) and 0 < value <= 10_000_000:
        return value
    return DEFAULT_CONTEXT_TOKENS


class OpenAIChatBackend(ChatBackend):
    """Forward requests to an OpenAI-compatible endpoint (non-streaming upstream; the gateway streams itself).

    Only the fields the gateway knows are forwarded: unknown extras may be meant for another server and would
    make a strict one (OpenAI's) answer 400.
    """

    def __init__(self, base_url: str, api_key: str, model: str, timeout: float = 120.0) -> None:
        if not base_url:
            raise ValueError("OpenAIChatBackend needs a base_url, e.g. http://127.0.0.1:8000/v1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = timeout
        # An httpx client's connection pool belongs to one event loop; the gateway may serve from several (the
        # caller's loop in-process, the HTTP server's thread), so keep one client per loop.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    async def complete(
        self, request: ChatCompletionRequest, *, known_completions: Mapping[str, str] | None = None
    ) -> ChatResult:
        # Defaults are sent too (a tool call's `"type": "function"` is required upstream even if the agent
        # left it out); None values are not.
        body = request.model_dump(mode="json", exclude_none=True)
        body.pop("stream_options", None)
        body.update(model=self.model, stream=False)
        url = f"{self.base_url}/chat/completions"
        try:
            response = await self._client().post(url, json=body)
        except httpx.TimeoutException as exc:
            raise GatewayError(
                504, f"{url} did not answer in time", type="server_error", code="upstream_timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise GatewayError(
                502,
                f"could not reach {url}: {type(exc).__name__}: {exc}",
                type="server_error",
                code="upstream_error",
            ) from exc
        if response.status_code >= 400:
            raise _upstream_error(url, response)
        try:
            data = response.json()
            choice = data["choices"][0]
            upstream = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise GatewayError(
                502, f"{url} answered with no chat completion: {response.text[:200]}", type="server_error"
            ) from exc
        message: dict[str, Any] = {"role": "assistant", "content": upstream.get("content")}
        if upstream.get("tool_calls"):
            message["tool_calls"] = upstream["tool_calls"]
        finish_reason = choice.get("finish_reason")
        if finish_reason not in _FINISH_REASONS:  # content_filter, function_call, None ...
            finish_reason = "tool_calls" if message.get("tool_calls") else "stop"
        up_usage = data.get("usage") or {}
        return ChatResult(
            message=message,
            finish_reason=finish_reason,
            usage=usage(int(up_usage.get("prompt_tokens") or 0), int(up_usage.get("completion_tokens") or 0)),
            model=str(data.get("model") or self.model),
            logprobs_block=choice.get("logprobs") if request.logprobs else None,
            sampling={
                k: body[k] for k in ("temperature", "top_p", "max_tokens", "stop", "seed") if k in body
            },
        )

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(headers=self._headers, timeout=self._timeout)
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the connections of every loop: this one directly, a loop running in another thread (the HTTP
        server's) by asking it; a closed loop's connections are gone with it."""
        current = asyncio.get_running_loop()
        for loop, client in list(self._clients.items()):
            if loop is current:
                await client.aclose()
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
                await asyncio.wait_for(asyncio.wrap_future(future), timeout=5.0)
        self._clients.clear()


def _upstream_error(url: str, response: httpx.Response) -> GatewayError:
    try:
        detail = response.json()["error"]["message"]
    except Exception:
        detail = response.text[:500]
    # A client mistake (bad field) is the agent's to fix: pass the status on. Auth, rate limits and server
    # errors of the upstream are not the agent's key's fault: 502.
    status = response.status_code if response.status_code in (400, 404, 413, 422) else 502
    return GatewayError(
        status,
        f"{url} answered {response.status_code}: {detail}",
        type="upstream_error",
        code="upstream_error",
    )
