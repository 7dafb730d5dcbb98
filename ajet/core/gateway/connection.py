"""`GatewayConnection`: how an agent's HTTP clients reach the gateway, in this process or from another one.

In the process that runs the gateway, clients send their requests straight to its ASGI app (no socket, no
port). In any other process (a Ray worker, a remote machine) they use its HTTP URL. Adapters take their
clients and base URL from here, through the `ModelHandle`, and never from the gateway object: the same
adapter code works in both places.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from typing import Any

import httpx

#: the base URL clients are given when their requests go to the ASGI app in-process (never resolved)
IN_PROCESS_BASE_URL = "http://ajet-gateway/v1"
# Generation can take minutes on a CPU; httpx's default of 5 s would cut it off.
CLIENT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class GatewayConnection:
    """`in_process(app, http_url)` in the gateway's own process, `over_http(url)` anywhere else."""

    #: what clients put in their `base_url`: IN_PROCESS_BASE_URL, or the gateway's HTTP URL
    base_url: str
    #: the gateway's Starlette app, when requests go to it in-process; None over HTTP
    app: Any = None
    #: the gateway's HTTP URL (`http://HOST:PORT/v1`), when it serves HTTP; for code that needs a real URL
    http_url: str | None = None

    @classmethod
    def in_process(cls, app: Any, http_url: str | None = None) -> GatewayConnection:
        return cls(base_url=IN_PROCESS_BASE_URL, app=app, http_url=http_url)

    @classmethod
    def over_http(cls, url: str) -> GatewayConnection:
        url = url.rstrip("/")
        return cls(base_url=url, app=None, http_url=url)

    def async_client(self, api_key: str) -> httpx.AsyncClient:
        """An httpx client whose requests carry `api_key`: in-process when possible, else over HTTP."""
        transport = httpx.ASGITransport(app=self.app) if self.app is not None else None
        return httpx.AsyncClient(
            transport=transport,
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=CLIENT_TIMEOUT_S,
        )

    def sync_client(self, api_key: str) -> httpx.Client:
        """A blocking httpx client (for sync framework calls such as LangChain's `invoke`)."""
        transport = SyncAsgiTransport(self.app) if self.app is not None else None
        return httpx.Client(
            transport=transport,
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=CLIENT_TIMEOUT_S,
        )


# -- sync requests to the in-process app -----------------------------------------------------------------------

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _helper_loop() -> asyncio.AbstractEventLoop:
    """The event loop that serves sync in-process requests. It runs in one daemon thread, started on first use,
    so a sync call works even inside a running loop (it blocks that loop while it waits)."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="ajet-gateway-sync", daemon=True).start()
        return _loop


def _forget_loop_after_fork() -> None:  # a forked child has the loop object but not its thread
    global _loop
    _loop = None


os.register_at_fork(after_in_child=_forget_loop_after_fork)


class SyncAsgiTransport(httpx.BaseTransport):
    """A sync httpx transport that sends each request to an ASGI app on the helper loop."""

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def send() -> httpx.Response:
            forwarded = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            response = await self._asgi.handle_async_request(forwarded)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return asyncio.run_coroutine_threadsafe(send(), _helper_loop()).result()
