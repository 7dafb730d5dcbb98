"""The algorithm functions against values computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from ajet.trainer.algorithms import (
    ADVANTAGE_ESTIMATORS,
    AGGREGATIONS,
    KL_ESTIMATORS,
    POLICY_LOSSES,
    UnknownAlgorithmError,
    denominator,
    entropy_from_logits,
    get_advantage_estimator,
    get_aggregation,
    get_kl_estimator,
    get_policy_loss,
    register,
    register_advantage_estimator,
)


def close(actual: torch.Tensor | float, expected: torch.Tensor | list | float, tol: float = 1e-5) -> None:
    expected_t = torch.as_tensor(expected, dtype=torch.float64)
    actual_t = torch.as_tensor(actual, dtype=torch.float64)
    assert torch.allclose(actual_t, expected_t, atol=tol, rtol=0), (
        f"{actual_t.tolist()} != {expected_t.tolist()}"
    )


# -- registry ------------------------------------------------------------------------------------------------


def test_builtins_are_registered() -> None:
    assert {"grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"} <= set(ADVANTAGE_ESTIMATORS)
    assert {"ppo_clip", "gspo", "pg"} <= set(POLICY_LOSSES)
    assert {"token_mean", "seq_mean_token_mean", "seq_mean_token_sum"} <= set(AGGREGATIONS)
    assert {"k1", "k2", "k3", "low_var_kl"} <= set(KL_ESTIMATORS)
    assert get_kl_estimator("low_var_kl") is get_kl_estimator("k3")


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownAlgorithmError) as info:
        get_policy_loss("ppo_clipp")
    assert "unknown policy loss 'ppo_clipp'" in str(info.value)
    assert "gspo, nll, pg, ppo_clip" in str(info.value)
    with pytest.raises(UnknownAlgorithmError, match="plugin_adv"):  # plugin names are listed too
        get_advantage_estimator("nope", extra={"plugin_adv": lambda r, g: (r, {})})


def test_extra_mapping_and_register() -> None:
    def mine(rewards: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return rewards, {}

    assert get_advantage_estimator("mine", extra={"mine": mine}) is mine
    table: dict[str, object] = {}
    register(table, "mine", mine)
    register(table, "mine", mine)  # the same function again is harmless
    with pytest.raises(ValueError, match="already registered"):
        register(table, "mine", lambda r, g: (r, {}))
    with pytest.raises(ValueError, match="already registered"):
        register_advantage_estimator("grpo")(mine)  # a plugin cannot silently shadow a built-in
    assert get_advantage_estimator("grpo") is not mine


# -- advantages ----------------------------------------------------------------------------------------------

# Group 7: rewards 0, 1, 2 (mean 1). Group 3: 5, 5 (all equal). Group 9: 4 alone. Ids need not be contiguous.
REWARDS = torch.tensor([0.0, 1.0, 2.0, 5.0, 5.0, 4.0])
GROUPS = torch.tensor([7, 7, 7, 3, 3, 9])


def test_grpo_unbiased_std() -> None:
    # group 7: unbiased std = sqrt(((0-1)^2 + 0 + (2-1)^2) / (3-1)) = 1 -> (r - 1) / (1 + 1e-6) = -1, 0, 1
    # group 3: r - mean = 0 -> 0; group 9: a group of one -> 0
    adv, metrics = get_advantage_estimator("grpo")(REWARDS, GROUPS)
    close(adv, [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    close(metrics["advantage/mean"], 0.0)
    close(metrics["advantage/std"], math.sqrt(2 / 6))  # population std of [-1, 0, 1, 0, 0, 0]
    close(metrics["advantage/zero_signal_group_frac"], 2 / 3)  # groups 3 and 9 of three groups
    assert metrics["advantage/num_groups"] == 3.0


def test_grpo_biased_std_and_pair() -> None:
    # biased std of 0, 1, 2 = sqrt(2/3) = 0.816497 -> +-1 / 0.816497 = +-1.224745
    adv, _ = get_advantage_estimator("grpo")(REWARDS, GROUPS, std_unbiased=False)
    close(adv, [-1.224745, 0.0, 1.224745, 0.0, 0.0, 0.0])
    # a pair {1, 0}: mean 0.5, unbiased std sqrt(0.5) = 0.707107 -> +-0.5 / 0.707107 = +-0.707107
    adv, _ = get_advantage_estimator("grpo")(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]))
    close(adv, [0.707107, -0.707107])


def test_dr_grpo() -> None:
    adv, _ = get_advantage_estimator("dr_grpo")(REWARDS, GROUPS)
    close(adv, [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0])  # r - group mean, no std


def test_rloo() -> None:
    # group 7: 0 - mean(1, 2) = -1.5; 1 - mean(0, 2) = 0; 2 - mean(0, 1) = 1.5
    # group 3: 5 - 5 = 0; group 9: alone -> 0
    adv, _ = get_advantage_estimator("rloo")(REWARDS, GROUPS)
    close(adv, [-1.5, 0.0, 1.5, 0.0, 0.0, 0.0])


def test_reinforce_pp_baseline() -> None:
    # centred = [-1, 0, 1, 0, 0, 0]; batch mean 0; unbiased batch std = sqrt(2 / 5) = 0.632456
    # -> +-1 / 0.632456 = +-1.581139
    adv, _ = get_advantage_estimator("reinforce_pp_baseline")(REWARDS, GROUPS)
    close(adv, [-1.581139, 0.0, 1.581139, 0.0, 0.0, 0.0])


def test_advantage_edge_cases() -> None:
    for name in ("grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"):
        fn = get_advantage_estimator(name)
        adv, metrics = fn(torch.tensor([3.0]), torch.tensor([0]))  # one episode: nothing to compare with
        close(adv, [0.0])
        assert metrics["advantage/zero_signal_group_frac"] == 1.0
        adv, metrics = fn(torch.zeros(0), torch.zeros(0, dtype=torch.long))
        assert adv.shape == (0,) and metrics["advantage/mean"] == 0.0
    grpo = get_advantage_estimator("grpo")
    with pytest.raises(ValueError, match="finite"):
        grpo(torch.tensor([1.0, float("nan")]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="shape"):
        grpo(torch.tensor([1.0, 0.0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="integer"):
        grpo(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))


# -- policy losses -------------------------------------------------------------------------------------------

# old_logprobs = 0, so ratio = exp(logprobs). Row 0: A = +1, ratios 1, 1.5, 0.5.
# Row 1: A = -1, ratios 0.5, 1.5, 4.0, the last token masked out.
RATIOS = torch.tensor([[1.0, 1.5, 0.5], [0.5, 1.5, 4.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
ADV = torch.tensor([1.0, -1.0])


def test_ppo_clip_values_grads_and_metrics() -> None:
    logprobs = RATIOS.log().requires_grad_()
    loss, metrics = get_policy_loss("ppo_clip")(logprobs, torch.zeros(2, 3), ADV, MASK)
    # row 0 (A=+1): -1*1 = -1; max(-1.5, -1.2) = -1.2 (clipped high); max(-0.5, -0.8) = -0.5
    # row 1 (A=-1): max(0.5, 0.8) = 0.8 (clipped low); max(1.5, 1.2) = 1.5; masked -> 0
    close(loss.detach(), [[-1.0, -1.2, -0.5], [0.8, 1.5, 0.0]])
    loss.sum().backward()
    # d(-A * ratio)/d logp = -A * ratio where unclipped; 0 where clipped or masked
    close(logprobs.grad, [[-1.0, 0.0, -0.5], [0.0, 1.5, 0.0]])
    close(metrics["policy/clip_frac_high"], 1 / 5)
    close(metrics["policy/clip_frac_low"], 1 / 5)
    # approx_kl = mean(old - new) over 5 tokens = -(ln1 + ln1.5 + ln0.5 + ln0.5 + ln1.5) / 5
    #           = -(2 * 0.405465 - 2 * 0.693147) / 5 = 0.115073
    close(metrics["policy/approx_kl"], 0.115073)
    close(metrics["policy/ratio_mean"], 1.0)  # (1 + 1.5 + 0.5 + 0.5 + 1.5) / 5
    close(metrics["policy/ratio_max"], 1.5)  # 4.0 is masked out


def test_ppo_clip_higher_and_dual_clip() -> None:
    loss, _ = get_policy_loss("ppo_clip")(RATIOS.log(), torch.zeros(2, 3), ADV, MASK, clip_high=0.28)
    close(loss[0, 1], -1.28)  # DAPO clip-higher: 1.5 clipped to 1.28
    # dual clip, all tokens trained: row 1 token 2 (A=-1, ratio 4): max(4, 1.2) = 4, capped at clip_c * 1 = 3
    logprobs = RATIOS.log().requires_grad_()
    ones = torch.ones(2, 3)
    loss, metrics = get_policy_loss("ppo_clip")(logprobs, torch.zeros(2, 3), ADV, ones, clip_c=3.0)
    close(loss.detach(), [[-1.0, -1.2, -0.5], [0.8, 1.5, 3.0]])
    loss.sum().backward()
    assert logprobs.grad[1, 2] == 0.0  # the cap is a constant
    close(metrics["policy/dual_clip_frac"], 1 / 6)
    with pytest.raises(ValueError, match="clip_c"):
        get_policy_loss("ppo_clip")(logprobs, torch.zeros(2, 3), ADV, ones, clip_c=0.5)


def test_per_token_advantages() -> None:
    adv = torch.tensor([[1.0, 2.0, 0.0], [-1.0, 0.0, 0.0]])  # [B, T] is used as is
    loss, _ = get_policy_loss("pg")(torch.full((2, 3), -0.5), torch.zeros(2, 3), adv, MASK)
    close(loss, [[0.5, 1.0, 0.0], [-0.5, 0.0, 0.0]])  # -A * logp = -A * -0.5


def test_pg() -> None:
    logprobs = torch.tensor([[-0.5, -2.0, -1.0], [-0.1, -3.0, -9.0]], requires_grad=True)
    loss, metrics = get_policy_loss("pg")(logprobs, logprobs.detach(), ADV, MASK)
    # -A * logp: row 0 (A=+1): 0.5, 2, 1; row 1 (A=-1): -0.1, -3, masked 0
    close(loss.detach(), [[0.5, 2.0, 1.0], [-0.1, -3.0, 0.0]])
    loss.sum().backward()
    close(logprobs.grad, [[-1.0, -1.0, -1.0], [1.0, 1.0, 0.0]])
    assert metrics["policy/approx_kl"] == 0.0  # on-policy


def test_gspo_sequence_ratio_and_gradient() -> None:
    # row 0: mean log ratio (0.1 + 0.3) / 2 = 0.2 -> s = e^0.2 = 1.221403, A = +1
    # row 1: only token 0 is trained: mean -0.2 -> s = e^-0.2 = 0.818731, A = -1 (token 1's 5.0 is ignored)
    logprobs = torch.tensor([[0.1, 0.3], [-0.2, 5.0]], requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, metrics = get_policy_loss("gspo")(
        logprobs, torch.zeros(2, 2), ADV, mask, clip_low=0.5, clip_high=0.5
    )
    close(loss.detach(), [[-1.221403, -1.221403], [0.818731, 0.0]])  # -A * s on every trained token
    close(metrics["policy/ratio_mean"], (1.221403 + 0.818731) / 2)
    close(metrics["policy/approx_kl"], -(0.1 + 0.3 - 0.2) / 3)

    # With seq_mean_token_mean this is the sequence-level objective mean_i(-A_i * s_i): same gradient.
    get_aggregation("seq_mean_token_mean")(loss, mask).backward()
    reference = logprobs.detach().clone().requires_grad_()
    s = torch.stack([(reference[0, 0] + reference[0, 1]).div(2).exp(), reference[1, 0].exp()])
    (-(ADV * s)).mean().backward()
    # d/dlogp_00 = -1 * s_0 / 2 / 2 = -0.305351; d/dlogp_10 = +1 * s_1 / 1 / 2 = 0.409365
    close(logprobs.grad, [[-0.305351, -0.305351], [0.409365, 0.0]])
    close(logprobs.grad, reference.grad)


def test_gspo_default_clip_is_per_sequence() -> None:
    logprobs = torch.tensor([[0.1, 0.3], [-0.2, 5.0]], requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, metrics = get_policy_loss("gspo")(logprobs, torch.zeros(2, 2), ADV, mask)
    # row 0: s = 1.2214 > 1 + 4e-4 with A > 0 -> -1.0004 on both tokens
    # row 1: s = 0.8187 < 1 - 3e-4 with A < 0 -> max(0.818731, 0.9997) = 0.9997
    close(loss.detach(), [[-1.0004, -1.0004], [0.9997, 0.0]])
    close(metrics["policy/clip_frac_high"], 2 / 3)  # both trained tokens of row 0, of 3 trained tokens
    close(metrics["policy/clip_frac_low"], 1 / 3)
    loss.sum().backward()
    close(logprobs.grad, [[0.0, 0.0], [0.0, 0.0]])  # everything clipped -> no gradient


def test_loss_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        get_policy_loss("ppo_clip")(torch.zeros(2, 3), torch.zeros(2, 2), ADV, MASK)
    with pytest.raises(ValueError, match="advantages"):
        get_policy_loss("ppo_clip")(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), MASK)


# -- aggregation ---------------------------------------------------------------------------------------------

# Row 0 trains tokens 1, 2; row 1 trains token 4; row 2 trains nothing (and has NaN in masked positions).
LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [float("nan"), 9.0, 9.0]])
LOSS_MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])


def test_aggregations() -> None:
    close(get_aggregation("token_mean")(LOSS, LOSS_MASK), (1 + 2 + 4) / 3)  # 2.333333
    close(get_aggregation("seq_mean_token_mean")(LOSS, LOSS_MASK), ((1 + 2) / 2 + 4 / 1) / 2)  # 2.75
    close(get_aggregation("seq_mean_token_sum")(LOSS, LOSS_MASK), ((1 + 2) + 4) / 2)  # 3.5
    close(get_aggregation("seq_mean_token_sum")(LOSS, LOSS_MASK, norm_len=4), 3.5 / 4)  # 0.875


def test_aggregations_with_sample_weights() -> None:
    w = torch.tensor([0.5, 1.0, 1.0])  # row 0's episode made 2 samples, row 1's just 1
    # token_mean: (0.5 * (1 + 2) + 1 * 4) / (0.5 * 2 + 1 * 1) = 5.5 / 2 = 2.75
    close(get_aggregation("token_mean")(LOSS, LOSS_MASK, sample_weights=w), 2.75)
    # seq_mean_token_mean: (0.5 * 1.5 + 1 * 4) / (0.5 + 1) = 4.75 / 1.5 = 3.166667 (row 2 has no tokens)
    close(get_aggregation("seq_mean_token_mean")(LOSS, LOSS_MASK, sample_weights=w), 4.75 / 1.5)
    # seq_mean_token_sum: (0.5 * 3 + 1 * 4) / 1.5 = 3.666667
    close(get_aggregation("seq_mean_token_sum")(LOSS, LOSS_MASK, sample_weights=w), 5.5 / 1.5)


def test_aggregation_of_nothing_is_zero_not_nan() -> None:
    loss = torch.tensor([[1.0, float("nan")]], requires_grad=True)
    for name in ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum"):
        result = get_aggregation(name)(loss, torch.zeros(1, 2))
        assert result.item() == 0.0
        result.backward()  # still part of the graph: a step on an empty batch is a no-op, not a crash
        assert loss.grad is not None and torch.equal(loss.grad, torch.zeros(1, 2))
        loss.grad = None


def test_normalizer_makes_micro_batches_add_up() -> None:
    w = torch.tensor([0.5, 1.0, 1.0])
    for name in ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum"):
        agg = get_aggregation(name)
        whole = agg(LOSS, LOSS_MASK, sample_weights=w)
        total = denominator(name, LOSS_MASK, w)
        parts = [
            agg(LOSS[s], LOSS_MASK[s], sample_weights=w[s], normalizer=total)
            for s in (slice(0, 1), slice(1, 3))
        ]
        close(sum(parts), whole.item())


# -- KL and entropy ------------------------------------------------------------------------------------------


def test_kl_estimators() -> None:
    logprobs, ref = torch.tensor([[0.0, -1.0]]), torch.tensor([[-1.0, 0.0]])
    close(get_kl_estimator("k1")(logprobs, ref), [[1.0, -1.0]])  # logp - ref
    close(get_kl_estimator("k2")(logprobs, ref), [[0.5, 0.5]])  # 0.5 * (+-1)^2
    # log r = ref - logp = -1, 1: e^-1 - 1 + 1 = 0.367879; e - 1 - 1 = 0.718282
    close(get_kl_estimator("k3")(logprobs, ref), [[0.367879, 0.718282]])
    # a wild disagreement: log r clamped to -20 -> r - 1 - log r = 19, capped at 10; +50 -> huge, capped at 10
    close(get_kl_estimator("k3")(torch.zeros(1, 2), torch.tensor([[-50.0, 50.0]])), [[10.0, 10.0]])


def test_entropy_from_logits() -> None:
    # uniform over 4: ln 4 = 1.386294; {1/2, 1/4, 1/4}: 0.5 ln 2 + 2 * 0.25 ln 4 = 1.039721
    logits = torch.tensor(
        [[[0.0, 0.0, 0.0, 0.0], [math.log(0.5), math.log(0.25), math.log(0.25), -math.inf]]]
    )
    close(entropy_from_logits(logits), [[1.386294, 1.039721]])  # the -inf entry adds 0, not NaN
    random = torch.randn(2, 7, 11, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    full = entropy_from_logits(random)
    assert full.shape == (2, 7) and full.dtype == torch.float32
    close(entropy_from_logits(random, chunk_size=3), full.tolist())
