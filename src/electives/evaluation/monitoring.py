"""How well a served model predicts grades it never saw, next to what its validation promised, and a verdict.

:func:`unseen_figures` measures predictions of new grades: RMSE and MAE (in the scale's points), the share within
one letter step, the coverage of the prediction intervals and the per-student ranking figures (NDCG with the grade
as gain, Spearman) — the figures ``electives evaluate`` reports — with 95% one-sided bounds on RMSE and coverage.
The bounds are **clustered by student**: a student's grades in one term move together (one good or bad term
shifts them all), so treating them as independent would make a few hundred students look like thousands of grades.

:func:`verdict` compares them with the validation figures the model recorded when it was trained:

- **drifting** when, even at its 95% lower bound, the RMSE on new grades is more than :data:`RMSE_MARGIN` (10%)
  above the validation RMSE — or the intervals cover fewer new grades than promised by more than
  :data:`COVERAGE_MARGIN` (5 points) even at the upper bound;
- **holding** when, at its 95% upper bound, the RMSE is within those 10% (and coverage is not drifting);
- **uncertain** otherwise: too few new grades (or students) for the bounds to decide either way.

Why 10%: the validation RMSE is itself an estimate from a few thousand grades of one held-out term, and a new
cohort differs a little from any held-out term (on the synthetic university, whose world does not change, the
bias model scores its next term 2–5% above validation, at 2,000 and 300 students), so a smaller margin would call
an unchanged world drifting; a tenth more error (about one point on a percent scale at the RMSE of 9 seen there) is
a change students would notice in their predictions.
Why 5 points: a split-conformal interval's coverage varies by a few points between held-out samples of this size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from electives.evaluation.metrics import grade_ndcg, mae, spearman, within

__all__ = ["COVERAGE_MARGIN", "RMSE_MARGIN", "Z_95", "ranking_figures", "unseen_figures", "verdict"]

Z_95 = 1.6449  # one-sided 95% normal quantile
RMSE_MARGIN = 0.10
COVERAGE_MARGIN = 0.05


def unseen_figures(
    students: np.ndarray,
    pred: np.ndarray,
    true: np.ndarray,
    *,
    span: float = 1.0,
    letter_step: float | None = None,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> dict[str, Any]:
    """Figures of normalised predictions ``pred`` of normalised grades ``true`` (``students``: any labels, one
    per grade), RMSE/MAE in points of a scale ``span`` wide; ``letter_step`` (normalised) adds the share within
    one letter, ``lower``/``upper`` (normalised interval bounds) the interval coverage."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    groups = np.unique(np.asarray(students), return_inverse=True)[1]
    err = p - t
    mse, mse_low, mse_high = _clustered_mean(err**2, groups)
    out: dict[str, Any] = {
        "grades": len(t),
        "students": int(groups.max() + 1) if len(groups) else 0,
        "rmse": math.sqrt(mse) * span,
        "rmse_low": math.sqrt(max(mse_low, 0.0)) * span,
        "rmse_high": math.sqrt(mse_high) * span if math.isfinite(mse_high) else None,
        "mae": mae(p, t, span),
        "within_one_letter": None,
        "interval_coverage": None,
        "interval_coverage_low": None,
        "interval_coverage_high": None,
    }
    if letter_step is not None:
        out["within_one_letter"] = within(p, t, letter_step)
    if lower is not None and upper is not None:
        inside = ((t >= np.asarray(lower) - 1e-9) & (t <= np.asarray(upper) + 1e-9)).astype(np.float64)
        cov, cov_low, cov_high = _clustered_mean(inside, groups)
        out.update(
            interval_coverage=cov,
            interval_coverage_low=max(cov_low, 0.0),
            interval_coverage_high=min(cov_high, 1.0) if math.isfinite(cov_high) else None,
        )
    out.update(ranking_figures(groups, p, t))
    return out


def ranking_figures(students: np.ndarray, pred: np.ndarray, true: np.ndarray) -> dict[str, float | None]:
    """Per-student ranking of held-out grades: NDCG with the grade as gain and Spearman's ρ (None when no student
    has two grades to rank)."""
    groups = np.unique(np.asarray(students), return_inverse=True)[1]
    if len(groups) == 0:
        return {"grade_ndcg": None, "spearman": None}
    out = {"grade_ndcg": grade_ndcg(groups, pred, true), "spearman": spearman(groups, pred, true)}
    return {k: (v if math.isfinite(v) else None) for k, v in out.items()}


def verdict(figures: Mapping[str, Any], validation: Mapping[str, Any]) -> tuple[str, str]:
    """``(holding | drifting | uncertain, why)`` for :func:`unseen_figures`' output against the model's recorded
    validation metrics (``val_rmse`` in scale points, ``interval_coverage_nominal``); see the module docstring."""
    val_rmse = validation.get("val_rmse")
    if not isinstance(val_rmse, int | float) or not math.isfinite(val_rmse) or val_rmse <= 0:
        return "uncertain", "the model recorded no validation RMSE to compare with"
    limit = val_rmse * (1 + RMSE_MARGIN)
    n, students = figures["grades"], figures["students"]
    low, high = figures["rmse_low"], figures["rmse_high"]
    span = f"95% bounds {low:.2f}–{high:.2f}" if high is not None else f"95% lower bound {low:.2f}"
    about = f"RMSE {figures['rmse']:.2f} on {n:,} new grades of {students:,} students ({span})"
    if low > limit:
        return "drifting", f"{about} is above validation's {val_rmse:.2f} + 10% = {limit:.2f} even at its lower bound"
    nominal = validation.get("interval_coverage_nominal")
    cov_high = figures.get("interval_coverage_high")
    if isinstance(nominal, int | float) and cov_high is not None and cov_high < nominal - COVERAGE_MARGIN:
        return (
            "drifting",
            f"the {nominal:.0%} intervals cover {figures['interval_coverage']:.1%} of the new grades, more than 5 "
            f"points short of {nominal:.0%} even at the upper bound ({cov_high:.1%})",
        )
    if high is not None and high <= limit:
        return "holding", f"{about} stays within validation's {val_rmse:.2f} + 10% = {limit:.2f}"
    return (
        "uncertain",
        f"too few new grades to tell: {about} straddles validation's {val_rmse:.2f} + 10% = {limit:.2f}",
    )


def _clustered_mean(values: np.ndarray, groups: np.ndarray) -> tuple[float, float, float]:
    """Mean of ``values`` and its 95% one-sided bounds with a student-clustered standard error (the bounds are
    ±inf with fewer than two students: one student's grades say nothing about the spread between students)."""
    mean = float(np.mean(values))
    n_groups = int(groups.max() + 1) if len(groups) else 0
    if n_groups < 2:
        return mean, -math.inf, math.inf
    sums = np.bincount(groups, weights=values - mean, minlength=n_groups)
    se = math.sqrt(float(np.sum(sums**2)) * n_groups / (n_groups - 1)) / len(values)
    return mean, mean - Z_95 * se, mean + Z_95 * se
