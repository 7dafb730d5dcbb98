"""The episode table's filters, read from the URL's query string (so a filtered page can be shared) into an
`EpisodeQuery`. A bad value is the user's typo: `BadFilter` carries a message naming the parameter and what it
accepts, which the page shows with status 400."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, get_args
from urllib.parse import urlencode

from ajet.core.store.records import EpisodeQuery
from ajet.core.types import EpisodeStatus, Phase

PAGE_SIZE = 50
PHASES: tuple[str, ...] = get_args(Phase)
STATUSES: tuple[str, ...] = tuple(s.value for s in EpisodeStatus)
ORDERS = ("-seq", "seq")
#: the query parameters the table understands, in the order the form shows them
PARAMS = ("phase", "step", "status", "reward_min", "reward_max", "role", "order", "page")


class BadFilter(ValueError):
    pass


@dataclass(frozen=True)
class EpisodeFilter:
    """The filters as given (for the form and the page links) and the query they select."""

    values: dict[str, str]  # the non-empty parameters, as typed
    query: EpisodeQuery
    page: int

    def link(self, **changes: Any) -> str:
        """The query string of this table with some parameters changed (None removes one)."""
        params = {**self.values, **{k: None if v is None else str(v) for k, v in changes.items()}}
        return "?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})


def parse_filter(params: dict[str, str], run_id: str | None) -> EpisodeFilter:
    values = {k: params[k].strip() for k in PARAMS if params.get(k, "").strip()}
    phase = _choice(values, "phase", PHASES)
    status = _choice(values, "status", STATUSES)
    order = _choice(values, "order", ORDERS) or "-seq"  # newest first: what a watched run needs
    step = _integer(values, "step", minimum=0)
    page = _integer(values, "page", minimum=1) or 1
    low, high = _number(values, "reward_min"), _number(values, "reward_max")
    if low is not None and high is not None and low > high:
        raise BadFilter(f"reward_min ({low:g}) is above reward_max ({high:g}): no episode can match")
    query = EpisodeQuery(
        run_id=run_id,
        phase=phase,
        step=step,
        status=status,
        target_tag=values.get("role"),
        min_reward=low,
        max_reward=high,
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
        order=order,
    )
    return EpisodeFilter(values=values, query=query, page=page)


def _choice(values: dict[str, str], name: str, allowed: tuple[str, ...]) -> Any:
    value = values.get(name)
    if value is not None and value not in allowed:
        raise BadFilter(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def _integer(values: dict[str, str], name: str, minimum: int) -> int | None:
    value = values.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadFilter(f"{name}={value!r} is not a whole number") from None
    if number < minimum:
        raise BadFilter(f"{name}={number} is below {minimum}")
    return number


def _number(values: dict[str, str], name: str) -> float | None:
    value = values.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise BadFilter(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise BadFilter(f"{name}={value!r} is not a finite number")
    return number
