"""pass@k against values computed by hand from the binomials, its edge cases and its errors."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from ajet.eval.passk import pass_at_k, pass_at_k_table


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),  # 1 - C(3,1)/C(5,1) = 1 - 3/5 = 0.4 (= c/n, as pass@1 always is)
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
        (5, 2, 3, 0.9),  # 1 - C(3,3)/C(5,3) = 1 - 1/10 = 0.9
        (5, 2, 4, 1.0),  # C(3,4) = 0: any 4 of the 5 include a correct one
        (8, 1, 4, 0.5),  # 1 - C(7,4)/C(8,4) = 1 - 35/70 = 0.5
        (10, 3, 5, 11 / 12),  # 1 - C(7,5)/C(10,5) = 1 - 21/252 = 1 - 1/12
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
        (6, 2, 3, 0.8),  # 1 - C(4,3)/C(6,3) = 1 - 4/20 = 0.8
    ],
)
def test_pass_at_k_matches_hand_computed_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("n", "k"), [(1, 1), (4, 1), (4, 4), (8, 3)])
def test_no_correct_sample_is_zero_and_all_correct_is_one(n: int, k: int) -> None:
    assert pass_at_k(n, 0, k) == 0.0
    assert pass_at_k(n, n, k) == 1.0


def test_k_equal_to_n_is_whether_any_sample_is_correct() -> None:
    # k = n draws every sample: 1 - C(n-c, n)/C(n, n) is 1 for c >= 1 and 0 for c = 0
    assert [pass_at_k(6, c, 6) for c in range(7)] == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_pass_at_k_grows_with_k() -> None:
    values = [pass_at_k(16, 3, k) for k in range(1, 17)]
    assert values == sorted(values) and values[0] == pytest.approx(3 / 16) and values[-1] == 1.0


def test_large_n_is_exact_where_the_binomials_overflow_a_float() -> None:
    n, c, k = 2000, 3, 1000
    with pytest.raises(OverflowError):
        float(math.comb(n, k))  # why the product form: the plain ratio cannot be taken in floats
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)


def test_table_is_the_mean_over_tasks_for_each_k() -> None:
    # tasks (n, c): (5, 2), (4, 0), (4, 4)
    # k=1: (2/5 + 0 + 1) / 3 = 1.4 / 3;  k=2: (0.7 + 0 + 1) / 3 = 1.7 / 3
    table = pass_at_k_table([(5, 2), (4, 0), (4, 4)], [1, 2])
    assert list(table) == [1, 2]
    assert table[1] == pytest.approx(1.4 / 3) and table[2] == pytest.approx(1.7 / 3)


@pytest.mark.parametrize(
    ("n", "c", "k", "message"),
    [
        (4, 1, 5, "needs at least k = 5 samples per task, and there are n = 4"),
        (4, 5, 2, "c cannot exceed n"),
        (4, -1, 2, "cannot be negative"),
        (4, 1, 0, "k must be at least 1"),
        (0, 0, 1, "n (samples per task) must be at least 1"),
        (4, 1.0, 2, "c must be an integer"),
        (4, True, 2, "c must be an integer"),
    ],
)
def test_impossible_counts_raise_a_clear_error(n: int, c: int, k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pass_at_k(n, c, k)


def test_table_of_no_tasks_or_a_task_with_too_few_samples_raises() -> None:
    with pytest.raises(ValueError, match="no tasks"):
        pass_at_k_table([], [1])
    with pytest.raises(ValueError, match="pass@3 needs at least k = 3"):
        pass_at_k_table([(4, 1), (2, 1)], [1, 3])
