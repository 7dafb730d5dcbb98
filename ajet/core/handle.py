"""`ModelHandle`: what the tuner gives every adapter. It carries the agent's identity within the episode and the
ways to reach the gateway with this agent's own API key: httpx clients (in-process where the gateway runs,
over HTTP anywhere else), a ready `openai.AsyncOpenAI`, and the gateway's HTTP URL for code that needs one (a
subprocess, another language). Adapters take all of that from here, never from a module constant or the gateway
object, so they work the same in a Ray worker as beside the gateway."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ajet.core.gateway.connection import IN_PROCESS_BASE_URL, GatewayConnection

if TYPE_CHECKING:
    import httpx
    import openai

__all__ = ["IN_PROCESS_BASE_URL", "ModelHandle"]


@dataclass
class ModelHandle:
    episode_id: str
    agent_name: str
    target_tag: str
    trainable: bool
    api_key: str
    model_name: str
    #: for an agent that is not trained: a native model object of its framework, or None
    debug_model: Any
    connection: GatewayConnection

    @property
    def client_base_url(self) -> str:
        """The `base_url` to give an OpenAI-style client together with `http_client()` / `sync_http_client()`."""
        return self.connection.base_url

    def http_client(self) -> httpx.AsyncClient:
        """An httpx client bound to the gateway; requests carry this agent's key."""
        return self.connection.async_client(self.api_key)

    def sync_http_client(self) -> httpx.Client:
        """A blocking httpx client bound to the gateway (for a framework's sync calls)."""
        return self.connection.sync_client(self.api_key)

    def openai_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        """An `openai.AsyncOpenAI` bound to this episode and agent."""
        import openai

        kwargs.setdefault(
            "max_retries", 0
        )  # the gateway does not fail transiently; retries would only hide bugs
        return openai.AsyncOpenAI(
            api_key=self.api_key, base_url=self.client_base_url, http_client=self.http_client(), **kwargs
        )

    @property
    def base_url(self) -> str:
        """The gateway on HTTP, e.g. http://127.0.0.1:41231/v1."""
        if self.connection.http_url is None:
            raise RuntimeError(
                "the gateway is not serving HTTP; set gateway.http: true in the config to use base_url/api_key"
            )
        return self.connection.http_url
