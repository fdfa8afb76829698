"""Split-conformal prediction intervals for predicted grades.

Residuals are ``actual − predicted`` in normalised units ([0, 1], see ``GradeScale.normalise``), measured on
validation ratings the model was not trained on; multiply by ``GradeScale.span`` for points.

Symmetric (the default): with ``n`` residuals and coverage ``c``, ``q`` is the k-th smallest ``|residual|`` where

    k = ⌈(n + 1) · c⌉

and the interval is ``[pred − q, pred + q]``. If the new rating is exchangeable with the validation ones, it
falls inside with probability at least ``c`` (and below ``c + 1/(n + 1)``). ``k ≤ n`` needs ``n ≥ c / (1 − c)``.

Asymmetric: with ``α = 1 − c``, the interval is ``[pred + r_(lo), pred + r_(hi)]`` over the sorted signed
residuals, ``lo = ⌊(n + 1) · α/2⌋`` and ``hi = ⌈(n + 1) · (1 − α/2)⌉``: each tail is missed with probability at
most ``α/2``. It is narrower when the model is biased or the errors skewed, but needs about twice as many
residuals (``lo ≥ 1``) and each bound rests on half the tail data.

Symmetric is the default: in simulation (Gaussian and skewed residuals, 50–1000 of them, 400 splits each) both
methods cover on average within 0.5 point of nominal from a few hundred residuals, but at 50 residuals and 90%
the asymmetric floor/ceiling rounding over-covers (92%) where symmetric stays at 90%. Asymmetric pays off on skewed
or biased residuals (intervals ~25% narrower at equal coverage), so try it when the validation set is large.

Intervals are clipped to [0, 1]; actual grades lie there too, so clipping never changes coverage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np

from electives.data.interactions import Interactions
from electives.errors import DataError, ModelError

Method = Literal["symmetric", "asymmetric"]
# Validation rows are split in two by student: one half calibrates the interval, the other measures its coverage.
CALIBRATION_SEED = 7
_EPS = 1e-9  # (n + 1) · c in floating point: 25 · 0.28 is 7.000000000000001, whose ceiling is 8, not 7


@dataclass(frozen=True)
class ConformalInterval:
    """Offsets ``lower ≤ 0 ≤ upper`` (normalised units) added to a prediction, fitted on ``n`` residuals."""

    coverage: float
    lower: float
    upper: float
    n: int
    method: Method = "symmetric"

    @overload
    def interval(self, pred: float) -> tuple[float, float]: ...
    @overload
    def interval(self, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def interval(self, pred: float | np.ndarray) -> tuple[Any, Any]:
        """``(low, high)`` around a predicted normalised grade (or an array of them), clipped to [0, 1]."""
        p = np.asarray(pred, dtype=float)
        low, high = np.clip(p + self.lower, 0.0, 1.0), np.clip(p + self.upper, 0.0, 1.0)
        if p.ndim == 0:
            return float(low), float(high)
        return low, high

    def empirical_coverage(self, actual: np.ndarray, predicted: np.ndarray) -> float:
        """Share of ``actual`` grades inside the interval around ``predicted`` (both normalised)."""
        actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
        if actual.shape != predicted.shape or actual.size == 0:
            raise ValueError(
                f"actual and predicted must be non-empty and of one shape, got {actual.shape} and {predicted.shape}"
            )
        low, high = self.interval(predicted)
        return float(np.mean((actual >= low - _EPS) & (actual <= high + _EPS)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for a model manifest."""
        return {
            "method": self.method,
            "coverage": self.coverage,
            "lower": self.lower,
            "upper": self.upper,
            "n": self.n,
            "units": "normalised",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConformalInterval:
        """Inverse of :meth:`to_dict`; a :class:`~electives.errors.ModelError` names what is wrong."""
        try:
            method, units = data["method"], data.get("units", "normalised")
            coverage, lower, upper = float(data["coverage"]), float(data["lower"]), float(data["upper"])
            n = data["n"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"conformal interval: expected method, coverage, lower, upper and n, got {data!r}"
            ) from exc
        if method not in ("symmetric", "asymmetric") or units != "normalised":
            raise ModelError(f"conformal interval: unsupported method {method!r} or units {units!r}")
        if not (0 < coverage < 1 and math.isfinite(lower) and math.isfinite(upper) and lower <= upper):
            raise ModelError(f"conformal interval: invalid coverage {coverage} or bounds [{lower}, {upper}]")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ModelError(f"conformal interval: 'n' must be a positive integer, got {n!r}")
        return cls(coverage=coverage, lower=lower, upper=upper, n=n, method=method)


def min_residuals(coverage: float, method: Method = "symmetric") -> int:
    """The fewest residuals that give a finite interval at ``coverage``."""
    _check_coverage(coverage)
    n = 1
    while not _feasible(n, coverage, method):
        n += 1
    return n


def fit_conformal(residuals: np.ndarray, coverage: float = 0.8, method: Method = "symmetric") -> ConformalInterval:
    """Fit an interval on validation residuals ``actual − predicted`` (normalised); see the module docstring.

    Raises :class:`~electives.errors.DataError` when there are too few residuals for ``coverage`` and
    ValueError for an invalid coverage, method or non-finite residuals."""
    _check_coverage(coverage)
    if method not in ("symmetric", "asymmetric"):
        raise ValueError(f"method must be 'symmetric' or 'asymmetric', got {method!r}")
    r = np.asarray(residuals, dtype=float).ravel()
    if not np.isfinite(r).all():
        raise ValueError("residuals must be finite")
    n = r.size
    if not _feasible(n, coverage, method):
        raise DataError(
            f"{method} conformal intervals at {coverage:.0%} coverage need at least "
            f"{min_residuals(coverage, method)} validation residuals, got {n}"
        )
    if method == "symmetric":
        q = float(np.sort(np.abs(r))[_k_upper(n, coverage) - 1])
        return ConformalInterval(coverage=coverage, lower=-q, upper=q, n=n, method=method)
    alpha = 1 - coverage
    s = np.sort(r)
    lower = float(s[_k_lower(n, alpha / 2) - 1])
    upper = float(s[_k_upper(n, 1 - alpha / 2) - 1])
    # A biased model can put both bounds on one side; keep the prediction itself inside the interval.
    return ConformalInterval(coverage=coverage, lower=min(lower, 0.0), upper=max(upper, 0.0), n=n, method=method)


def calibrate_on_validation(
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    validation: Interactions,
    coverage: float,
    *,
    seed: int = CALIBRATION_SEED,
) -> tuple[ConformalInterval, float | None]:
    """(interval, measured coverage) for a model's `predict(students, courses)` on graded `validation` rows it
    was not trained on: the students are halved at random (`seed`); one half calibrates, the other measures
    how often the interval holds. Too few rows to halve: all calibrate and the coverage is None."""
    assert validation.grades is not None
    pred = predict(validation.students, validation.courses)
    residuals = validation.grades - pred
    rng = np.random.default_rng(seed)
    # Split by student, so a student's rows never sit on both sides.
    calib = (rng.random(validation.n_students) < 0.5)[validation.students]
    if calib.sum() < min_residuals(coverage) or (~calib).sum() < min_residuals(coverage):
        return fit_conformal(residuals, coverage), None
    interval = fit_conformal(residuals[calib], coverage)
    return interval, float(interval.empirical_coverage(validation.grades[~calib], pred[~calib]))


def _k_upper(n: int, level: float) -> int:
    return math.ceil((n + 1) * level - _EPS)


def _k_lower(n: int, tail: float) -> int:
    return math.floor((n + 1) * tail + _EPS)


def _feasible(n: int, coverage: float, method: Method) -> bool:
    if method == "symmetric":
        return n >= 1 and _k_upper(n, coverage) <= n
    alpha = 1 - coverage
    return _k_lower(n, alpha / 2) >= 1 and _k_upper(n, 1 - alpha / 2) <= n


def _check_coverage(coverage: float) -> None:
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be strictly between 0 and 1, got {coverage}")
