"""The `openai_sdk` plugin: the raw OpenAI SDK client, and base_url + api_key for any HTTP client.

client = tuner.as_raw_openai_sdk_client()          # openai.AsyncOpenAI, in-process, bound to this episode
base_url, api_key = tuner.as_oai_baseurl_apikey()  # loopback HTTP: curl, requests, a subprocess, any language
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ajet.adapters.openai_sdk.react import run_react
from ajet.core.adapter import Adapter
from ajet.core.handle import ModelHandle
from ajet.core.hookspecs import hookimpl


@dataclass(frozen=True)
class OpenAIBaseUrlApiKey:
    """Unpacks as `base_url, api_key = ...`; `.model` is the model name to put in requests."""

    base_url: str
    api_key: str
    model: str = "ajet-policy"

    def __iter__(self) -> Iterator[str]:
        return iter((self.base_url, self.api_key))


def make_openai_client(handle: ModelHandle, **client_kwargs: Any) -> Any:
    return handle.openai_client(**client_kwargs)


def make_base_url_api_key(handle: ModelHandle) -> OpenAIBaseUrlApiKey:
    return OpenAIBaseUrlApiKey(handle.base_url, handle.api_key, handle.model_name)


@hookimpl
def register_adapters(register: Any) -> None:
    register(
        Adapter(
            name="openai_sdk",
            make_model=make_openai_client,
            run_react=run_react,
            method_names=("as_raw_openai_sdk_client", "as_openai_sdk_model"),
            requires=("openai",),
            extra="openai",
            description="openai.AsyncOpenAI bound to the episode (in-process)",
        )
    )
    register(
        Adapter(
            name="http",
            make_model=make_base_url_api_key,
            method_names=("as_oai_baseurl_apikey",),
            description="base_url + api_key on loopback HTTP, for any OpenAI-compatible client",
        )
    )
