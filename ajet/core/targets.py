"""The one rule about `trainable_targets` that the config, the `Workflow` class and the workflow loader share:
an empty list would train nothing, so it is refused everywhere with the same words."""

from __future__ import annotations

EMPTY_TARGETS_MESSAGE = (
    "trainable_targets=[] would train nothing. Use None (or leave it out) to train every agent that uses the "
    "tuner, or list the target tags to train, e.g. ['werewolf']"
)


def check_targets_not_empty(value: list[str] | None) -> list[str] | None:
    """`value` unchanged, unless it is an empty list (ValueError with `EMPTY_TARGETS_MESSAGE`)."""
    if value is not None and len(value) == 0:
        raise ValueError(EMPTY_TARGETS_MESSAGE)
    return value
