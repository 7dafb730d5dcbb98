"""The episode API's messages: what `ajet serve` and its clients (`ajet.remote`, `ajet worker`, curl) exchange.

    POST /v1/ajet/episodes/claim               server token   ClaimRequest  -> 200 ClaimedEpisode | 204 | 410
    POST /v1/ajet/episodes/{id}/heartbeat      episode key    (empty)       -> 200 LeaseAnswer
    POST /v1/ajet/episodes/{id}/finish         episode key    FinishRequest -> 200 EpisodeAck
    POST /v1/ajet/episodes/{id}/abort          episode key    AbortRequest  -> 200 EpisodeAck
    GET  /v1/ajet/openapi.json                 (none)                       -> the OpenAPI 3.1 schema

Plain pydantic models, so the server validates every body (a bad one is a 400 that names the field) and the
OpenAPI schema is generated from the same classes the code uses.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ajet.core.gateway.keys import OpenAIEndpoint
from ajet.core.types import Task

EPISODES_PATH = "/ajet/episodes"  # under the gateway's /v1 base URL
OPENAPI_PATH = "/ajet/openapi.json"
SERVER_TOKEN_ENV = "AJET_SERVER_TOKEN"
#: the longest a claim may wait for an episode before it is answered 204 (the client then asks again)
MAX_CLAIM_WAIT_S = 60.0


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentSpec(_Message):
    """An agent the client will run in the episode: it gets one API key for the OpenAI-compatible endpoint."""

    agent_name: str = Field("default", min_length=1, description="the agent's name, e.g. solver")
    target_tag: str | None = Field(
        None, description="its role for training (trainable_targets); default: the agent's name"
    )
    debug_endpoint: OpenAIEndpoint | None = Field(
        None, description="for an agent the run does not train: the endpoint that serves it instead"
    )

    @property
    def tag(self) -> str:
        return self.target_tag or self.agent_name


class ClaimRequest(_Message):
    agents: list[AgentSpec] = Field(
        default_factory=lambda: [AgentSpec()],
        description="the agents to issue keys for (default: one agent named 'default'; [] for none: a "
        "client can ask for them later with POST /v1/ajet/agent_keys and the episode key)",
    )
    wait_s: float = Field(
        20.0, ge=0, le=MAX_CLAIM_WAIT_S, description="how long to wait for an episode before a 204"
    )
    worker: dict[str, Any] = Field(
        default_factory=dict,
        description="who claims it, recorded with the episode, e.g. {host: ..., pid: ...}",
    )

    @field_validator("agents")
    @classmethod
    def _distinct_names(cls, agents: list[AgentSpec]) -> list[AgentSpec]:
        names = [a.agent_name for a in agents]
        if len(set(names)) != len(names):
            raise ValueError(f"agent names must be distinct, got {names}")
        return agents


class AgentGrant(_Message):
    """One agent's access: point any OpenAI-compatible client at `base_url` with `api_key`."""

    api_key: str
    base_url: str
    model: str
    target_tag: str
    trainable: bool


class ClaimedEpisode(_Message):
    episode_id: str
    group_id: str
    repeat_index: int
    task: Task = Field(description="the task without its label")
    base_url: str = Field(description="the OpenAI-compatible endpoint, http://HOST:PORT/v1")
    model: str = Field(description="the model name to send in requests")
    episode_key: str = Field(description="authenticates heartbeat, finish and abort (and more agent keys)")
    agents: dict[str, AgentGrant] = Field(description="agent name -> its key")
    trainable_targets: list[str] | None = None
    framework: str | None = None
    lease_s: float = Field(description="the episode is re-offered if no heartbeat comes for this long")
    heartbeat_every_s: float
    timeout_s: float = Field(description="the episode is timed out after this long, heartbeats or not")


class LeaseAnswer(_Message):
    episode_id: str
    lease_s: float = Field(description="seconds left on the lease")


class FinishRequest(_Message):
    reward: float | None = Field(
        None, description="the episode's reward (null: the run's judger scores it, if it has one)"
    )
    is_success: bool | None = None
    target_rewards: dict[str, float] = Field(
        default_factory=dict, description="per-role rewards in multi-agent episodes: target_tag -> reward"
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    untrained_calls: dict[str, int] = Field(
        default_factory=dict,
        description="calls of untrained agents made with their own models (not through base_url), per tag",
    )


class AbortRequest(_Message):
    error: str = Field(min_length=1, description="why the episode could not be finished")
    traceback: str | None = None
    status: Literal["failed", "timed_out"] = Field(
        "failed", description="'timed_out' when the client gave up on time (recorded as timed out)"
    )


class EpisodeAck(_Message):
    episode_id: str
    status: str = Field(description="'recorded': the server has it")


def openapi_schema(server_url: str | None = None) -> dict[str, Any]:
    """The episode API as OpenAPI 3.1, built from the message classes above."""
    components: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            components[name] = sub
        components[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def body(model: type[BaseModel]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": ref(model)}}}

    def answer(model: type[BaseModel], description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref(model)}}}

    error = {"description": "an OpenAI-style error body: {error: {message, type, code}}"}
    episode_id = {"name": "episode_id", "in": "path", "required": True, "schema": {"type": "string"}}
    episode_key = [{"episodeKey": []}]
    paths = {
        f"/v1{EPISODES_PATH}/claim": {
            "post": {
                "summary": "Claim the next episode: its task, a group id, the endpoint and a key per agent",
                "security": [{"serverToken": []}],
                "requestBody": body(ClaimRequest),
                "responses": {
                    "200": answer(ClaimedEpisode, "an episode, leased to the caller"),
                    "204": {"description": "no episode became available within wait_s: claim again"},
                    "400": error,
                    "401": error,
                    "410": {"description": "the run has finished: no more episodes"},
                },
            }
        },
        f"/v1{EPISODES_PATH}/{{episode_id}}/heartbeat": {
            "post": {
                "summary": "Extend the episode's lease (send one every heartbeat_every_s)",
                "security": episode_key,
                "parameters": [episode_id],
                "responses": {
                    "200": answer(LeaseAnswer, "the lease"),
                    "401": error,
                    "403": error,
                    "409": error,
                },
            }
        },
        f"/v1{EPISODES_PATH}/{{episode_id}}/finish": {
            "post": {
                "summary": "Report the episode's reward; its key and its agents' keys stop working",
                "security": episode_key,
                "parameters": [episode_id],
                "requestBody": body(FinishRequest),
                "responses": {
                    "200": answer(EpisodeAck, "recorded"),
                    "400": error,
                    "401": error,
                    "403": error,
                    "409": error,
                },
            }
        },
        f"/v1{EPISODES_PATH}/{{episode_id}}/abort": {
            "post": {
                "summary": "Give the episode up with an error (recorded as failed)",
                "security": episode_key,
                "parameters": [episode_id],
                "requestBody": body(AbortRequest),
                "responses": {
                    "200": answer(EpisodeAck, "recorded"),
                    "401": error,
                    "403": error,
                    "409": error,
                },
            }
        },
    }
    schema: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "ajet episode API",
            "version": "1",
            "description": "Claim episodes of an `ajet serve` run, run them against its OpenAI-compatible "
            "endpoint with the keys you get, and report their rewards.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "serverToken": {"type": "http", "scheme": "bearer", "description": "the server's token"},
                "episodeKey": {"type": "http", "scheme": "bearer", "description": "the claim's episode_key"},
            },
        },
    }
    if server_url:
        schema["servers"] = [{"url": server_url}]
    return schema
