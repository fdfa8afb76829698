"""Metrics against values computed by hand."""

import math

import numpy as np
import pytest

from electives.evaluation import metrics


def test_rmse_mae_in_scale_points():
    pred, true = np.array([0.5, 0.75, 1.0]), np.array([0.25, 0.75, 0.5])
    # errors 0.25, 0, 0.5 → MSE = (0.0625 + 0 + 0.25) / 3 = 0.104166…
    assert metrics.rmse(pred, true) == pytest.approx(math.sqrt(0.3125 / 3))
    assert metrics.mae(pred, true) == pytest.approx(0.25)
    # On a 1–5 star scale (range 4) the same errors are 1, 0, 2 stars.
    assert metrics.rmse(pred, true, scale_range=4) == pytest.approx(math.sqrt(5 / 3))
    assert metrics.mae(pred, true, scale_range=4) == pytest.approx(1.0)


def test_within_step_counts_the_boundary():
    # One third of a grade point on a 0–4 scale, in normalised units.
    step = (1 / 3) / 4
    pred = np.array([0.5, 0.5 + step, 0.5 + 1.5 * step, 0.5 - step])
    assert metrics.within(pred, np.full(4, 0.5), step) == pytest.approx(0.75)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError):
        metrics.rmse(np.zeros(3), np.zeros(2))


def test_sampled_ranks_hr_ndcg():
    pos = np.array([0.9, 0.5, 0.1])
    neg = np.array([[0.1, 0.2, 0.3], [0.6, 0.5, 0.1], [0.2, 0.3, 0.4]])
    ranks = metrics.sampled_ranks(pos, neg)
    # user 0: nothing above → 0; user 1: 0.6 above, 0.5 tied (counts against) → 2; user 2: all three above → 3.
    assert ranks.tolist() == [0, 2, 3]
    assert metrics.hit_rate(ranks, 1) == pytest.approx(1 / 3)
    assert metrics.hit_rate(ranks, 3) == pytest.approx(2 / 3)
    # NDCG@3 = (1/log2(2) + 1/log2(4) + 0) / 3 = (1 + 0.5) / 3
    assert metrics.ndcg(ranks, 3) == pytest.approx(0.5)
    assert metrics.ndcg(ranks, 2) == pytest.approx(1 / 3)


def test_constant_scores_get_no_credit():
    ranks = metrics.sampled_ranks(np.zeros(4), np.zeros((4, 99)))
    assert metrics.hit_rate(ranks, 10) == 0.0


def test_nan_scores_are_refused():
    with pytest.raises(ValueError):
        metrics.sampled_ranks(np.array([np.nan]), np.zeros((1, 3)))


def test_full_ranks_exclude_training_items():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]])
    positives = np.array([2, 0])
    # Without exclusion user 0's item 2 has items 0 and 1 above it; user 1's item 0 is last of 5.
    assert metrics.full_ranks(scores, positives).tolist() == [2, 4]
    exclude = np.array([[True, False, False, False, False], [False, False, False, True, True]])
    assert metrics.full_ranks(scores, positives, exclude).tolist() == [1, 2]
    # The positive itself is never excluded, even if flagged.
    exclude[0, 2] = True
    assert metrics.full_ranks(scores, positives, exclude).tolist() == [1, 2]


def test_grade_ndcg_hand_computed():
    students = np.array([0, 0, 0, 1, 1, 2])
    true = np.array([1.0, 0.5, 0.0, 0.2, 0.8, 0.9])
    pred = np.array([0.1, 0.9, 0.5, 0.3, 0.6, 0.1])
    # Student 0, order by pred: grades 0.5, 0.0, 1.0 → DCG = 0.5 + 0 + 1/log2(4) = 1.0;
    # ideal 1.0, 0.5, 0.0 → IDCG = 1 + 0.5/log2(3). Student 1 is ordered ideally → 1. Student 2 has one course.
    s0 = 1.0 / (1.0 + 0.5 / math.log2(3))
    assert metrics.grade_ndcg(students, pred, true) == pytest.approx((s0 + 1.0) / 2)
    # With K = 1 student 0 keeps only the first position: 0.5 / 1.0.
    assert metrics.grade_ndcg(students, pred, true, k=1) == pytest.approx((0.5 + 1.0) / 2)


def test_grade_ndcg_ties_are_pessimistic():
    students = np.zeros(2, dtype=np.int64)
    true = np.array([1.0, 0.0])
    # Equal predictions: the lower grade goes first → DCG = 0 + 1/log2(3).
    assert metrics.grade_ndcg(students, np.array([0.5, 0.5]), true) == pytest.approx(1 / math.log2(3))


def test_spearman_hand_computed():
    students = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3])
    true = np.array([0.1, 0.5, 0.9, 0.1, 0.5, 0.9, 0.7, 0.7, 0.3])
    pred = np.array([0.2, 0.4, 0.6, 0.6, 0.4, 0.2, 0.1, 0.9, 0.5])
    # Student 0: ρ = 1; student 1: ρ = −1; student 2 has equal grades and student 3 one course → skipped.
    assert metrics.spearman(students, pred, true) == pytest.approx(0.0)
    assert metrics.spearman(students[:3], pred[:3], true[:3]) == pytest.approx(1.0)
    # Ranks (1, 2.5, 2.5) vs (1, 2, 3): Σdp·dt = 1.5, Σdp² = 1.5, Σdt² = 2 → ρ = 1.5 / √3 = √3 / 2.
    s = np.zeros(3, dtype=np.int64)
    assert metrics.spearman(s, np.array([0.1, 0.5, 0.5]), np.array([0.1, 0.2, 0.3])) == pytest.approx(math.sqrt(3) / 2)


def test_spearman_constant_prediction_is_zero():
    s = np.zeros(3, dtype=np.int64)
    assert metrics.spearman(s, np.full(3, 0.5), np.array([0.1, 0.2, 0.3])) == 0.0
