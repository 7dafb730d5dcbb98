"""`VersionGate`: which policy version a request is served by, and a drain around each weight push.

A remote engine (a vLLM server) has no notion of our policy versions, so the client keeps them: a request is
admitted at the version the gate holds, and a push first closes the gate to new requests, waits for every
admitted one to finish, swaps the weights, then reopens at the new version. So no completion mixes two
versions, and the version recorded with a call is the one that produced every one of its tokens.

Requests arrive from the gateway's event loop (its own thread) and pushes from the trainer's: the gate is a
`threading.Lock` plus futures settled on their own loops, never an `asyncio` primitive bound to one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

_Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]


def _wake(waiters: list[_Waiter]) -> None:
    for loop, future in waiters:

        def settle(future: asyncio.Future[None] = future) -> None:
            if not future.done():
                future.set_result(None)

        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle)


class VersionGate:
    def __init__(self, version: int = 0) -> None:
        self._lock = threading.Lock()
        self._version = version
        self._active = 0
        self._updating = False
        self._admission_waiters: list[_Waiter] = []
        self._drain_waiters: list[_Waiter] = []

    @property
    def version(self) -> int:
        return self._version

    @property
    def updating(self) -> bool:
        """A push has closed the gate (it is draining or swapping)."""
        return self._updating

    @property
    def active(self) -> int:
        """Requests admitted and not yet finished."""
        return self._active

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[int]:
        """Hold the gate open for one request; yields the version it is served by."""
        version = await self._enter()
        try:
            yield version
        finally:
            self._leave()

    async def _enter(self) -> int:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if not self._updating:
                    self._active += 1
                    return self._version
                future: asyncio.Future[None] = loop.create_future()
                self._admission_waiters.append((loop, future))
            await future  # cancelled: nothing was counted, so nothing to undo

    def _leave(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0 and self._updating:
                waiters, self._drain_waiters = self._drain_waiters, []
                _wake(waiters)

    @contextlib.asynccontextmanager
    async def update(self, version: int) -> AsyncIterator[None]:
        """Close the gate, wait for the admitted requests to finish, run the body (the weight swap), then reopen
        at `version`. If the body raises, the gate reopens at the old version."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._updating:
                raise RuntimeError("a weight push is already in progress; pushes must not overlap")
            self._updating = True
            drained: asyncio.Future[None] | None = None
            if self._active > 0:
                drained = loop.create_future()
                self._drain_waiters.append((loop, drained))
        ok = False
        try:
            if drained is not None:
                await drained
            yield
            ok = True
        finally:
            with self._lock:
                if ok:
                    self._version = version
                self._updating = False
                waiters, self._admission_waiters = self._admission_waiters, []
                self._drain_waiters = []
            _wake(waiters)
