"""`EpisodeAccess`: everything a process needs to run one episode, as plain data.

    access = EpisodeAccess(episode_id=..., task=..., base_url="http://10.0.0.5:41231/v1", episode_key=..., ...)
    tuner = AjetTuner(access, registry)          # in a Ray worker, on another machine, or here

It is a task, the gateway's URL and the episode's key, nothing else: no live Python object crosses the
boundary, so the local, Ray and remote rollout backends hand episodes out the same way. The episode key can
only ask the gateway for this episode's agent keys (`AgentKeySource`); the gateway decides which agents are
trained and which seeds they get.
"""

from __future__ import annotations

from typing import Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ajet.core.gateway.keys import AgentKey, AgentKeyRequest, KeyRegistry, UnknownEpisodeKey
from ajet.core.types import Task

AGENT_KEYS_PATH = "/ajet/agent_keys"  # under the gateway's /v1 base URL


class EpisodeAccess(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    episode_id: str
    group_id: str
    repeat_index: int = 0
    task: Task = Field(description="the task as the workflow sees it (no label)")
    #: the gateway's HTTP URL, http://HOST:PORT/v1 (the in-process URL when the episode runs beside it)
    base_url: str
    episode_key: str = Field(repr=False)
    model_name: str = "ajet-policy"
    framework: str | None = None
    #: agent tags trained in this episode (None: every tag), for `tuner.is_trainable`; the gateway enforces it
    trainable_targets: list[str] | None = None
    #: seconds the episode may run before it is timed out
    timeout_s: float = 300.0


class AgentKeySource(Protocol):
    """Where a tuner gets its agents' keys."""

    def issue(self, request: AgentKeyRequest) -> AgentKey: ...


class RegistryAgentKeys:
    """In the gateway's own process: straight from its key registry."""

    def __init__(self, keys: KeyRegistry, episode_key: str) -> None:
        self._keys = keys
        self._episode_key = episode_key

    def issue(self, request: AgentKeyRequest) -> AgentKey:
        return self._keys.issue_agent_key(self._episode_key, request)


class HttpAgentKeys:
    """Anywhere else: `POST {base_url}/ajet/agent_keys` with the episode key. Once per agent per episode, and
    synchronous, since frameworks make their model objects synchronously (a few ms on a LAN)."""

    def __init__(self, base_url: str, episode_key: str, timeout_s: float = 30.0) -> None:
        self._url = base_url.rstrip("/") + AGENT_KEYS_PATH
        self._episode_key = episode_key
        self._timeout_s = timeout_s

    def issue(self, request: AgentKeyRequest) -> AgentKey:
        try:
            response = httpx.post(
                self._url,
                content=request.model_dump_json(),
                headers={
                    "Authorization": f"Bearer {self._episode_key}",
                    "Content-Type": "application/json",
                },
                timeout=self._timeout_s,
            )
        except httpx.HTTPError as exc:
            raise ConnectionError(
                f"could not reach the ajet gateway at {self._url} for an agent key ({type(exc).__name__}: "
                f"{exc}); is gateway.host reachable from this worker?"
            ) from exc
        if response.status_code == 401:
            raise UnknownEpisodeKey(response.json().get("error", {}).get("message", response.text))
        if response.status_code != 200:
            raise RuntimeError(
                f"the ajet gateway refused an agent key ({response.status_code}): {response.text[:500]}"
            )
        return AgentKey.model_validate(response.json())
