"""The `remote` backend (`ajet serve`): episodes are offered over HTTP and run by whoever claims them.

Each `run(access)` puts an *offer* in a queue. A client with the server token claims it
(`POST /v1/ajet/episodes/claim`: the task without its label, the endpoint, a key per agent it names) and holds
a *lease*: it heartbeats, then finishes the episode with its reward, or aborts it with an error. A client that
goes quiet for `rollout.remote.lease_s` loses the lease: the attempt is recorded as timed out and the task is
offered again (`rollout.remote.max_reoffers` times at most), so a killed laptop loses nothing and counts
nothing twice. Finishing twice, after the lease expired, or with another episode's key is refused (409, 403).

Routes run on the gateway's HTTP thread and `run` on the trainer's event loop: the shared state sits behind a
`threading.Lock`, and futures are settled on the loop that awaits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ajet.core.episode_access import EpisodeAccess
from ajet.core.episode_runner import EpisodeOutcome
from ajet.core.gateway.app import error_response, json_response
from ajet.core.gateway.keys import AgentKeyRequest, KeyRegistry, UnknownEpisodeKey
from ajet.core.gateway.schemas import GatewayError, validation_error_to_gateway_error
from ajet.core.remote_protocol import (
    EPISODES_PATH,
    OPENAPI_PATH,
    SERVER_TOKEN_ENV,
    AbortRequest,
    AgentGrant,
    ClaimedEpisode,
    ClaimRequest,
    EpisodeAck,
    FinishRequest,
    LeaseAnswer,
    openapi_schema,
)
from ajet.core.rollout_backends.base import RolloutBackend, WorkerLostError
from ajet.core.types import EpisodeStatus, WorkflowOutput

if TYPE_CHECKING:
    from ajet.core.config import AjetConfig
    from ajet.core.gateway.app import Gateway

logger = logging.getLogger(__name__)
#: episodes remembered after they end, so that a late finish is told 409 (and why), not 404
MAX_ENDED = 100_000
SERVER_FILE = "server.json"
IDLE_WARNING_S = 30.0
CLOSE_LINGER_S = 1.5
_M = TypeVar("_M", bound=BaseModel)


class LeaseExpired(WorkerLostError):
    """The client holding the episode stopped heartbeating: recorded as timed out, and the task re-offered."""

    def __init__(self, reason: str, worker: str) -> None:
        super().__init__(reason, worker, status=EpisodeStatus.TIMED_OUT)


@dataclass
class _Offer:
    access: EpisodeAccess
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[EpisodeOutcome]
    offered_at: float = field(default_factory=time.monotonic)
    claimed_at: float | None = None
    lease_until: float = 0.0
    worker: dict[str, Any] = field(default_factory=dict)

    @property
    def worker_name(self) -> str:
        return str(self.worker.get("worker") or self.worker.get("host") or "remote client")

    def settle(self, outcome: EpisodeOutcome | BaseException) -> None:
        def apply() -> None:
            if self.future.done():
                return
            if isinstance(outcome, BaseException):
                self.future.set_exception(outcome)
            else:
                self.future.set_result(outcome)

        with contextlib.suppress(RuntimeError):  # the trainer's loop has closed: nobody waits any more
            self.loop.call_soon_threadsafe(apply)


class RemoteBackend(RolloutBackend):
    def __init__(self, config: AjetConfig) -> None:
        remote = config.rollout.remote
        self.lease_s = remote.lease_s
        self.max_retries = remote.max_reoffers
        self.max_concurrency = config.rollout.max_concurrency
        self.token, self.token_source = server_token(remote.token_env, config.resolved_run_dir())
        self.model_name = config.model.served_name
        self._lock = threading.Lock()
        self._queue: deque[_Offer] = deque()  # offered, not claimed, in offer order
        self._live: dict[str, _Offer] = {}  # episode id -> offer (offered or claimed)
        self._by_key: dict[str, str] = {}  # episode key -> episode id, of live offers
        self._ended: OrderedDict[str, str] = OrderedDict()  # episode id -> why it ended
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._closed = False
        self._keys: KeyRegistry | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.claims = 0  # episodes handed out
        self._last_claim = time.monotonic()
        self._told_idle = False

    # -- the backend ---------------------------------------------------------------------------------------

    def mount(self, gateway: Gateway) -> None:
        self._keys = gateway.keys
        gateway.add_routes(self.routes(gateway))

    async def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap(), name="ajet-remote-leases")

    async def run(self, access: EpisodeAccess, *, avoid: str | None = None) -> EpisodeOutcome:
        loop = asyncio.get_running_loop()
        offer = _Offer(access, loop, loop.create_future())
        with self._lock:
            if self._closed:
                raise RuntimeError("the remote backend is closed")
            self._queue.append(offer)
            self._live[access.episode_id] = offer
            self._by_key[access.episode_key] = access.episode_id
            self._wake_claimers()
        try:
            return await offer.future
        finally:
            self._end(offer, "its episode ended")

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            self._wake_claimers()
        if self.claims:
            # The gateway still serves for a moment: a client between two claims is told 410 (the run is
            # over) and exits, instead of finding the port closed and waiting for a restart.
            await asyncio.sleep(CLOSE_LINGER_S)
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None

    def describe(self) -> str:
        return f"remote (episodes claimed over HTTP; lease {self.lease_s:g} s)"

    # -- leases --------------------------------------------------------------------------------------------

    async def _reap(self) -> None:
        """Every moment: a claimed episode whose lease ran out goes back (`LeaseExpired`), and one that has run
        past its timeout is recorded as timed out."""
        period = max(0.05, min(1.0, self.lease_s / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            self._tell_if_idle(now)
            expired: list[tuple[_Offer, EpisodeOutcome | BaseException]] = []
            with self._lock:
                for offer in self._live.values():
                    if offer.claimed_at is None:
                        continue
                    if now - offer.claimed_at > offer.access.timeout_s:
                        outcome = EpisodeOutcome(
                            status=EpisodeStatus.TIMED_OUT,
                            error=f"episode did not finish within {offer.access.timeout_s:g} s "
                            "(rollout.episode_timeout_s)",
                            worker=offer.worker,
                        )
                        expired.append((offer, outcome))
                    elif now > offer.lease_until:
                        lost = LeaseExpired(
                            f"lease expired: no heartbeat from {offer.worker_name} for {self.lease_s:g} s "
                            "(rollout.remote.lease_s)",
                            offer.worker_name,
                        )
                        expired.append((offer, lost))
            for offer, result in expired:
                reason = "timed out" if isinstance(result, EpisodeOutcome) else "its lease expired"
                self._end(offer, reason)
                offer.settle(result)

    def _tell_if_idle(self, now: float) -> None:
        """Say it once when episodes have waited IDLE_WARNING_S with no client claiming: a server with no
        workers looks exactly like a slow one otherwise."""
        with self._lock:
            oldest = self._queue[0].offered_at if self._queue else None
        if oldest is None or self._told_idle or now - max(oldest, self._last_claim) < IDLE_WARNING_S:
            return
        self._told_idle = True
        logger.warning(
            "ajet serve: no client has claimed an episode for %.0f s; start one with `ajet worker --server "
            "URL -c CONFIG` (or see docs/remote.md)",
            IDLE_WARNING_S,
        )

    def _end(self, offer: _Offer, reason: str) -> None:
        episode_id = offer.access.episode_id
        with self._lock:
            if self._live.get(episode_id) is not offer:
                return
            del self._live[episode_id]
            self._by_key.pop(offer.access.episode_key, None)
            with contextlib.suppress(ValueError):
                self._queue.remove(offer)
            self._ended[episode_id] = reason
            while len(self._ended) > MAX_ENDED:
                self._ended.popitem(last=False)

    def _wake_claimers(self) -> None:  # under self._lock
        waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda f=future: f.done() or f.set_result(None))

    # -- routes (the gateway's HTTP thread) ----------------------------------------------------------------

    def routes(self, gateway: Gateway) -> list[Route]:
        base = "/v1" + EPISODES_PATH

        def route(path: str, handler: Any, method: str = "POST") -> Route:
            async def endpoint(request: Request) -> Response:
                try:
                    return await handler(request, gateway)
                except GatewayError as exc:
                    return error_response(exc)

            return Route(path, endpoint, methods=[method])

        return [
            route(base + "/claim", self._claim),
            route(base + "/{episode_id}/heartbeat", self._heartbeat),
            route(base + "/{episode_id}/finish", self._finish),
            route(base + "/{episode_id}/abort", self._abort),
            route("/v1" + OPENAPI_PATH, self._openapi, "GET"),
        ]

    async def _openapi(self, request: Request, gateway: Gateway) -> Response:
        return json_response(openapi_schema(gateway.base_url))

    async def _claim(self, request: Request, gateway: Gateway) -> Response:
        self._check_token(request)
        claim = await _parse(request, gateway, ClaimRequest)
        deadline = time.monotonic() + claim.wait_s
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._closed:
                    return _gone()
                offer = self._queue.popleft() if self._queue else None
                if offer is None:
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._waiters.append((loop, waiter))
                else:
                    now = time.monotonic()
                    offer.claimed_at = now
                    offer.lease_until = now + self.lease_s
                    offer.worker = {"backend": "remote", **claim.worker, "client": _client_address(request)}
            if offer is not None:
                answer = self._hand_out(offer, claim, gateway)
                if answer is not None:
                    self.claims += 1
                    self._last_claim = time.monotonic()
                    self._told_idle = False
                    return json_response(answer.model_dump(mode="json"))
                continue  # it ended while we issued its keys: take the next one
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Response(status_code=204, headers={"Retry-After": "1"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, remaining)

    def _hand_out(self, offer: _Offer, claim: ClaimRequest, gateway: Gateway) -> ClaimedEpisode | None:
        access = offer.access
        assert self._keys is not None, "mount() the backend on the gateway first"
        agents: dict[str, AgentGrant] = {}
        try:
            for spec in claim.agents:
                key = self._keys.issue_agent_key(
                    access.episode_key,
                    AgentKeyRequest(
                        agent_name=spec.agent_name, target_tag=spec.tag, debug_endpoint=spec.debug_endpoint
                    ),
                )
                agents[spec.agent_name] = AgentGrant(
                    api_key=key.api_key,
                    base_url=access.base_url,
                    model=access.model_name,
                    target_tag=spec.tag,
                    trainable=key.trainable,
                )
        except UnknownEpisodeKey:
            return None
        return ClaimedEpisode(
            episode_id=access.episode_id,
            group_id=access.group_id,
            repeat_index=access.repeat_index,
            task=access.task,
            base_url=access.base_url,
            model=access.model_name,
            episode_key=access.episode_key,
            agents=agents,
            trainable_targets=access.trainable_targets,
            framework=access.framework,
            lease_s=self.lease_s,
            heartbeat_every_s=max(0.05, self.lease_s / 3),
            timeout_s=access.timeout_s,
        )

    async def _heartbeat(self, request: Request, gateway: Gateway) -> Response:
        offer = self._held(request)
        with self._lock:
            offer.lease_until = time.monotonic() + self.lease_s
        return json_response(
            LeaseAnswer(episode_id=offer.access.episode_id, lease_s=self.lease_s).model_dump()
        )

    async def _finish(self, request: Request, gateway: Gateway) -> Response:
        offer = self._held(request)
        body = await _parse(request, gateway, FinishRequest)
        output = WorkflowOutput(
            reward=body.reward,
            is_success=body.is_success,
            target_rewards=body.target_rewards,
            metadata=body.metadata,
        )
        if output.reward is not None and not math.isfinite(output.reward):
            raise GatewayError(400, f"reward must be a finite number, got {output.reward}", param="reward")
        outcome = EpisodeOutcome(
            status=EpisodeStatus.OK, output=output, native_untrained=body.untrained_calls, worker=offer.worker
        )
        return self._settle(offer, outcome)

    async def _abort(self, request: Request, gateway: Gateway) -> Response:
        offer = self._held(request)
        body = await _parse(request, gateway, AbortRequest)
        outcome = EpisodeOutcome(
            status=EpisodeStatus(body.status),
            error=f"aborted by the client: {body.error}",
            traceback=body.traceback,
            worker=offer.worker,
        )
        return self._settle(offer, outcome)

    def _settle(self, offer: _Offer, outcome: EpisodeOutcome) -> Response:
        episode_id = offer.access.episode_id
        with self._lock:
            if self._live.get(episode_id) is not offer:  # the reaper or another finish got there first
                raise GatewayError(409, f"episode {episode_id} has already ended", code="episode_ended")
        outcome.started_at = time.time() - (time.monotonic() - (offer.claimed_at or time.monotonic()))
        self._end(offer, "it was finished by its client")
        offer.settle(outcome)
        return json_response(EpisodeAck(episode_id=episode_id, status="recorded").model_dump())

    def _held(self, request: Request) -> _Offer:
        """The claimed episode the path names, if the request's key is that episode's key."""
        episode_id = request.path_params["episode_id"]
        key = _bearer(request)
        with self._lock:
            offer = self._live.get(episode_id)
            owner = self._by_key.get(key)
            ended = self._ended.get(episode_id)
        if offer is None:
            if ended is not None:
                raise GatewayError(
                    409, f"episode {episode_id} has already ended ({ended})", code="episode_ended"
                )
            raise GatewayError(404, f"no episode {episode_id} on this server", code="unknown_episode")
        if not hmac.compare_digest(key.encode(), offer.access.episode_key.encode()):
            if owner is not None:
                raise GatewayError(
                    403,
                    f"this key belongs to another episode, not {episode_id}",
                    type="permission_error",
                    code="foreign_episode_key",
                )
            raise GatewayError(
                401,
                "invalid episode key: send 'Authorization: Bearer <episode_key>' from the claim",
                type="authentication_error",
                code="invalid_episode_key",
            )
        if offer.claimed_at is None:
            raise GatewayError(409, f"episode {episode_id} is not claimed", code="not_claimed")
        return offer

    def _check_token(self, request: Request) -> None:
        if not hmac.compare_digest(_bearer(request).encode(), self.token.encode()):
            raise GatewayError(
                401,
                f"invalid server token: send 'Authorization: Bearer <token>' with the token `ajet serve` "
                f"uses ({SERVER_TOKEN_ENV}, or {SERVER_FILE} in its run directory)",
                type="authentication_error",
                code="invalid_server_token",
            )


def server_token(env_name: str, run_dir: Path) -> tuple[str, str]:
    """The token clients claim with, and where it came from: the environment variable when set, else a new one
    written (owner-only) to RUN_DIR/server.json for clients on this machine."""
    value = os.environ.get(env_name, "").strip()
    if value:
        return value, f"${env_name}"
    token = secrets.token_urlsafe(24)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / SERVER_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump({"token": token}, out)
    return token, str(path)


def _bearer(request: Request) -> str:
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _client_address(request: Request) -> str | None:
    return f"{request.client.host}:{request.client.port}" if request.client else None


def _gone() -> Response:
    body = {
        "error": {"message": "the run has finished: no more episodes", "type": "gone", "code": "run_finished"}
    }
    return json_response(body, 410)


async def _parse(request: Request, gateway: Gateway, model: type[_M]) -> _M:
    raw = await gateway.read_body(request)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise validation_error_to_gateway_error(exc) from None
