"""A shared check for adapter tests: record every socket connect and DNS lookup while active, so a test can
assert that a framework reached nothing (audit hooks cannot be removed, so one hook is installed once)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_socket_events: list[tuple[str, Any]] | None = None
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _socket_events is not None and event in ("socket.connect", "socket.getaddrinfo"):
        _socket_events.append((event, args[1] if event == "socket.connect" else args[0]))


@contextmanager
def no_sockets() -> Iterator[list[tuple[str, Any]]]:
    """Records every socket connect and DNS lookup in the process while active (audit hooks stay installed)."""
    global _socket_events, _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True
    _socket_events = events = []
    try:
        yield events
    finally:
        _socket_events = None
