"""The gateway: one OpenAI-compatible endpoint that every agent framework talks to.

It authenticates the request's key (bound to one agent in one episode), picks the backend (the policy, or the
debug endpoint of an agent that is not trained), records one `LlmCall` per answered request, and answers in
OpenAI format, streaming or not. It serves in-process through `httpx.ASGITransport` (no socket) and, on
demand, on loopback HTTP from a uvicorn server in a background thread.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ajet.core.episode_access import AGENT_KEYS_PATH
from ajet.core.gateway.backends import ChatBackend, ChatResult, OpenAIChatBackend
from ajet.core.gateway.connection import IN_PROCESS_BASE_URL, GatewayConnection
from ajet.core.gateway.keys import (
    AgentKeyRequest,
    KeyBinding,
    KeyRegistry,
    OpenAIEndpoint,
    UnknownEpisodeKey,
)
from ajet.core.gateway.limits import MAX_NESTING, check_body
from ajet.core.gateway.schemas import (
    AssistantMessage,
    ChatCompletionRequest,
    GatewayError,
    completion_body,
    error_body,
    models_body,
    new_completion_id,
    sse_body,
    stream_chunks,
    validation_error_to_gateway_error,
)
from ajet.core.store.base import Store, UnknownEpisode
from ajet.core.types import LlmCall

logger = logging.getLogger(__name__)
__all__ = ["IN_PROCESS_BASE_URL", "Gateway"]

T = TypeVar("T")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        status_code=status,
        media_type="application/json",
    )


def error_response(exc: GatewayError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    response = json_response(exc.body(), exc.status)
    if headers:
        response.headers.update(headers)
    return response


class Gateway:
    def __init__(
        self,
        backend: ChatBackend,
        store: Store,
        *,
        max_request_bytes: int = 4_000_000,
        model_name: str = "ajet-policy",
    ) -> None:
        self.backend = backend
        self.store = store
        self.max_request_bytes = max_request_bytes
        self.model_name = model_name
        self.keys = KeyRegistry()
        self.base_url: str | None = None
        self._debug_backends: dict[OpenAIEndpoint, OpenAIChatBackend] = {}
        # Taking the next seq and appending happen together, so seq order is append order even when the HTTP
        # thread and the in-process loop record calls of one episode at the same time.
        self._record_lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1" + AGENT_KEYS_PATH, self._agent_keys, methods=["POST"]),
                Route("/health", self._health, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_exception},
        )

    def add_routes(self, routes: list[Route]) -> None:
        """Serve more routes beside the OpenAI ones (a rollout backend's episode API, see `RolloutBackend.mount`)."""
        self.app.router.routes.extend(routes)

    async def read_body(self, request: Request) -> bytes:
        """The request body, refused with a 413 `GatewayError` past gateway.max_request_bytes."""
        return await self._read_body(request)

    # -- clients ---------------------------------------------------------------------------------------------

    def connection(self) -> GatewayConnection:
        """How clients in this process reach the gateway: its ASGI app, no socket."""
        return GatewayConnection.in_process(self.app, self.base_url)

    def http_client(self, api_key: str) -> httpx.AsyncClient:
        """An httpx client bound to the gateway in-process (no socket); its requests carry `api_key`.

        Give it to the openai SDK:
        `AsyncOpenAI(base_url=IN_PROCESS_BASE_URL, api_key=key, http_client=gateway.http_client(key))`.
        """
        return self.connection().async_client(api_key)

    # -- loopback HTTP ---------------------------------------------------------------------------------------

    async def start_http(self, host: str = "127.0.0.1", port: int = 0, *, allow_remote: bool = False) -> str:
        """Serve on HTTP from a background thread (its own event loop); returns `http://HOST:PORT/v1`.

        Idempotent: a second call returns the running server's URL. Only loopback hosts unless `allow_remote`:
        keys are bearer tokens sent in clear text.
        """
        if self._server is not None:
            while self.base_url is None and self._server is not None:  # another caller is starting it
                await asyncio.sleep(0.005)
            if self.base_url is not None:
                return self.base_url
        if host == "localhost":
            host = "127.0.0.1"
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"refusing to serve the gateway on {host!r}, not a loopback address: API keys travel "
                "in clear text. Use 127.0.0.1, or pass allow_remote=True (gateway.allow_remote: true) on a "
                "trusted network"
            )
        import uvicorn

        sock = listening_socket(host, port)
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            backlog=2048,
            timeout_keep_alive=30,
            # stop_http must not hang on a request that never finishes (an engine stuck on a long generation).
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="ajet-gateway-http", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        while not server.started:
            if not thread.is_alive():
                self._server = self._thread = None
                sock.close()
                raise RuntimeError("the gateway's HTTP server failed to start; see the log above")
            await asyncio.sleep(0.005)
        bound_port = sock.getsockname()[1]
        url_host = f"[{host}]" if sock.family == socket.AF_INET6 else host
        self.base_url = f"http://{url_host}:{bound_port}/v1"
        return self.base_url

    async def stop_http(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10.0)
        self._server = self._thread = None
        self.base_url = None

    async def aclose(self) -> None:
        """Stop HTTP and close the debug endpoints' connections (the main backend belongs to the caller)."""
        # Debug backends first: their clients on the HTTP server's loop are closed on that loop while it runs.
        for backend in self._debug_backends.values():
            await backend.aclose()
        self._debug_backends.clear()
        await self.stop_http()

    # -- routes ----------------------------------------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def _models(self, request: Request) -> Response:
        return json_response(models_body(self.model_name))

    async def _agent_keys(self, request: Request) -> Response:
        """An agent key for a worker that holds an episode key (see `keys.KeyRegistry.issue_agent_key`)."""
        try:
            _, _, episode_key = (request.headers.get("authorization") or "").partition(" ")
            try:
                wanted = AgentKeyRequest.model_validate_json(await self._read_body(request))
            except ValidationError as exc:
                raise validation_error_to_gateway_error(exc) from None
            try:
                answer = self.keys.issue_agent_key(episode_key.strip(), wanted)
            except UnknownEpisodeKey as exc:
                raise GatewayError(
                    401, str(exc.args[0]), type="authentication_error", code="invalid_episode_key"
                ) from None
            return json_response(answer.model_dump())
        except GatewayError as exc:
            return error_response(exc)

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
        return json_response(
            error_body(f"{request.method} {request.url.path}: {detail}", code=str(status)), status
        )

    async def _chat_completions(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            binding = self._authenticate(request)
            chat, raw = self._parse(await self._read_body(request))
            if binding.sampling or binding.seed is not None:
                chat = self._with_binding_defaults(chat, binding)
            backend = self._backend_for(binding)
            known = None
            if any(isinstance(m, AssistantMessage) and m.tool_calls for m in chat.messages):
                known = self.keys.known_completions(binding.episode_id)
            try:
                result = await _unless_client_leaves(request, backend.complete(chat, known_completions=known))
            except (_ClientLeft, asyncio.CancelledError) as exc:
                # Over HTTP the client closed the connection; in process its caller was cancelled (an episode
                # timeout). Not recorded (no completion came back, nothing to train on), but counted.
                self.keys.count_cancelled(binding.episode_id)
                logger.info(
                    "gateway: the client of episode %s (%s) left after %.1f s; its request was cancelled",
                    binding.episode_id,
                    binding.agent_name,
                    time.perf_counter() - started,
                )
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return error_response(
                    GatewayError(400, "the client disconnected", code="client_disconnected")
                )
            except GatewayError:
                if not binding.trainable:
                    # An untrained agent's call that failed (its debug endpoint is down, say) is counted as a
                    # failed untrained call, as a native debug model's is: a workflow that swallows the error
                    # still leaves a trace in the episode and the `ajet debug` table.
                    self.keys.count_untrained(binding.episode_id, binding.target_tag, failed=True)
                raise
            self._record(binding, raw, result, time.perf_counter() - started)
            return self._respond(chat, result, self.model_name if backend is self.backend else result.model)
        except GatewayError as exc:
            return error_response(exc)
        except ClientDisconnect:  # the client left mid-request: nobody to answer, nothing to record
            return error_response(GatewayError(400, "the client disconnected before the request was read"))
        except Exception as exc:  # a bug, not the client's fault: answer 500 and keep serving
            logger.exception("gateway: unexpected error in /v1/chat/completions")
            return error_response(GatewayError(500, f"{type(exc).__name__}: {exc}", type="server_error"))

    # -- steps -----------------------------------------------------------------------------------------------

    def _with_binding_defaults(
        self, chat: ChatCompletionRequest, binding: KeyBinding
    ) -> ChatCompletionRequest:
        """The episode's sampling defaults and seed, for what the request leaves unset (the request wins)."""
        update: dict[str, Any] = {}
        sampling = dict(binding.sampling or {})
        default_max_tokens = sampling.pop("max_tokens", None)
        for name, value in sampling.items():
            if getattr(chat, name, None) is None:
                update[name] = value
        if binding.seed is not None and chat.seed is None:
            update["seed"] = binding.seed + 7919 * self.keys.next_call_index(binding.episode_id)
        chat = chat.model_copy(update=update) if update else chat
        if default_max_tokens is not None and chat.requested_max_tokens is None:
            # A default, unlike the client's own limit, is clamped to the context the prompt leaves.
            chat = chat.with_default_max_tokens(default_max_tokens)
        return chat

    def _authenticate(self, request: Request) -> KeyBinding:
        header = request.headers.get("authorization")
        if not header:
            raise GatewayError(
                401,
                "missing API key: send 'Authorization: Bearer <key>' with the key the tuner gave this agent",
                type="authentication_error",
                code="missing_api_key",
            )
        scheme, _, key = header.partition(" ")
        binding = self.keys.resolve(key.strip()) if scheme.lower() == "bearer" else None
        if binding is None:
            raise GatewayError(
                401,
                "invalid API key: it is unknown, or its episode has finished and the key was revoked",
                type="authentication_error",
                code="invalid_api_key",
            )
        return binding

    async def _read_body(self, request: Request) -> bytes:
        limit = self.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise GatewayError(400, f"invalid Content-Length header: {declared!r}") from None
            if size > limit:
                if size <= 2 * limit:
                    await self._drain(request)
                raise self._too_large(size)
        chunks: list[bytes] = []
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                await self._drain(request)
                raise self._too_large(total)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _drain(self, request: Request) -> None:
        # Reading the rest (up to twice the limit) lets the client finish sending and read the 413; closing
        # with unread bytes makes the kernel reset the connection, and the client sees a broken pipe instead.
        budget = 2 * self.max_request_bytes
        try:
            async for chunk in request.stream():
                budget -= len(chunk)
                if budget < 0:
                    return
        except Exception:  # the stream was already consumed or the client left: nothing to drain
            return

    def _too_large(self, size: int) -> GatewayError:
        return GatewayError(
            413,
            f"request body of {size} bytes or more exceeds the gateway's limit of "
            f"{self.max_request_bytes} bytes (gateway.max_request_bytes)",
            code="request_too_large",
        )

    @staticmethod
    def _parse(body: bytes) -> tuple[ChatCompletionRequest, dict[str, Any]]:
        """The validated request, and the raw JSON object (recorded as sent, extra keys included)."""
        if not body.strip():
            raise GatewayError(
                400, "request body is empty: send the chat request as a JSON object", code="invalid_json"
            )
        try:
            # Decoded strictly here: json.loads(bytes) lets UTF-8-encoded surrogates through ('surrogatepass').
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GatewayError(400, f"request body is not valid UTF-8: {exc}", code="invalid_json") from None
        try:
            raw = json.loads(text)
        except ValueError as exc:  # JSONDecodeError
            raise GatewayError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
        except RecursionError:
            raise GatewayError(
                400, f"request body nests JSON more than {MAX_NESTING} levels deep", code="invalid_json"
            ) from None
        check_body(raw, may_hold_surrogates=_may_hold_surrogates(text))
        try:
            return ChatCompletionRequest.model_validate(raw), raw
        except ValidationError as exc:
            raise validation_error_to_gateway_error(exc) from None

    def _backend_for(self, binding: KeyBinding) -> ChatBackend:
        endpoint = binding.debug_endpoint
        if binding.trainable or endpoint is None:
            return self.backend
        backend = self._debug_backends.get(endpoint)
        if backend is None:  # setdefault: two threads racing here end up sharing one backend
            fresh = OpenAIChatBackend(endpoint.base_url, endpoint.api_key, endpoint.model)
            backend = self._debug_backends.setdefault(endpoint, fresh)
        return backend

    def _record(self, binding: KeyBinding, raw: dict[str, Any], result: ChatResult, latency: float) -> None:
        episode_id = binding.episode_id  # from the key, never from the request
        if not binding.trainable:
            # Nothing trains on an untrained role's calls (they may come from another model altogether), so
            # they are counted on the episode, not recorded.
            self.keys.count_untrained(episode_id, binding.target_tag)
            return
        tool_calls = result.message.get("tool_calls")
        if tool_calls and result.completion_text is not None:
            self.keys.remember_completion(episode_id, [c["id"] for c in tool_calls], result.completion_text)
        with self._record_lock:
            call = LlmCall(
                episode_id=episode_id,
                seq=self.keys.next_seq(episode_id),
                agent_name=binding.agent_name,
                target_tag=binding.target_tag,
                trainable=binding.trainable,
                messages=raw["messages"],
                tools=raw.get("tools") or None,
                prompt_ids=result.prompt_ids,
                completion_ids=result.completion_ids,
                logprobs=result.logprobs,
                completion_text=result.completion_text,
                finish_reason=result.finish_reason,
                response=result.message,
                sampling=result.sampling,
                model_version=result.model_version or 0,
                latency_s=latency,
            )
            try:
                self.store.append_call(call)
            except UnknownEpisode:
                raise GatewayError(
                    409,
                    f"episode {episode_id} is not in the store, so this call cannot be recorded",
                    code="unknown_episode",
                ) from None

    @staticmethod
    def _respond(chat: ChatCompletionRequest, result: ChatResult, model: str) -> Response:
        completion_id = new_completion_id()
        if chat.stream:
            chunks = stream_chunks(
                completion_id=completion_id,
                model=model,
                message=result.message,
                finish_reason=result.finish_reason,
                usage_block=result.usage,
                logprobs=result.logprobs_block,
                include_usage=chat.include_usage,
            )
            # The engine returns the whole completion at once, so the stream is sent as one body.
            return Response(
                sse_body(chunks), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        body = completion_body(
            completion_id=completion_id,
            model=model,
            message=result.message,
            finish_reason=result.finish_reason,
            usage_block=result.usage,
            logprobs=result.logprobs_block,
        )
        return json_response(body)


class _ClientLeft(Exception):
    """The client closed the connection (left, or timed out) before its answer was ready."""


async def _unless_client_leaves(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await `work`, cancelling it if the client disconnects first.

    Neither Starlette nor uvicorn cancels a handler whose client has gone: uvicorn only answers the app's next
    `receive()` with `http.disconnect`. So a second task waits on `receive()` (the body is read by then, so the
    disconnect is the only message left) and whichever finishes first wins. Cancelling `work` cancels the
    engine's `generate`, whose request then leaves the batch at the next decode step. In process (httpx's ASGI
    transport) `receive()` only returns once the response is sent; there, a caller that gives up cancels this
    handler itself, and `work` with it.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if not task.cancelled() and task.done():
        return task.result()  # finished, even if the client left at the same moment: record it
    await asyncio.wait({task})  # let the cancellation reach the engine before the handler returns
    raise _ClientLeft


async def _disconnected(request: Request) -> None:
    try:
        while (await request.receive())["type"] != "http.disconnect":
            # Nothing else should arrive once the body is read; do not spin if a server sends empty chunks.
            await asyncio.sleep(0.05)
    except Exception:  # a server whose receive() fails cannot tell us about a disconnect: never fire
        logger.debug(
            "gateway: receive() failed; the request cannot be cancelled on disconnect", exc_info=True
        )
        await asyncio.Event().wait()


def _may_hold_surrogates(text: str) -> bool:
    # Only a \uD800-\uDFFF escape can put a lone surrogate into parsed JSON (the text itself is valid UTF-8).
    # A false positive (an escaped backslash before "ud8") only costs the check.
    return _SURROGATE_ESCAPE.search(text) is not None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) (port 0: a free one), for uvicorn to serve on: bound before the server
    starts, so the URL printed has the real port. OSError when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # TCP_NODELAY matters: without it each response waits ~40 ms for a delayed ACK (Nagle). asyncio sets it
    # only on sockets whose proto says TCP, so say so; and set it on the listener (Linux inherits it).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
