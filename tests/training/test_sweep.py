"""Which of pruned and from-scratch is more accurate: said only where the paired test shows it."""

import numpy as np

from training.sweep import better


def _right(n: int, wrong: list[int]) -> np.ndarray:
    right = np.ones(n, bool)
    right[wrong] = False
    return right


def test_a_clear_difference_is_named_and_a_small_one_is_not():
    many_wrong = _right(10000, list(range(60)))
    few_wrong = _right(10000, list(range(5)))
    assert better(few_wrong, many_wrong) == "pruning"
    assert better(many_wrong, few_wrong) == "scratch"
    assert better(_right(10000, [1, 2, 3]), _right(10000, [4, 5, 6, 7])) == "neither shown"
