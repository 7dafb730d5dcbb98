"""The evaluations of a run, from its stored eval episodes (`ajet eval` writes them with phase eval and the
checkpoint's step): per step, the success rate and pass@k for k = 1..K, as `ajet eval` computes them. Each
group of episodes is one task sampled K times; two evaluations of one step are pooled."""

from __future__ import annotations

from dataclasses import dataclass, field

from ajet.core.store.base import Store
from ajet.core.store.records import EpisodeQuery
from ajet.eval.passk import pass_at_k_table
from ajet.eval.report import episode_succeeded

#: episodes read per query
PAGE = 1000


@dataclass
class StepEvaluation:
    step: int | None
    tasks: int  # groups: one task sampled `samples` times
    samples: int  # the smallest group's size: pass@k is shown for k up to it
    episodes: int
    failed: int
    success_rate: float
    pass_at_k: dict[int, float] = field(default_factory=dict)


def evaluations(store: Store, run_id: str) -> list[StepEvaluation]:
    """One row per evaluated step, in step order (the base model's, step 0 or none, first)."""
    groups: dict[int | None, dict[str, list[bool]]] = {}
    failed: dict[int | None, int] = {}
    offset = 0
    while True:
        page = store.episodes_page(EpisodeQuery(run_id=run_id, phase="eval", offset=offset, limit=PAGE))
        for episode in page:
            groups.setdefault(episode.step, {}).setdefault(episode.group_id, []).append(
                episode_succeeded(episode)
            )
            failed[episode.step] = failed.get(episode.step, 0) + (episode.status.value != "ok")
        if len(page) < PAGE:
            break
        offset += PAGE
    rows = []
    for step in sorted(groups, key=lambda s: -1 if s is None else s):
        outcomes = list(groups[step].values())
        samples = min(len(o) for o in outcomes)
        flat = [ok for o in outcomes for ok in o]
        rows.append(
            StepEvaluation(
                step=step,
                tasks=len(outcomes),
                samples=samples,
                episodes=len(flat),
                failed=failed[step],
                success_rate=sum(flat) / len(flat),
                pass_at_k=pass_at_k_table([(len(o), sum(o)) for o in outcomes], shown_ks(samples)),
            )
        )
    return rows


def shown_ks(samples: int) -> list[int]:
    """1, 2, 4, ... below `samples`, and `samples` itself."""
    ks, k = [], 1
    while k < samples:
        ks.append(k)
        k *= 2
    return [*ks, samples]
