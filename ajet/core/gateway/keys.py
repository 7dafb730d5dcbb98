"""API keys: each one is bound to one agent in one episode, and that binding is the only place a request's
episode comes from, so a request can only ever write into the record of its own episode.

Two kinds of key. An *episode key* is issued when an episode starts (`open_episode`), with the episode's
`EpisodeGrant` (which agents it trains, its sampling defaults and seed); it can do one thing: ask for *agent
keys* (`issue_agent_key`), in this process or over HTTP (`POST /v1/ajet/agent_keys`), which is all a worker in
another process needs to run an episode. The grant, not the asker, decides whether an agent is trained and
which seed it gets. Agent keys are the ones that call `/v1/chat/completions`.

Also the small per-episode state the gateway keeps while an episode runs: the call sequence counter, and the
raw completion text behind each tool call it returned (so that the next prompt shows the model exactly what
it wrote, not a re-rendering of the parsed call). `revoke_episode` drops all of it.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

KEY_PREFIX = "ajet-"
EPISODE_KEY_PREFIX = "ajet-episode-"
# In `untrained_calls`, the failed calls of a tag are counted under "<tag> (failed)", beside the tag's calls (which
# include them): the count travels with the episode (store, JSONL) with no second field.
FAILED_SUFFIX = " (failed)"
# Raw completions remembered per episode; an episode with more tool-calling turns than this renders the oldest
# ones from the parsed calls instead (same markup, possibly different whitespace).
MAX_REMEMBERED_COMPLETIONS = 512


class OpenAIEndpoint(BaseModel):
    """Any OpenAI-compatible Chat Completions endpoint, e.g. for the `debug_model` of an agent that is not
    trained."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(
        min_length=1, description="e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1"
    )
    api_key: str = Field("none", repr=False)
    model: str = Field(min_length=1)


class KeyBinding(BaseModel):
    """Who a key speaks for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    episode_id: str
    agent_name: str = "default"
    target_tag: str = "default"
    trainable: bool = True
    # For an agent that is not trained: serve it from this endpoint instead of the policy.
    debug_endpoint: OpenAIEndpoint | None = None
    # Sampling defaults for this agent's calls (temperature, top_p, max_tokens), under what a request sets.
    sampling: dict[str, Any] | None = None
    # When set, a request without a seed gets seed + its call index in the episode: reproducible rollouts.
    seed: int | None = None


class EpisodeGrant(BaseModel):
    """What an episode is allowed, fixed when it starts: the rules its agent keys are issued under."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    episode_id: str
    #: agent tags trained in this episode; None trains every tag
    trainable_targets: list[str] | None = None
    #: sampling defaults for every agent's calls (e.g. temperature 0 for validation)
    sampling: dict[str, Any] | None = None
    #: base seed: agent i of the episode gets seed + 15_485_863 * i (its calls then add 7919 * call index)
    seed: int | None = None

    def trains(self, target_tag: str) -> bool:
        return self.trainable_targets is None or target_tag in self.trainable_targets


class AgentKeyRequest(BaseModel):
    """A worker's request for one agent's key (the body of `POST /v1/ajet/agent_keys`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_name: str = Field("default", min_length=1)
    target_tag: str = Field("default", min_length=1)
    #: for an agent that is not trained: the endpoint that serves it instead of the policy
    debug_endpoint: OpenAIEndpoint | None = None


class AgentKey(BaseModel):
    """The answer: the agent's key and whether the episode trains it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: str
    trainable: bool


class UnknownEpisodeKey(KeyError):
    """The episode key is unknown, or its episode has ended."""


class _EpisodeState:
    __slots__ = (
        "agent_keys",
        "cancelled",
        "completions",
        "grant",
        "keys",
        "next_seq",
        "started",
        "untrained",
    )

    def __init__(self) -> None:
        self.grant: EpisodeGrant | None = None
        self.agent_keys = 0  # agent keys issued under the grant (each agent's seed offset)
        self.keys: set[str] = set()
        self.untrained: dict[str, int] = {}  # target_tag -> calls served but not recorded
        self.cancelled = 0  # calls whose client left before the answer: cancelled, not recorded
        self.next_seq = 0
        self.started = 0  # calls started (seq counts calls recorded, which finish in any order)
        # tool call id -> the raw completion text of the response that returned it
        self.completions: OrderedDict[str, str] = OrderedDict()


class KeyRegistry:
    """Thread-safe: the gateway serves the in-process transport and the HTTP server thread at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bindings: dict[str, KeyBinding] = {}
        self._episode_keys: dict[str, str] = {}  # episode key -> episode id
        self._episodes: dict[str, _EpisodeState] = {}

    def open_episode(self, grant: EpisodeGrant) -> str:
        """The episode key of a starting episode: it issues the episode's agent keys, under `grant`."""
        key = EPISODE_KEY_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            state = self._episode(grant.episode_id)
            state.grant = grant
            state.keys.add(key)
            self._episode_keys[key] = grant.episode_id
        return key

    def issue_agent_key(self, episode_key: str, request: AgentKeyRequest) -> AgentKey:
        """An agent's key, bound under its episode's grant. Raises UnknownEpisodeKey for a key that is unknown
        or whose episode has ended."""
        with self._lock:
            episode_id = self._episode_keys.get(episode_key)
            state = self._episodes.get(episode_id) if episode_id is not None else None
            if state is None or state.grant is None:
                raise UnknownEpisodeKey(
                    "unknown episode key: it is wrong, or its episode has finished and the key was revoked"
                )
            grant = state.grant
            trainable = grant.trains(request.target_tag)
            binding = KeyBinding(
                episode_id=grant.episode_id,
                agent_name=request.agent_name,
                target_tag=request.target_tag,
                trainable=trainable,
                debug_endpoint=None if trainable else request.debug_endpoint,
                sampling=grant.sampling,
                seed=None if grant.seed is None else grant.seed + 15_485_863 * state.agent_keys,
            )
            state.agent_keys += 1
            key = KEY_PREFIX + secrets.token_urlsafe(32)
            self._bindings[key] = binding
            state.keys.add(key)
        return AgentKey(api_key=key, trainable=trainable)

    def issue(self, binding: KeyBinding) -> str:
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            self._bindings[key] = binding
            self._episode(binding.episode_id).keys.add(key)
        return key

    def resolve(self, key: str) -> KeyBinding | None:
        # A single dict read is atomic under the GIL; no lock on the hot path.
        return self._bindings.get(key)

    def revoke_episode(self, episode_id: str) -> int:
        """Invalidate every key of the episode and forget its state. Returns how many keys were revoked."""
        with self._lock:
            state = self._episodes.pop(episode_id, None)
            if state is None:
                return 0
            for key in state.keys:
                self._bindings.pop(key, None)
                self._episode_keys.pop(key, None)
            return len(state.keys)

    def next_seq(self, episode_id: str) -> int:
        """0, 1, 2, ... per episode: the order of its recorded calls."""
        with self._lock:
            state = self._episode(episode_id)
            seq = state.next_seq
            state.next_seq += 1
            return seq

    def count_untrained(self, episode_id: str, target_tag: str, *, failed: bool = False) -> None:
        """One call of an untrained agent: served by the gateway (its debug endpoint or the policy), or made by
        the agent's native debug model, which the tuner wraps to count it (`failed`: the call raised)."""
        with self._lock:
            state = self._episodes.get(episode_id)
            if state is None:
                return
            state.untrained[target_tag] = state.untrained.get(target_tag, 0) + 1
            if failed:
                key = target_tag + FAILED_SUFFIX
                state.untrained[key] = state.untrained.get(key, 0) + 1

    def untrained_calls(self, episode_id: str) -> dict[str, int]:
        """target_tag -> how many calls of untrained agents the episode made, and "<tag> (failed)" -> how many of
        them failed, when any did (read before revoking it). `split_untrained` separates the two."""
        with self._lock:
            state = self._episodes.get(episode_id)
            return dict(state.untrained) if state is not None else {}

    def count_cancelled(self, episode_id: str) -> None:
        with self._lock:
            state = self._episodes.get(episode_id)
            if state is not None:
                state.cancelled += 1

    def cancelled_calls(self, episode_id: str) -> int:
        """How many of the episode's calls were cancelled because their client left (read before revoking)."""
        with self._lock:
            state = self._episodes.get(episode_id)
            return state.cancelled if state is not None else 0

    def next_call_index(self, episode_id: str) -> int:
        """0, 1, 2, ... in the order the episode's calls arrive (for per-call seeds)."""
        with self._lock:
            state = self._episode(episode_id)
            index = state.started
            state.started += 1
            return index

    def remember_completion(self, episode_id: str, tool_call_ids: list[str], text: str) -> None:
        with self._lock:
            state = self._episodes.get(episode_id)
            if state is None:  # revoked meanwhile: nothing more will be rendered for it
                return
            for call_id in tool_call_ids:
                state.completions[call_id] = text
            while len(state.completions) > MAX_REMEMBERED_COMPLETIONS:
                state.completions.popitem(last=False)

    def known_completions(self, episode_id: str) -> Mapping[str, str]:
        """tool call id -> raw completion text, for the renderer (a snapshot, safe to read unlocked)."""
        with self._lock:
            state = self._episodes.get(episode_id)
            return dict(state.completions) if state is not None and state.completions else {}

    def _episode(self, episode_id: str) -> _EpisodeState:
        state = self._episodes.get(episode_id)
        if state is None:
            state = self._episodes[episode_id] = _EpisodeState()
        return state


def split_untrained(counts: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """An episode's `untrained_calls` as (calls per tag, failed calls per tag)."""
    calls = {tag: n for tag, n in counts.items() if not tag.endswith(FAILED_SUFFIX)}
    failed = {tag[: -len(FAILED_SUFFIX)]: n for tag, n in counts.items() if tag.endswith(FAILED_SUFFIX)}
    return calls, failed
