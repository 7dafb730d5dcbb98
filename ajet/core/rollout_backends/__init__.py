"""Rollout backends: where episodes run. `local` (asyncio tasks in this process, the default) and `ray` (Ray
actors, anywhere on a Ray cluster) implement one interface, `RolloutBackend`; plugins add more through
`register_rollout_backends`."""

from ajet.core.rollout_backends.base import RolloutBackend, WorkerLostError

__all__ = ["RolloutBackend", "WorkerLostError"]
