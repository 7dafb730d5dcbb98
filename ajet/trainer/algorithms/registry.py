"""Name -> function tables for the RL algorithm pieces, in the style of verl's registries.

Four plain dicts, one per kind of piece. Built-ins fill them with the decorators below when
`ajet.trainer.algorithms` is imported; a plugin hook fills them by calling `register_*(name, fn)` (the same
functions, without the decorator sugar). Lookups raise an error that lists every known name.

    @register_advantage_estimator("grpo")
    def grpo(rewards, group_ids, ...): ...

    estimator = get_advantage_estimator(config.algorithm.advantage, extra=plugin_estimators)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import torch

Metrics = dict[str, float]


class AdvantageEstimator(Protocol):
    """`(rewards: [E] float, group_ids: [E] long, **options) -> (advantages: [E], metrics)`."""

    def __call__(
        self, rewards: torch.Tensor, group_ids: torch.Tensor, **options: Any
    ) -> tuple[torch.Tensor, Metrics]: ...


class PolicyLoss(Protocol):
    """`(logprobs [B,T], old_logprobs [B,T], advantages [B] or [B,T], mask [B,T], **config)
    -> (per_token_loss [B,T] (0 where mask is 0), metrics)`; aggregation is a separate step."""

    def __call__(
        self,
        logprobs: torch.Tensor,
        old_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
        **config: Any,
    ) -> tuple[torch.Tensor, Metrics]: ...


class Aggregation(Protocol):
    """`(per_token_loss [B,T], mask [B,T], sample_weights [B] | None, normalizer, **options) -> scalar`."""

    def __call__(
        self,
        loss: torch.Tensor,
        mask: torch.Tensor,
        *,
        sample_weights: torch.Tensor | None = None,
        normalizer: float | torch.Tensor | None = None,
        **options: Any,
    ) -> torch.Tensor: ...


class AggregationDenominator(Protocol):
    """`(mask [B,T], sample_weights [B] | None) -> scalar`: what an aggregation divides by on a batch. It depends
    on the mask and weights only (never on the loss), so the trainer can sum it over the micro-batches of a
    mini-batch before any forward pass and hand the total to every micro-batch as `normalizer`: the summed
    gradients are then those of one big batch. Every aggregation needs one, registered under the same name."""

    def __call__(self, mask: torch.Tensor, sample_weights: torch.Tensor | None = None) -> torch.Tensor: ...


class KlEstimator(Protocol):
    """`(logprobs [B,T], ref_logprobs [B,T]) -> per-token KL estimate [B,T]` (not masked, not aggregated)."""

    def __call__(self, logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor: ...


ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {}
POLICY_LOSSES: dict[str, PolicyLoss] = {}
AGGREGATIONS: dict[str, Aggregation] = {}
AGGREGATION_DENOMINATORS: dict[str, AggregationDenominator] = {}
KL_ESTIMATORS: dict[str, KlEstimator] = {}

F = TypeVar("F", bound=Callable[..., Any])


class UnknownAlgorithmError(KeyError):
    """A name that no built-in or plugin registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def register(table: dict[str, Any], name: str, fn: F, *, replace: bool = False) -> F:
    """Put `fn` into `table` under `name`. A second function under one name is an error unless `replace`,
    because two plugins silently shadowing each other would train with the wrong algorithm."""
    if not name or not isinstance(name, str):
        raise ValueError(f"an algorithm name must be a non-empty string, not {name!r}")
    existing = table.get(name)
    if existing is not None and existing is not fn and not replace:
        raise ValueError(
            f"{name!r} is already registered (by {_describe(existing)}); "
            "pick another name or pass replace=True"
        )
    table[name] = fn
    return fn


def _describe(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _decorator(table: dict[str, Any], name: str) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        return register(table, name, fn)

    return decorate


def register_advantage_estimator(name: str) -> Callable[[F], F]:
    return _decorator(ADVANTAGE_ESTIMATORS, name)


def register_policy_loss(name: str) -> Callable[[F], F]:
    return _decorator(POLICY_LOSSES, name)


def register_aggregation(name: str) -> Callable[[F], F]:
    return _decorator(AGGREGATIONS, name)


def register_aggregation_denominator(name: str) -> Callable[[F], F]:
    return _decorator(AGGREGATION_DENOMINATORS, name)


def register_kl_estimator(name: str) -> Callable[[F], F]:
    return _decorator(KL_ESTIMATORS, name)


def _get(table: Mapping[str, Any], extra: Mapping[str, Any] | None, name: str, what: str) -> Any:
    # `extra` (plugin-registered functions) wins over a built-in of the same name: a plugin that ships its own
    # "grpo" is asked for explicitly by whoever passes it.
    if extra is not None and name in extra:
        return extra[name]
    if name in table:
        return table[name]
    known = ", ".join(sorted({*table, *(extra or {})})) or "none"
    raise UnknownAlgorithmError(f"unknown {what} {name!r}; known: {known}")


def get_advantage_estimator(name: str, extra: Mapping[str, Any] | None = None) -> AdvantageEstimator:
    return _get(ADVANTAGE_ESTIMATORS, extra, name, "advantage estimator")


def get_policy_loss(name: str, extra: Mapping[str, Any] | None = None) -> PolicyLoss:
    return _get(POLICY_LOSSES, extra, name, "policy loss")


def get_aggregation(name: str, extra: Mapping[str, Any] | None = None) -> Aggregation:
    return _get(AGGREGATIONS, extra, name, "loss aggregation")


def get_aggregation_denominator(name: str, extra: Mapping[str, Any] | None = None) -> AggregationDenominator:
    """The denominator registered with aggregation `name`. An aggregation registered without one cannot be
    split into micro-batches exactly, so it is refused with what to register."""
    get_aggregation(name, extra)  # an unknown name gets the list of known aggregations
    if extra is not None and name in extra:
        return extra[name]
    if name in AGGREGATION_DENOMINATORS:
        return AGGREGATION_DENOMINATORS[name]
    raise UnknownAlgorithmError(
        f"loss aggregation {name!r} has no denominator registered. The trainer needs it to split a mini-batch "
        "into micro-batches exactly: register one under the same name, e.g. in your plugin's "
        f"register_algorithms hook: register('aggregation_denominator', {name!r}, fn) where "
        "fn(mask [B,T], sample_weights [B] | None) -> scalar is what the aggregation divides by"
    )


def get_kl_estimator(name: str, extra: Mapping[str, Any] | None = None) -> KlEstimator:
    return _get(KL_ESTIMATORS, extra, name, "KL estimator")


def install_plugin_algorithms(algorithms: Mapping[str, Any]) -> None:
    """Add what plugins registered through the `register_algorithms` hook (keys "kind:name", values the
    functions) to these registries. Re-installing the same function is a no-op; a clash raises."""
    tables = {
        "advantage_estimator": ADVANTAGE_ESTIMATORS,
        "policy_loss": POLICY_LOSSES,
        "aggregation": AGGREGATIONS,
        "aggregation_denominator": AGGREGATION_DENOMINATORS,
        "kl_estimator": KL_ESTIMATORS,
    }
    for key, fn in algorithms.items():
        kind, _, name = key.partition(":")
        if kind not in tables:
            raise ValueError(
                f"register_algorithms: unknown kind {kind!r} for {name!r}; use one of {sorted(tables)}"
            )
        register(tables[kind], name, fn)
