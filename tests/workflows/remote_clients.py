"""Clients of an `ajet serve` run, for the subprocess tests: `python remote_clients.py KIND SERVER [N]`.

- python: `ajet.remote.EpisodeClient`, its own agent code on `ep.tuner`, N episodes (or until the run ends)
- raw: nothing from ajet, only the standard library's urllib: what any language can do
- dies: claims one episode, makes one call, then is SIGKILLed (a laptop closed mid-episode)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.error
import urllib.request
from typing import Any

TOKEN = os.environ["AJET_SERVER_TOKEN"]


def python_client(server: str, episodes: int) -> None:
    import asyncio

    from ajet.remote import EpisodeClient, RunFinished

    async def solve(ep: Any) -> str:
        client = ep.tuner.as_raw_openai_sdk_client(agent_name="solver")
        reply = await client.chat.completions.create(
            model=ep.claimed.model, messages=[{"role": "user", "content": ep.task.main_query}]
        )
        return reply.choices[0].message.content or ""

    done = 0
    with EpisodeClient(server, name="python-client", timeout_s=60) as client:
        try:
            while done < episodes:
                with client.episode(agents=["solver"]) as ep:
                    text = asyncio.run(solve(ep))
                    ep.finish(reward=float(len(text) % 2), metadata={"client": "python"})
                done += 1
        except RunFinished:
            pass
    print(json.dumps({"episodes": done}))


def post(url: str, key: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def claim(base: str) -> dict[str, Any] | None:
    """The next episode; None when the run is over. Waits for a server that is still starting."""
    import time

    while True:
        try:
            status, body = post(f"{base}/ajet/episodes/claim", TOKEN, {"agents": [{"agent_name": "solver"}]})
        except urllib.error.URLError:
            time.sleep(0.5)
            continue
        if status == 200:
            return dict(body)
        if status == 410:
            return None


def raw_client(server: str, episodes: int) -> None:
    base = server.rstrip("/") + "/v1"
    done = 0
    while done < episodes and (episode := claim(base)) is not None:
        agent = episode["agents"]["solver"]
        status, reply = post(
            f"{agent['base_url']}/chat/completions",
            agent["api_key"],
            {
                "model": agent["model"],
                "messages": [{"role": "user", "content": episode["task"]["main_query"]}],
            },
        )
        assert status == 200, status
        text = reply["choices"][0]["message"]["content"] or ""
        status, _ = post(
            f"{base}/ajet/episodes/{episode['episode_id']}/finish",
            episode["episode_key"],
            {"reward": float(len(text) % 2), "metadata": {"client": "raw"}},
        )
        assert status == 200, status
        done += 1
    print(json.dumps({"episodes": done}))


def dies(server: str) -> None:
    base = server.rstrip("/") + "/v1"
    episode = claim(base)
    assert episode is not None
    agent = episode["agents"]["solver"]
    messages = [{"role": "user", "content": episode["task"]["main_query"]}]
    status, _ = post(
        f"{agent['base_url']}/chat/completions",
        agent["api_key"],
        {"model": agent["model"], "messages": messages},
    )
    print(json.dumps({"episode_id": episode["episode_id"], "call": status}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    kind, server = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
    {
        "python": lambda: python_client(server, count),
        "raw": lambda: raw_client(server, count),
        "dies": lambda: dies(server),
    }[kind]()
