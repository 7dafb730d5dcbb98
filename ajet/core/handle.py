"""`ModelHandle`: what the tuner gives every adapter. It carries the agent's identity within the episode and the
ways to reach the gateway with this agent's own API key: an in-process HTTP client (no socket), a ready
`openai.AsyncOpenAI`, and the loopback base_url for code that needs a URL (a subprocess, another language)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx
    import openai

    from ajet.core.gateway.app import Gateway

IN_PROCESS_BASE_URL = "http://ajet-gateway/v1"


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
    gateway: Gateway

    def http_client(self) -> httpx.AsyncClient:
        """An httpx client bound to the gateway in-process; requests carry this agent's key."""
        return self.gateway.http_client(self.api_key)

    def openai_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        """An `openai.AsyncOpenAI` bound to this episode and agent, in-process (no socket)."""
        import openai

        kwargs.setdefault(
            "max_retries", 0
        )  # the gateway does not fail transiently; retries would only hide bugs
        return openai.AsyncOpenAI(
            api_key=self.api_key, base_url=IN_PROCESS_BASE_URL, http_client=self.http_client(), **kwargs
        )

    @property
    def base_url(self) -> str:
        """The gateway on loopback HTTP, e.g. http://127.0.0.1:41231/v1."""
        if self.gateway.base_url is None:
            raise RuntimeError(
                "the gateway is not serving HTTP; set gateway.http: true in the config to use base_url/api_key"
            )
        return self.gateway.base_url
