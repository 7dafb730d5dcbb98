"""Run episodes of an `ajet serve` run from anywhere: `EpisodeClient` for your own agent code, `run_worker`
(`ajet worker`) for an unchanged `Workflow` class. The protocol is plain HTTP (see docs/remote.md)."""

from ajet.core.remote_protocol import AgentGrant, AgentSpec
from ajet.remote.client import EpisodeClient, EpisodeRefused, RemoteEpisode, RunFinished

__all__ = ["AgentGrant", "AgentSpec", "EpisodeClient", "EpisodeRefused", "RemoteEpisode", "RunFinished"]
