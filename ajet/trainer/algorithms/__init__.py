"""RL algorithm pieces as pure, registered functions over tensors (the verl pattern): advantage estimators,
policy losses, loss aggregations, KL estimators, entropy. Importing this package registers the built-ins; look
them up by name with `get_advantage_estimator("grpo")` and friends. A typical step:

    advantages, m1 = get_advantage_estimator("grpo")(rewards, group_ids)             # [E] -> [E]
    loss_tok, m2 = get_policy_loss("ppo_clip")(logp, old_logp, adv_per_seq, mask)     # [B, T]
    loss = get_aggregation("token_mean")(loss_tok, mask, sample_weights=weights)      # scalar
"""

from ajet.trainer.algorithms.advantages import (
    Groups,
    advantage_metrics,
    dr_grpo,
    group_rewards,
    grpo,
    reinforce_pp_baseline,
    rloo,
)
from ajet.trainer.algorithms.aggregation import (
    denominator,
    seq_mean_token_mean,
    seq_mean_token_sum,
    token_mean,
)
from ajet.trainer.algorithms.entropy import entropy_from_logits
from ajet.trainer.algorithms.kl import k1, k2, k3
from ajet.trainer.algorithms.losses import gspo, pg, ppo_clip
from ajet.trainer.algorithms.masked import broadcast_advantages, masked_max, masked_mean, masked_sum
from ajet.trainer.algorithms.registry import (
    ADVANTAGE_ESTIMATORS,
    AGGREGATIONS,
    KL_ESTIMATORS,
    POLICY_LOSSES,
    AdvantageEstimator,
    Aggregation,
    KlEstimator,
    Metrics,
    PolicyLoss,
    UnknownAlgorithmError,
    get_advantage_estimator,
    get_aggregation,
    get_kl_estimator,
    get_policy_loss,
    register,
    register_advantage_estimator,
    register_aggregation,
    register_kl_estimator,
    register_policy_loss,
)

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "AdvantageEstimator",
    "Aggregation",
    "Groups",
    "KlEstimator",
    "Metrics",
    "PolicyLoss",
    "UnknownAlgorithmError",
    "advantage_metrics",
    "broadcast_advantages",
    "denominator",
    "dr_grpo",
    "entropy_from_logits",
    "get_advantage_estimator",
    "get_aggregation",
    "get_kl_estimator",
    "get_policy_loss",
    "group_rewards",
    "grpo",
    "gspo",
    "k1",
    "k2",
    "k3",
    "masked_max",
    "masked_mean",
    "masked_sum",
    "pg",
    "ppo_clip",
    "register",
    "register_advantage_estimator",
    "register_aggregation",
    "register_kl_estimator",
    "register_policy_loss",
    "reinforce_pp_baseline",
    "rloo",
    "seq_mean_token_mean",
    "seq_mean_token_sum",
    "token_mean",
]
