"""VersionGate: requests are served at one version each, and a weight push drains them (real threads and loops:
the gateway's requests run on its own thread's loop, the trainer's pushes on another)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ajet.core.engines.gate import VersionGate


async def test_a_push_waits_for_running_requests_and_holds_new_ones() -> None:
    gate = VersionGate()
    events: list[str] = []
    release = asyncio.Event()

    async def running() -> int:
        async with gate.request() as version:
            events.append("running started")
            await release.wait()
            events.append("running finished")
            return version

    async def push() -> None:
        async with gate.update(1):
            events.append("swap")

    async def late() -> int:
        async with gate.request() as version:
            events.append("late served")
            return version

    first = asyncio.create_task(running())
    await asyncio.sleep(0)
    pushing = asyncio.create_task(push())
    await asyncio.sleep(0.01)
    second = asyncio.create_task(late())  # arrives while the push waits
    await asyncio.sleep(0.01)
    assert events == ["running started"], "the push and the late request both wait for the running one"
    release.set()
    assert await first == 0
    await pushing
    assert await second == 1
    assert events == ["running started", "running finished", "swap", "late served"]
    assert gate.version == 1 and gate.active == 0


async def test_a_failed_push_keeps_the_old_version_and_reopens() -> None:
    gate = VersionGate(version=3)
    with pytest.raises(RuntimeError, match="reload failed"):
        async with gate.update(4):
            raise RuntimeError("reload failed")
    async with gate.request() as version:
        assert version == 3


async def test_overlapping_pushes_are_refused() -> None:
    gate = VersionGate()
    async with gate.update(1):
        with pytest.raises(RuntimeError, match="must not overlap"):
            async with gate.update(2):
                pass


async def test_a_request_cancelled_while_waiting_is_not_counted() -> None:
    gate = VersionGate()
    async with gate.update(1):
        waiting = asyncio.create_task(gate.request().__aenter__())
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert gate.active == 0
    async with gate.update(2):  # would hang if the cancelled request had been counted
        pass


def test_requests_on_another_threads_loop_are_drained_by_a_push() -> None:
    gate = VersionGate()
    started, finish = threading.Event(), threading.Event()
    served: list[int] = []

    def gateway_thread() -> None:
        async def request() -> None:
            async with gate.request() as version:
                started.set()
                await asyncio.to_thread(finish.wait)
                served.append(version)

        asyncio.run(request())

    thread = threading.Thread(target=gateway_thread)
    thread.start()
    assert started.wait(5)

    async def push() -> None:
        async def let_it_finish() -> None:
            await asyncio.sleep(0.05)
            assert gate.version == 0, "the push must not complete while the other loop's request runs"
            finish.set()

        helper = asyncio.create_task(let_it_finish())
        async with gate.update(1):
            assert served == [0]
        await helper

    asyncio.run(push())
    thread.join(5)
    assert gate.version == 1
