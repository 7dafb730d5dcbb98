"""From recorded episodes to training samples: token ids with loss masks, behaviour log-probs, advantages.

Each trainable agent of an episode is one timeline (its calls in `seq` order). Consecutive calls of a timeline
merge into one sequence when the next prompt starts with the previous sequence token-for-token (an append-only
chat template): the whole conversation is then trained in one forward pass, with only the model's own
completion tokens in the loss. When the next prompt does not extend the sequence (the template re-rendered
earlier turns, a completion was re-tokenized, the context was truncated) the call starts a new sample, and the
stats say why and where the ids first differ. Nothing is dropped or masked silently: every trainable call with
token ids ends up in exactly one sample, and every call that does not is counted with its reason.

    samples, stats = build_samples(pairs)
    advantages, metrics = compute_episode_advantages([e for e, _ in pairs], "grpo", samples)
    assign_advantages(samples, advantages)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ajet.core.types import Episode, EpisodeStatus, LlmCall, logprob_temperature
from ajet.trainer.algorithms.registry import Metrics, get_advantage_estimator

# Advantages keyed by episode id (one value for every agent of the episode) or by (episode id, target tag)
# (what `compute_episode_advantages` returns; the two differ only in multi-agent runs).
AdvantageMap = Mapping[str, float] | Mapping[tuple[str, str], float]


@dataclass
class Sample:
    """One training sequence: one call, or several consecutive calls of one agent merged.

    `input_ids`, `loss_mask` and `old_logprobs` have the same length. `loss_mask` is 1 on the tokens the model
    generated (trained), 0 on everything else (prompts, tool results, template glue); `old_logprobs[i]` is the
    engine's log-prob of token i where the mask is 1, 0.0 elsewhere. `temperatures[i]` is the temperature that
    log-prob was taken at (the call's own, see `logprob_temperature`): a merged sample's calls may each have
    their own, and the trainer recomputes each token at its call's temperature so that the importance ratio is 1
    before an update. Empty means 1.0 everywhere (demonstrations).

    `version` is the policy version that sampled it: the oldest `model_version` of its calls (the number of
    updates the served policy had had). `token_weights`, one per token, multiply its per-token policy loss:
    the truncated importance weights of an off-policy correction (`ajet.trainer.off_policy`); empty means 1.
    """

    input_ids: list[int]
    loss_mask: list[int]
    old_logprobs: list[float]
    advantage: float
    episode_id: str
    group_id: str
    agent_name: str
    target_tag: str
    reward: float
    num_calls: int = 1
    episode_num_samples: int = 1  # samples built from this sample's episode, for per-episode loss weights
    call_ids: list[str] = field(default_factory=list)
    temperatures: list[float] = field(default_factory=list)
    version: int = 0
    token_weights: list[float] = field(default_factory=list)

    @property
    def num_trained_tokens(self) -> int:
        return sum(self.loss_mask)


@dataclass(frozen=True)
class Mismatch:
    """Why a call started a new sample instead of extending the previous one, and where the ids first differ.

    `position` indexes the previous sequence (its prompt + completion); `expected` is the previous sequence's
    token there and `found` the new prompt's (None where one of them has already ended).
    """

    episode_id: str
    agent_name: str
    call_id: str
    reason: str  # "prefix_mismatch" | "completion_retokenized" | "different_agent"
    position: int
    expected: int | None
    found: int | None


@dataclass
class SampleStats:
    episodes: int = 0
    episodes_used: int = 0
    episodes_excluded: Counter[str] = field(default_factory=Counter)  # "status:failed", "no_reward", ...
    calls: int = 0  # every call passed in
    calls_used: int = 0  # trainable calls with token ids of usable episodes: each is in exactly one sample
    calls_skipped: Counter[str] = field(default_factory=Counter)  # "not_trainable", "no_token_ids", ...
    samples: int = 0
    merges: int = 0  # calls appended to the previous sample of their timeline
    # "prefix_mismatch": the new prompt differs from the previous sequence inside the previous prompt (the
    #   template re-rendered earlier turns, or the agent truncated / rewrote its context);
    # "completion_retokenized": it keeps the previous prompt but not the completion ids as generated (an EOS
    #   dropped, tool-call text re-serialized; a repeated request with the same prompt also lands here);
    # "different_agent": the first call of a timeline whose prompt extends the previous call of the episode,
    #   made by another agent; not an error (agents train as separate timelines), counted so it is visible.
    mismatches: Counter[str] = field(default_factory=Counter)
    #: every mismatch, in the order found (the trainer stores them: `ajet view` marks each where it happened)
    mismatch_examples: list[Mismatch] = field(default_factory=list)
    tokens_total: int = 0
    tokens_trained: int = 0

    def add_mismatch(self, mismatch: Mismatch) -> None:
        self.mismatches[mismatch.reason] += 1
        self.mismatch_examples.append(mismatch)

    def as_metrics(self) -> Metrics:
        """Flat numbers for a metrics logger (`samples/...`)."""
        metrics: Metrics = {
            "samples/episodes_used": float(self.episodes_used),
            "samples/calls_used": float(self.calls_used),
            "samples/samples": float(self.samples),
            "samples/merges": float(self.merges),
            "samples/tokens_total": float(self.tokens_total),
            "samples/tokens_trained": float(self.tokens_trained),
        }
        for prefix, counts in (
            ("episodes_excluded", self.episodes_excluded),
            ("calls_skipped", self.calls_skipped),
            ("mismatch", self.mismatches),
        ):
            metrics.update({f"samples/{prefix}/{key}": float(value) for key, value in counts.items()})
        return metrics


class _HasTargetTag(Protocol):
    target_tag: str


def group_key(episode: Episode, call_or_sample: _HasTargetTag) -> tuple[str, str]:
    """The GRPO group a call or sample belongs to: (task group, target tag).

    The episodes of one task are rollouts of the same prompt, so their rewards are comparable. In a
    multi-agent run each target tag is its own group as well: a tag's samples are compared only with the same
    tag's samples in the task's other episodes (an episode where that agent never called the model is not in
    its group).
    """
    return episode.group_id, call_or_sample.target_tag


def exclusion_reason(episode: Episode) -> str | None:
    """Why an episode cannot be trained on (`"status:failed"`, `"no_reward"`), or None when it can."""
    if episode.status != EpisodeStatus.OK:
        return f"status:{episode.status.value}"
    if episode.reward is None:
        return "no_reward"
    return None


class _SampleBuilder:
    """Accumulates the calls of one timeline segment into one sequence."""

    def __init__(self, episode: Episode, call: LlmCall, prompt: list[int], completion: list[int]) -> None:
        self.episode = episode
        self.agent_name = call.agent_name
        self.target_tag = call.target_tag
        self.input_ids: list[int] = []
        self.loss_mask: list[int] = []
        self.old_logprobs: list[float] = []
        self.temperatures: list[float] = []
        self.call_ids: list[str] = []
        self.version = call.model_version  # the oldest version among its calls (see `Sample.version`)
        self.last_prompt_len = 0  # the latest call's prompt length: input_ids == its prompt + its completion
        self.append(call, prompt, completion)

    def append(self, call: LlmCall, prompt: list[int], completion: list[int]) -> None:
        # A merged call's `prompt` starts with `input_ids` (checked by the caller): add only the new part.
        new_context = prompt[len(self.input_ids) :]
        self.input_ids += new_context + completion
        self.loss_mask += [0] * len(new_context) + [1] * len(completion)
        self.old_logprobs += [0.0] * len(new_context) + [float(x) for x in call.logprobs or []]
        # Context positions are never scored; they take the call's temperature only to keep one value per token.
        self.temperatures += [logprob_temperature(call.sampling)] * (len(new_context) + len(completion))
        self.call_ids.append(call.call_id)
        self.version = min(self.version, call.model_version)
        self.last_prompt_len = len(prompt)

    def mismatch(self, call: LlmCall, prompt: list[int]) -> Mismatch | None:
        """None when `prompt` extends this sequence token-for-token (so `call` merges), else why not."""
        full = self.input_ids
        if prompt[: len(full)] == full:
            return None
        position = _first_difference(full, prompt)
        reason = "completion_retokenized" if position >= self.last_prompt_len else "prefix_mismatch"
        return _mismatch(self.episode, call, reason, position, full, prompt)

    def build(self, advantage: float) -> Sample:
        return Sample(
            input_ids=self.input_ids,
            loss_mask=self.loss_mask,
            old_logprobs=self.old_logprobs,
            advantage=advantage,
            episode_id=self.episode.episode_id,
            group_id=self.episode.group_id,
            agent_name=self.agent_name,
            target_tag=self.target_tag,
            reward=float(self.episode.reward_for(self.target_tag) or 0.0),
            num_calls=len(self.call_ids),
            call_ids=self.call_ids,
            temperatures=self.temperatures,
            version=self.version,
        )


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def _mismatch(
    episode: Episode, call: LlmCall, reason: str, position: int, previous: list[int], prompt: list[int]
) -> Mismatch:
    return Mismatch(
        episode_id=episode.episode_id,
        agent_name=call.agent_name,
        call_id=call.call_id,
        reason=reason,
        position=position,
        expected=previous[position] if position < len(previous) else None,
        found=prompt[position] if position < len(prompt) else None,
    )


def _advantage_for(advantages: AdvantageMap | None, episode_id: str, target_tag: str) -> float:
    if not advantages:
        return 0.0
    by_key: Mapping[Any, float] = advantages
    value = by_key.get((episode_id, target_tag), by_key.get(episode_id, 0.0))
    return float(value)


def _episode_samples(
    episode: Episode, calls: Iterable[LlmCall], advantages: AdvantageMap | None, stats: SampleStats
) -> list[Sample]:
    """The samples of one usable episode: one timeline per (agent_name, target_tag), merged where possible."""
    builders: dict[tuple[str, str], _SampleBuilder] = {}  # the open sample of each timeline
    done: list[_SampleBuilder] = []
    previous: tuple[tuple[str, str], list[int]] | None = None  # the episode's previous usable call: key, ids
    for call in sorted(calls, key=lambda c: c.seq):  # stable: calls with equal seq keep their recorded order
        if not call.trainable:
            stats.calls_skipped["not_trainable"] += 1
            continue
        if call.prompt_ids is None or call.completion_ids is None:
            # A trainable agent served by an engine without token ids (a remote endpoint): nothing to train.
            stats.calls_skipped["no_token_ids"] += 1
            continue
        stats.calls_used += 1
        prompt, completion = list(call.prompt_ids), list(call.completion_ids)
        key = (call.agent_name, call.target_tag)
        open_sample = builders.get(key)
        if open_sample is None:
            if previous is not None and previous[0] != key and prompt[: len(previous[1])] == previous[1]:
                stats.add_mismatch(
                    _mismatch(episode, call, "different_agent", len(previous[1]), previous[1], prompt)
                )
            builders[key] = _SampleBuilder(episode, call, prompt, completion)
        else:
            mismatch = open_sample.mismatch(call, prompt)
            if mismatch is None:
                open_sample.append(call, prompt, completion)
                stats.merges += 1
            else:
                stats.add_mismatch(mismatch)
                done.append(open_sample)
                builders[key] = _SampleBuilder(episode, call, prompt, completion)
        previous = key, prompt + completion
    done.extend(builders.values())
    return [b.build(_advantage_for(advantages, episode.episode_id, b.target_tag)) for b in done]


def build_samples(
    episodes_with_calls: list[tuple[Episode, list[LlmCall]]], *, advantages: AdvantageMap | None = None
) -> tuple[list[Sample], SampleStats]:
    """Turn episodes and their recorded calls into training samples (see the module docstring).

    `advantages` maps an episode id, or an (episode id, target tag) pair (looked up first), to its advantage;
    0.0 where absent. Episodes whose status is not ok or that have no reward are excluded and counted.
    Samples come out grouped by episode, in the order the episodes were given.
    """
    stats = SampleStats()
    samples: list[Sample] = []
    for episode, calls in episodes_with_calls:
        stats.episodes += 1
        stats.calls += len(calls)
        for call in calls:
            if call.episode_id != episode.episode_id:
                raise ValueError(
                    f"call {call.call_id} belongs to episode {call.episode_id}, "
                    f"but was passed with episode {episode.episode_id}"
                )
        reason = exclusion_reason(episode)
        if reason is not None:
            stats.episodes_excluded[reason] += 1
            stats.calls_skipped["episode_excluded"] += len(calls)
            continue
        stats.episodes_used += 1
        episode_samples = _episode_samples(episode, calls, advantages, stats)
        for sample in episode_samples:
            sample.episode_num_samples = len(episode_samples)
        samples.extend(episode_samples)

    stats.samples = len(samples)
    stats.tokens_total = sum(len(s.input_ids) for s in samples)
    stats.tokens_trained = sum(s.num_trained_tokens for s in samples)
    return samples, stats


def compute_episode_advantages(
    episodes: Iterable[Episode],
    estimator: str,
    samples: Iterable[Sample],
    *,
    extra_estimators: Mapping[str, Any] | None = None,
    **options: Any,
) -> tuple[dict[tuple[str, str], float], Metrics]:
    """Run the registered advantage `estimator` over the episodes that have samples.

    One entry per (episode id, target tag) that has samples, grouped with `group_key`; `options` go to the
    estimator (e.g. `std_unbiased=False` for grpo). Returns the mapping `build_samples` and
    `assign_advantages` accept, and the estimator's metrics.
    """
    by_id = {episode.episode_id: episode for episode in episodes}
    members: dict[tuple[str, str], Sample] = {}  # (episode id, target tag) -> its first sample, in order
    for sample in samples:
        member = (sample.episode_id, sample.target_tag)
        if member in members:
            continue
        episode = by_id.get(sample.episode_id)
        if episode is None:
            raise ValueError(f"sample of episode {sample.episode_id} has no matching episode")
        if exclusion_reason(episode) is None:
            members[member] = sample
    if not members:
        return {}, {}

    groups: dict[tuple[str, str], int] = {}  # group key -> group index
    group_index = [groups.setdefault(group_key(by_id[ep], s), len(groups)) for (ep, _), s in members.items()]
    # float64: rewards are few, and exact-looking advantages make logs and tests easier to read
    # each (episode, tag) member gets its role's reward when the workflow gave per-role rewards
    rewards = torch.tensor(
        [float(by_id[ep].reward_for(tag) or 0.0) for ep, tag in members], dtype=torch.float64
    )
    fn = get_advantage_estimator(estimator, extra_estimators)
    values, metrics = fn(rewards, torch.tensor(group_index, dtype=torch.long), **options)
    return dict(zip(members, values.tolist(), strict=True)), metrics


def assign_advantages(samples: Iterable[Sample], advantages: AdvantageMap) -> None:
    """Set each sample's advantage: by (episode id, target tag), else by episode id, else 0.0."""
    for sample in samples:
        sample.advantage = _advantage_for(advantages, sample.episode_id, sample.target_tag)
