"""The unbiased pass@k estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code").

Draw n >= k samples of a task, c of them correct: the chance that at least one of k samples drawn from those n
without replacement is correct is

    pass@k = 1 - C(n - c, k) / C(n, k)

which is unbiased for the model's true pass@k, unlike 1 - (1 - c/n)^k. The binomials overflow floats for large
n, so it is computed as the product 1 - prod_{i = n-c+1}^{n} (1 - k / i), which is the same ratio term by term.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k for one task with `n` samples of which `c` are correct (1 <= k <= n, 0 <= c <= n)."""
    _check(n, c, k)
    if n - c < k:  # every draw of k samples contains a correct one
        return 1.0
    failing_all = 1.0
    for i in range(n - c + 1, n + 1):
        failing_all *= 1.0 - k / i
    return 1.0 - failing_all


def pass_at_k_table(per_task: Sequence[tuple[int, int]], ks: Iterable[int]) -> dict[int, float]:
    """The mean over tasks of pass@k, for each k in `ks`; `per_task` holds one (n, c) pair per task."""
    if not per_task:
        raise ValueError("pass@k of no tasks: give at least one (n, c) pair")
    table: dict[int, float] = {}
    for k in ks:
        table[k] = sum(pass_at_k(n, c, k) for n, c in per_task) / len(per_task)
    return table


def _check(n: int, c: int, k: int) -> None:
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"pass@k: {name} must be an integer, not {value!r}")
    if n < 1:
        raise ValueError(f"pass@k: n (samples per task) must be at least 1, not {n}")
    if k < 1:
        raise ValueError(f"pass@k: k must be at least 1, not {k}")
    if c < 0:
        raise ValueError(f"pass@k: c (correct samples) cannot be negative, not {c}")
    if c > n:
        raise ValueError(f"pass@k: c = {c} correct samples out of n = {n}: c cannot exceed n")
    if k > n:
        raise ValueError(f"pass@{k} needs at least k = {k} samples per task, and there are n = {n}")
