"""Sample building from hand-made LlmCalls (token ids written out), and a check with the SmolLM2 template.

Token ids in the hand-made calls: 1-3 system/user/assistant-header tokens, 10-40 model output, 50-62 tool
results and template glue, 99 the end-of-turn token the model emits.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from ajet.core.types import Episode, EpisodeStatus, LabeledTask, LlmCall
from ajet.trainer.samples import (
    Sample,
    SampleStats,
    assign_advantages,
    build_samples,
    compute_episode_advantages,
    group_key,
)


def episode(
    episode_id: str, group: str = "g0", reward: float | None = 1.0, status: EpisodeStatus = EpisodeStatus.OK
) -> Episode:
    task = LabeledTask(task_id=group, main_query="q")
    return Episode(episode_id=episode_id, task=task, group_id=group, status=status, reward=reward)


def call(
    episode_id: str,
    seq: int,
    prompt: list[int] | None,
    completion: list[int] | None,
    logprobs: list[float] | None = None,
    agent: str = "default",
    tag: str = "default",
    trainable: bool = True,
) -> LlmCall:
    if completion is not None and logprobs is None:
        logprobs = [-0.5] * len(completion)
    return LlmCall(
        call_id=f"{episode_id}-{agent}-{seq}",
        episode_id=episode_id,
        seq=seq,
        agent_name=agent,
        target_tag=tag,
        trainable=trainable,
        messages=[],
        prompt_ids=prompt,
        completion_ids=completion,
        logprobs=logprobs,
        finish_reason="stop",
        response={},
    )


def check_invariants(samples: list[Sample], stats: SampleStats) -> None:
    for s in samples:
        assert len(s.input_ids) == len(s.loss_mask) == len(s.old_logprobs)
        assert all(lp == 0.0 for lp, m in zip(s.old_logprobs, s.loss_mask, strict=True) if m == 0)
    assert sum(s.num_calls for s in samples) == stats.calls_used  # every used call in exactly one sample
    assert stats.calls == stats.calls_used + sum(stats.calls_skipped.values())  # and every other one counted
    assert stats.samples == len(samples)


def test_single_call() -> None:
    ep = episode("e1")
    samples, stats = build_samples([(ep, [call("e1", 0, [1, 2, 3], [10, 99], [-0.5, -0.25])])])
    check_invariants(samples, stats)
    (s,) = samples
    assert s.input_ids == [1, 2, 3, 10, 99]
    assert s.loss_mask == [0, 0, 0, 1, 1]
    assert s.old_logprobs == [0.0, 0.0, 0.0, -0.5, -0.25]
    assert (s.episode_id, s.group_id, s.reward, s.num_calls, s.episode_num_samples) == ("e1", "g0", 1.0, 1, 1)
    assert s.advantage == 0.0  # no advantages given
    assert (stats.merges, stats.tokens_total, stats.tokens_trained) == (0, 5, 2)
    assert not stats.mismatches


def test_three_turns_with_tool_results_merge_into_one_sample() -> None:
    turn1 = [1, 2, 3]  # system, user, assistant header
    out1 = [10, 11, 99]  # a tool call, then end of turn
    turn2 = [*turn1, *out1, 50, 51, 52]  # + glue, tool result, assistant header
    out2 = [20, 99]
    turn3 = [*turn2, *out2, 50, 53, 52]  # + glue, second tool result, assistant header
    out3 = [30, 31, 99]
    calls = [
        call("e1", 2, turn3, out3, [-0.6, -0.7, -0.8]),  # recorded out of order: seq decides
        call("e1", 0, turn1, out1, [-0.1, -0.2, -0.3]),
        call("e1", 1, turn2, out2, [-0.4, -0.5]),
    ]
    samples, stats = build_samples([(episode("e1"), calls)])
    check_invariants(samples, stats)
    (s,) = samples
    assert s.input_ids == [1, 2, 3, 10, 11, 99, 50, 51, 52, 20, 99, 50, 53, 52, 30, 31, 99]
    assert s.loss_mask == [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1]
    assert s.old_logprobs == [0, 0, 0, -0.1, -0.2, -0.3, 0, 0, 0, -0.4, -0.5, 0, 0, 0, -0.6, -0.7, -0.8]
    assert s.num_calls == 3 and s.call_ids == ["e1-default-0", "e1-default-1", "e1-default-2"]
    assert (stats.merges, stats.samples, stats.tokens_total, stats.tokens_trained) == (2, 1, 17, 8)
    assert not stats.mismatches


def test_prefix_mismatch_starts_a_new_sample() -> None:
    # turn 2 re-rendered turn 1 (token 3 became 4 at position 2), so it cannot extend [1, 2, 3, 10, 99]
    calls = [call("e1", 0, [1, 2, 3], [10, 99]), call("e1", 1, [1, 2, 4, 10, 99, 50, 52], [20, 99])]
    samples, stats = build_samples([(episode("e1"), calls)])
    check_invariants(samples, stats)
    assert [s.input_ids for s in samples] == [[1, 2, 3, 10, 99], [1, 2, 4, 10, 99, 50, 52, 20, 99]]
    assert [s.loss_mask for s in samples] == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 0, 1, 1]]
    assert stats.mismatches == {"prefix_mismatch": 1} and stats.merges == 0
    (m,) = stats.mismatch_examples
    assert (m.reason, m.position, m.expected, m.found, m.call_id) == (
        "prefix_mismatch",
        2,
        3,
        4,
        "e1-default-1",
    )
    assert all(s.episode_num_samples == 2 for s in samples)


@pytest.mark.parametrize(
    ("prompt2", "position", "expected", "found"),
    [
        ([1, 2, 3, 10, 12, 99, 50, 52], 4, 11, 12),  # the tool-call text was re-serialized: 11 -> 12
        ([1, 2, 3, 10, 11, 50, 52], 5, 99, 50),  # the end-of-turn token the model emitted was dropped
    ],
)
def test_completion_retokenized(prompt2: list[int], position: int, expected: int, found: int) -> None:
    calls = [call("e1", 0, [1, 2, 3], [10, 11, 99]), call("e1", 1, prompt2, [20, 99])]
    samples, stats = build_samples([(episode("e1"), calls)])
    check_invariants(samples, stats)
    assert len(samples) == 2 and stats.mismatches == {"completion_retokenized": 1}
    (m,) = stats.mismatch_examples
    assert (m.position, m.expected, m.found) == (position, expected, found)


def test_calls_without_training_are_skipped_and_counted() -> None:
    calls = [
        call("e1", 0, [1, 2], [10, 99]),
        call("e1", 1, [1, 2, 10, 99, 50], [20, 99], trainable=False),  # a judge agent, not trained
        call("e1", 2, None, None),  # trainable, but served by an endpoint without token ids
        call("e1", 3, [1, 2, 10, 99, 50, 20, 99, 51], [30, 99]),
    ]
    samples, stats = build_samples([(episode("e1"), calls)])
    check_invariants(samples, stats)
    (s,) = samples  # the skipped calls do not break the merge: call 3 extends call 0
    assert s.input_ids == [1, 2, 10, 99, 50, 20, 99, 51, 30, 99]
    assert s.loss_mask == [0, 0, 1, 1, 0, 0, 0, 0, 1, 1]  # the non-trained agent's output is context here
    assert stats.calls_skipped == {"not_trainable": 1, "no_token_ids": 1}
    assert (stats.calls, stats.calls_used, stats.merges) == (4, 2, 1)


def test_two_agents_are_two_timelines() -> None:
    a0 = call("e1", 0, [1, 2], [10, 99], agent="solver", tag="math")
    b1 = call("e1", 1, [1, 2, 10, 99, 60], [20, 99], agent="critic", tag="critic")  # reads the solver
    a2 = call("e1", 2, [1, 2, 10, 99, 60, 20, 99, 61], [30, 99], agent="solver", tag="math")
    b3 = call("e1", 3, [1, 2, 10, 99, 60, 20, 99, 61, 30, 99, 62], [40, 99], agent="critic", tag="critic")
    samples, stats = build_samples([(episode("e1"), [a0, b1, a2, b3])])
    check_invariants(samples, stats)
    solver, critic = samples
    assert (solver.agent_name, solver.target_tag) == ("solver", "math")
    assert (critic.agent_name, critic.target_tag) == ("critic", "critic")
    assert solver.input_ids == [1, 2, 10, 99, 60, 20, 99, 61, 30, 99]
    assert solver.loss_mask == [0, 0, 1, 1, 0, 0, 0, 0, 1, 1]  # the critic's words are context, not trained
    assert critic.input_ids == [1, 2, 10, 99, 60, 20, 99, 61, 30, 99, 62, 40, 99]
    assert critic.loss_mask == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1]
    assert (solver.num_calls, critic.num_calls, stats.merges) == (2, 2, 2)
    assert solver.episode_num_samples == critic.episode_num_samples == 2
    # b1 extends a0 and would have merged but for the agent: visible in the stats, at a0's end (position 4)
    assert stats.mismatches == {"different_agent": 1}
    assert stats.mismatch_examples[0].position == 4
    assert group_key(episode("e1"), solver) == ("g0", "math")


def two_sample_episode(episode_id: str) -> list[LlmCall]:
    # a prefix mismatch at position 0 makes two samples of one episode
    return [call(episode_id, 0, [1, 2], [10, 99]), call(episode_id, 1, [3, 2, 10, 99, 50], [20, 99])]


def test_advantages_are_broadcast_to_an_episodes_samples() -> None:
    pairs = [(episode(e), two_sample_episode(e)) for e in ("e1", "e2", "e3")]
    samples, _ = build_samples(pairs, advantages={"e1": 0.7, "e2": -0.7})
    assert [(s.episode_id, s.advantage) for s in samples] == [
        ("e1", 0.7),
        ("e1", 0.7),
        ("e2", -0.7),
        ("e2", -0.7),
        ("e3", 0.0),  # absent -> 0.0
        ("e3", 0.0),
    ]
    # (episode id, target tag) keys win over plain episode ids
    samples, _ = build_samples(pairs[:1], advantages={("e1", "default"): 0.25, "e1": 0.7})
    assert [s.advantage for s in samples] == [0.25, 0.25]


def test_compute_episode_advantages_with_grpo() -> None:
    # group g0: rewards 1, 0, 0 -> mean 1/3, deviations 2/3, -1/3, -1/3,
    #   unbiased std = sqrt((4/9 + 1/9 + 1/9) / 2) = sqrt(1/3) = 0.577350
    #   -> (2/3) / 0.577350 = 1.154701, (-1/3) / 0.577350 = -0.577350
    # group g1: one episode -> 0
    episodes = [
        episode("e1", "g0", 1.0),
        episode("e2", "g0", 0.0),
        episode("e3", "g0", 0.0),
        episode("e4", "g1"),
    ]
    samples, _ = build_samples([(e, two_sample_episode(e.episode_id)) for e in episodes])
    advantages, metrics = compute_episode_advantages(episodes, "grpo", samples)
    assert advantages.keys() == {("e1", "default"), ("e2", "default"), ("e3", "default"), ("e4", "default")}
    expected = {"e1": 1.154701, "e2": -0.577350, "e3": -0.577350, "e4": 0.0}
    for (episode_id, _), value in advantages.items():
        assert math.isclose(value, expected[episode_id], abs_tol=1e-5)
    assert metrics["advantage/zero_signal_group_frac"] == 0.5  # g1 of {g0, g1}
    assign_advantages(samples, advantages)
    # two samples per episode, each with its episode's value
    assert [s.advantage for s in samples] == pytest.approx(
        [1.154701] * 2 + [-0.577350] * 4 + [0.0] * 2, abs=1e-5
    )


def test_compute_episode_advantages_groups_by_target_tag() -> None:
    # e1 has a "math" and a "critic" sample, e2 only "math":
    #   group (g0, math) = {e1: 1, e2: 0} -> +-0.707107 (unbiased std of a pair)
    #   group (g0, critic) = {e1} alone -> 0. So e1's two samples get different values.
    e1, e2 = episode("e1", reward=1.0), episode("e2", reward=0.0)
    pairs: list[tuple[Episode, list[LlmCall]]] = [
        (
            e1,
            [
                call("e1", 0, [1], [10, 99], agent="a", tag="math"),
                call("e1", 1, [2], [20, 99], agent="b", tag="critic"),
            ],
        ),
        (e2, [call("e2", 0, [1], [11, 99], agent="a", tag="math")]),
    ]
    samples, _ = build_samples(pairs)
    advantages, _ = compute_episode_advantages([e1, e2], "grpo", samples)
    assign_advantages(samples, advantages)
    got = {(s.episode_id, s.target_tag): round(s.advantage, 5) for s in samples}
    assert got == {("e1", "math"): 0.70711, ("e1", "critic"): 0.0, ("e2", "math"): -0.70711}
    with pytest.raises(ValueError, match="no matching episode"):
        compute_episode_advantages([e1], "grpo", samples)


def test_per_role_rewards_give_each_role_its_own_advantage() -> None:
    # A game: in e1 the werewolves won, in e2 the villagers. Each role is compared with itself across episodes:
    #   (g0, werewolf) = {e1: 1, e2: 0} -> +-0.707107; (g0, villager) = {e1: 0, e2: 1} -> -+0.707107
    e1, e2 = episode("e1", reward=0.5), episode("e2", reward=0.5)
    e1.target_rewards = {"werewolf": 1.0, "villager": 0.0}
    e2.target_rewards = {"werewolf": 0.0, "villager": 1.0}
    pairs: list[tuple[Episode, list[LlmCall]]] = [
        (
            ep,
            [
                call(ep.episode_id, 0, [1], [10, 99], agent="p1", tag="werewolf"),
                call(ep.episode_id, 1, [2], [20, 99], agent="p2", tag="villager"),
            ],
        )
        for ep in (e1, e2)
    ]
    samples, _ = build_samples(pairs)
    advantages, _ = compute_episode_advantages([e1, e2], "grpo", samples)
    assign_advantages(samples, advantages)
    got = {(s.episode_id, s.target_tag): (s.reward, round(s.advantage, 5)) for s in samples}
    assert got == {
        ("e1", "werewolf"): (1.0, 0.70711),
        ("e1", "villager"): (0.0, -0.70711),
        ("e2", "werewolf"): (0.0, -0.70711),
        ("e2", "villager"): (1.0, 0.70711),
    }


def test_failed_episodes_are_excluded_and_counted() -> None:
    pairs = [
        (episode("ok"), [call("ok", 0, [1], [10, 99])]),
        (episode("failed", reward=None, status=EpisodeStatus.FAILED), [call("failed", 0, [1], [10, 99])]),
        (episode("late", reward=0.0, status=EpisodeStatus.TIMED_OUT), [call("late", 0, [1], [10, 99])]),
        (
            episode("unscored", reward=None),
            [call("unscored", 0, [1], [10, 99]), call("unscored", 1, [2], [9])],
        ),
    ]
    samples, stats = build_samples(pairs)
    check_invariants(samples, stats)
    assert [s.episode_id for s in samples] == ["ok"]
    assert stats.episodes_excluded == {"status:failed": 1, "status:timed_out": 1, "no_reward": 1}
    assert stats.calls_skipped == {"episode_excluded": 4}
    assert (stats.episodes, stats.episodes_used) == (4, 1)
    assert stats.as_metrics()["samples/episodes_excluded/no_reward"] == 1.0


def test_a_call_passed_with_the_wrong_episode_is_an_error() -> None:
    with pytest.raises(ValueError, match="belongs to episode e2"):
        build_samples([(episode("e1"), [call("e2", 0, [1], [10])])])


# -- the real SmolLM2 chat template --------------------------------------------------------------------------


def chat_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(out["input_ids"] if not isinstance(out, list) else out)  # transformers 5: a BatchEncoding


def test_smollm2_template_is_append_only_so_turns_merge() -> None:
    try:
        from ajet.core.models import ModelNotFoundError, load_tokenizer, resolve_model
    except ImportError as exc:
        pytest.skip(f"ajet.core.models is not available: {exc}")
    try:
        tokenizer = load_tokenizer(resolve_model("smollm2-135m-instruct"))
    except ModelNotFoundError as exc:
        pytest.skip(f"SmolLM2 is not installed: {exc}")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def completion(text: str) -> list[int]:  # what the engine returns: the answer, then <|im_end|> (EOS)
        return [*tokenizer.encode(text, add_special_tokens=False), im_end]

    turn1 = [{"role": "user", "content": "What is 2+3?"}]
    prompt1, out1 = chat_ids(tokenizer, turn1), completion("2+3 = 5.")
    turn2 = [*turn1, {"role": "assistant", "content": "2+3 = 5."}, {"role": "user", "content": "And 5+4?"}]
    prompt2, out2 = chat_ids(tokenizer, turn2), completion("5+4 = 9.")
    assert prompt2[: len(prompt1) + len(out1)] == prompt1 + out1  # append-only across turns

    calls = [call("e1", 0, prompt1, out1), call("e1", 1, prompt2, out2)]
    samples, stats = build_samples([(episode("e1"), calls)])
    check_invariants(samples, stats)
    (s,) = samples
    assert stats.merges == 1 and not stats.mismatches
    assert s.input_ids == prompt2 + out2
    trained = [t for t, m in zip(s.input_ids, s.loss_mask, strict=True) if m]
    assert tokenizer.decode(trained) == "2+3 = 5.<|im_end|>5+4 = 9.<|im_end|>"
