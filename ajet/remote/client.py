"""`EpisodeClient`: run episodes of an `ajet serve` run from any machine, with any agent code.

    client = EpisodeClient("http://10.0.0.5:8765", token=os.environ["AJET_SERVER_TOKEN"])
    with client.episode(agents=["solver"]) as ep:
        model = ep.tuner.as_raw_openai_sdk_client(agent_name="solver")   # the same as_* methods, over HTTP
        answer = my_agent(ep.task.main_query, model)
        ep.finish(reward=1.0 if answer == "42" else 0.0)

While the `with` block runs, a background thread heartbeats the episode's lease. Leaving the block with an
exception aborts the episode with it (recorded as failed, with the traceback); leaving it without `finish`
aborts it too, so the server never waits on an episode the client has dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import traceback as traceback_module
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from ajet.core.episode_access import AgentKeySource, EpisodeAccess, HttpAgentKeys
from ajet.core.gateway.keys import AgentKey, AgentKeyRequest
from ajet.core.remote_protocol import (
    EPISODES_PATH,
    SERVER_TOKEN_ENV,
    AgentGrant,
    AgentSpec,
    ClaimedEpisode,
    ClaimRequest,
)
from ajet.core.types import Task

logger = logging.getLogger(__name__)


class RunFinished(Exception):
    """The server's run has finished: it hands out no more episodes."""


class EpisodeRefused(RuntimeError):
    """The server refused a request about an episode (it has ended, the key is wrong, ...)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.code = code


def server_base_url(server: str) -> str:
    """`http://HOST:PORT`, with or without `/v1`, as the gateway's `/v1` base URL."""
    server = server.rstrip("/")
    if "://" not in server:
        server = "http://" + server
    return server if server.endswith("/v1") else server + "/v1"


def _refusal(response: httpx.Response) -> EpisodeRefused:
    try:
        error = response.json().get("error", {})
        message, code = str(error.get("message", response.text)), error.get("code")
    except ValueError:
        message, code = response.text[:500], None
    return EpisodeRefused(response.status_code, message, code)


class EpisodeClient:
    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        name: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        """`server`: the `ajet serve` address (http://HOST:PORT). `token`: the server's token (default: the
        AJET_SERVER_TOKEN environment variable). `name` is recorded with each episode this client runs."""
        self.base_url = server_base_url(server)
        token = token or os.environ.get(SERVER_TOKEN_ENV)
        if not token:
            raise ValueError(
                f"no server token: pass token=... or set {SERVER_TOKEN_ENV} (the value `ajet serve` uses; it "
                "prints where it keeps its own)"
            )
        self._token = token
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._timeout_s = timeout_s
        self._http = httpx.Client(timeout=timeout_s + 60.0)  # claims long-poll up to a minute
        self._ahttp: httpx.AsyncClient | None = None  # for aclaim / afinish, made on first use
        self._registry: Any = None

    def close(self) -> None:
        self._http.close()

    async def aclose(self) -> None:
        self.close()
        if self._ahttp is not None:
            await self._ahttp.aclose()
            self._ahttp = None

    def __enter__(self) -> EpisodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def claim(
        self, agents: Sequence[str | AgentSpec] | None = None, *, wait_s: float = 20.0
    ) -> RemoteEpisode | None:
        """The next episode, or None when none came within `wait_s`. Raises RunFinished when the run is over,
        ConnectionError when the server cannot be reached. Its lease is not kept alive until
        `start_heartbeats()` (the `episode()` context does both)."""
        url, content, headers = self._claim_request(agents, wait_s)
        try:
            response = self._http.post(url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return self._claimed(response)

    async def aclaim(
        self, agents: Sequence[str | AgentSpec] | None = None, *, wait_s: float = 20.0
    ) -> RemoteEpisode | None:
        """`claim` for asyncio code: many episodes can wait for a claim at once without a thread each."""
        url, content, headers = self._claim_request(agents, wait_s)
        try:
            response = await self._async_http().post(url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return self._claimed(response)

    def _claim_request(
        self, agents: Sequence[str | AgentSpec] | None, wait_s: float
    ) -> tuple[str, str, dict[str, str]]:
        specs = [AgentSpec(agent_name=a) if isinstance(a, str) else a for a in (agents or ())]
        request = ClaimRequest(
            agents=specs if agents is not None else [AgentSpec()],
            wait_s=wait_s,
            worker={"worker": self.name, "host": socket.gethostname(), "pid": os.getpid()},
        )
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        return f"{self.base_url}{EPISODES_PATH}/claim", request.model_dump_json(), headers

    def _claimed(self, response: httpx.Response) -> RemoteEpisode | None:
        if response.status_code == 204:
            return None
        if response.status_code == 410:
            raise RunFinished("the run has finished: no more episodes")
        if response.status_code != 200:
            raise _refusal(response)
        return RemoteEpisode(self, ClaimedEpisode.model_validate_json(response.content))

    def _unreachable(self, exc: Exception) -> ConnectionError:
        return ConnectionError(
            f"could not reach the ajet server at {self.base_url} ({type(exc).__name__}: {exc})"
        )

    def _async_http(self) -> httpx.AsyncClient:
        if self._ahttp is None:
            self._ahttp = httpx.AsyncClient(
                timeout=self._timeout_s + 60.0, limits=httpx.Limits(max_connections=None)
            )
        return self._ahttp

    @contextlib.contextmanager
    def episode(
        self,
        agents: Sequence[str | AgentSpec] | None = None,
        *,
        wait_s: float = 20.0,
        max_wait_s: float | None = None,
    ) -> Iterator[RemoteEpisode]:
        """Claim an episode (waiting as long as it takes, or `max_wait_s`), keep its lease alive while the block
        runs, and abort it if the block leaves without `finish()`."""
        deadline = None if max_wait_s is None else time.monotonic() + max_wait_s
        while True:
            wait = wait_s if deadline is None else max(0.0, min(wait_s, deadline - time.monotonic()))
            episode = self.claim(agents, wait_s=wait)
            if episode is not None:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no episode from {self.base_url} within {max_wait_s:g} s")
        episode.start_heartbeats()
        try:
            yield episode
        except BaseException as exc:
            if not episode.ended:
                with contextlib.suppress(Exception):
                    episode.abort(f"{type(exc).__name__}: {exc}", traceback=traceback_module.format_exc())
            raise
        else:
            if not episode.ended:
                episode.abort("the client left the episode without calling finish()")
        finally:
            episode.stop_heartbeats()

    def _post(self, path: str, episode_key: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self._http.post(
            f"{self.base_url}{EPISODES_PATH}{path}",
            json=body or {},
            headers={"Authorization": f"Bearer {episode_key}"},
        )

    async def _apost(self, path: str, episode_key: str, body: dict[str, Any]) -> httpx.Response:
        return await self._async_http().post(
            f"{self.base_url}{EPISODES_PATH}{path}",
            json=body,
            headers={"Authorization": f"Bearer {episode_key}"},
        )

    def registry(self) -> Any:
        if self._registry is None:
            from ajet.core.plugins import load_registry

            self._registry = load_registry()
        return self._registry


class _ClaimKeys:
    """The agent keys the claim already issued, then any other agent's over HTTP (like any worker)."""

    def __init__(self, agents: dict[str, AgentGrant], fallback: AgentKeySource) -> None:
        self._agents = agents
        self._fallback = fallback

    def issue(self, request: AgentKeyRequest) -> AgentKey:
        grant = self._agents.get(request.agent_name)
        if grant is not None and grant.target_tag == request.target_tag:
            return AgentKey(api_key=grant.api_key, trainable=grant.trainable)
        return self._fallback.issue(request)


class RemoteEpisode:
    """One claimed episode: its task, its agents' keys, a tuner, and `finish` / `abort`."""

    def __init__(self, client: EpisodeClient, claimed: ClaimedEpisode) -> None:
        self.client = client
        self.claimed = claimed
        self.episode_id = claimed.episode_id
        self.group_id = claimed.group_id
        self.repeat_index = claimed.repeat_index
        self.task: Task = claimed.task
        self.agents: dict[str, AgentGrant] = claimed.agents
        self.access = EpisodeAccess(
            episode_id=claimed.episode_id,
            group_id=claimed.group_id,
            repeat_index=claimed.repeat_index,
            task=claimed.task,
            base_url=claimed.base_url,
            episode_key=claimed.episode_key,
            model_name=claimed.model,
            framework=claimed.framework,
            trainable_targets=claimed.trainable_targets,
            timeout_s=claimed.timeout_s,
        )
        self.ended = False
        #: set when the server said the episode had ended under us (lease expired, timed out)
        self.lost: str | None = None
        self._tuner: Any = None
        self._stop = threading.Event()
        self._beats: threading.Thread | None = None

    @property
    def tuner(self) -> Any:
        """An `AjetTuner` for this episode: `as_raw_openai_sdk_client()`, `as_langchain_model()`, ... over HTTP."""
        if self._tuner is None:
            from ajet.core.tuner import AjetTuner

            keys = _ClaimKeys(self.agents, HttpAgentKeys(self.access.base_url, self.access.episode_key))
            self._tuner = AjetTuner(self.access, self.client.registry(), agent_keys=keys)
        return self._tuner

    def native_untrained_calls(self) -> dict[str, int]:
        return self._tuner.native_untrained_calls() if self._tuner is not None else {}

    # -- the lease -----------------------------------------------------------------------------------------

    def start_heartbeats(self) -> None:
        if self._beats is None:
            self._beats = threading.Thread(
                target=self._beat, name=f"ajet-heartbeat-{self.episode_id}", daemon=True
            )
            self._beats.start()

    def stop_heartbeats(self) -> None:
        self._stop.set()
        if self._beats is not None and self._beats is not threading.current_thread():
            self._beats.join(timeout=5.0)

    def heartbeat(self) -> None:
        response = self.client._post(f"/{self.episode_id}/heartbeat", self.claimed.episode_key)
        if response.status_code != 200:
            raise _refusal(response)

    def _beat(self) -> None:
        while not self._stop.wait(self.claimed.heartbeat_every_s):
            try:
                self.heartbeat()
            except EpisodeRefused as exc:  # it ended under us: stop; finish() will say so
                self.lost = str(exc)
                logger.warning("episode %s: the server ended it (%s)", self.episode_id, exc)
                return
            except httpx.HTTPError as exc:  # a blip: the lease outlasts a few missed beats
                logger.info("episode %s: heartbeat failed (%s); trying again", self.episode_id, exc)

    # -- the end -------------------------------------------------------------------------------------------

    def finish(
        self,
        reward: float | None = None,
        *,
        is_success: bool | None = None,
        target_rewards: dict[str, float] | None = None,
        metadata: dict[str, Any] | None = None,
        untrained_calls: dict[str, int] | None = None,
    ) -> None:
        """Report the episode's reward (None: the run's judger scores it). Raises EpisodeRefused if the server
        no longer holds it for us (finished already, lease expired and re-offered). `untrained_calls` defaults
        to the calls this episode's tuner counted on untrained agents' own models."""
        self._end("finish", self._finish_body(reward, is_success, target_rewards, metadata, untrained_calls))

    async def afinish(
        self,
        reward: float | None = None,
        *,
        is_success: bool | None = None,
        target_rewards: dict[str, float] | None = None,
        metadata: dict[str, Any] | None = None,
        untrained_calls: dict[str, int] | None = None,
    ) -> None:
        """`finish` for asyncio code."""
        body = self._finish_body(reward, is_success, target_rewards, metadata, untrained_calls)
        await self._aend("finish", body)

    def abort(self, error: str, *, traceback: str | None = None, timed_out: bool = False) -> None:
        """Give the episode up: recorded as failed (or timed out) with `error`."""
        self._end("abort", _abort_body(error, traceback, timed_out))

    async def aabort(self, error: str, *, traceback: str | None = None, timed_out: bool = False) -> None:
        """`abort` for asyncio code."""
        await self._aend("abort", _abort_body(error, traceback, timed_out))

    def _finish_body(
        self,
        reward: float | None,
        is_success: bool | None,
        target_rewards: dict[str, float] | None,
        metadata: dict[str, Any] | None,
        untrained_calls: dict[str, int] | None,
    ) -> dict[str, Any]:
        return {
            "reward": reward,
            "is_success": is_success,
            "target_rewards": dict(target_rewards or {}),
            "metadata": dict(metadata or {}),
            "untrained_calls": self.native_untrained_calls() if untrained_calls is None else untrained_calls,
        }

    def _end(self, verb: str, body: dict[str, Any]) -> None:
        self._stop.set()
        try:
            response = self.client._post(f"/{self.episode_id}/{verb}", self.claimed.episode_key, body)
        except httpx.HTTPError as exc:
            raise self._unreachable(verb, exc) from exc
        self._ended(response)

    async def _aend(self, verb: str, body: dict[str, Any]) -> None:
        self._stop.set()
        try:
            response = await self.client._apost(f"/{self.episode_id}/{verb}", self.claimed.episode_key, body)
        except httpx.HTTPError as exc:
            raise self._unreachable(verb, exc) from exc
        self._ended(response)

    def _ended(self, response: httpx.Response) -> None:
        self.ended = True  # whatever the answer: the server will not take another end from us
        if response.status_code != 200:
            raise _refusal(response)

    def _unreachable(self, verb: str, exc: Exception) -> ConnectionError:
        return ConnectionError(
            f"could not reach the ajet server at {self.client.base_url} to {verb} episode {self.episode_id} "
            f"({type(exc).__name__}: {exc}); its lease will expire and it will be offered again"
        )


def _abort_body(error: str, traceback: str | None, timed_out: bool) -> dict[str, Any]:
    return {"error": error, "traceback": traceback, "status": "timed_out" if timed_out else "failed"}
