import json

import numpy as np
import pytest

from electives.errors import DataError, ModelError
from electives.models.calibration import ConformalInterval, fit_conformal, min_residuals


def test_quantile_by_hand() -> None:
    residuals = np.array([0.1, -0.3, 0.2, -0.05, 0.4])  # |r| sorted: 0.05 0.1 0.2 0.3 0.4
    # n = 5: k = ⌈6 · 0.5⌉ = 3 → 0.2; k = ⌈6 · 0.8⌉ = 5 → 0.4
    assert fit_conformal(residuals, 0.5).upper == pytest.approx(0.2)
    fitted = fit_conformal(residuals, 0.8)
    assert (fitted.lower, fitted.upper, fitted.n) == (pytest.approx(-0.4), pytest.approx(0.4), 5)
    # n = 24: (n + 1) · 0.28 is 7.000000000000001 in floating point and must still give k = 7, not 8.
    assert 25 * 0.28 > 7
    assert fit_conformal(np.arange(1, 25) / 100, 0.28).upper == pytest.approx(0.07)
    with pytest.raises(DataError, match="at least 9 validation residuals, got 5"):
        fit_conformal(residuals, 0.9)  # k = ⌈5.4⌉ = 6 > 5


def test_asymmetric_by_hand() -> None:
    residuals = np.array([-0.4, -0.2, -0.1, 0.0, 0.05, 0.1, 0.15, 0.2, 0.3])  # n = 9, already sorted
    # α = 0.2: lo = ⌊10 · 0.1⌋ = 1 → -0.4, hi = ⌈10 · 0.9⌉ = 9 → 0.3
    fitted = fit_conformal(residuals, 0.8, method="asymmetric")
    assert (fitted.lower, fitted.upper) == (pytest.approx(-0.4), pytest.approx(0.3))
    with pytest.raises(DataError, match="at least 9"):
        fit_conformal(residuals[:8], 0.8, method="asymmetric")
    assert min_residuals(0.8) == 4 and min_residuals(0.9) == 9 and min_residuals(0.9, "asymmetric") == 19
    # All residuals positive (the model under-predicts): the interval still contains the prediction.
    biased = fit_conformal(np.linspace(0.1, 0.2, 50), 0.8, method="asymmetric")
    assert biased.lower == 0.0 and biased.upper > 0.1


@pytest.mark.parametrize("method", ["symmetric", "asymmetric"])
@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_coverage_on_fresh_gaussian_sample(coverage: float, method: str) -> None:
    rng = np.random.default_rng(42)
    fitted = fit_conformal(rng.normal(0, 0.08, 2000), coverage, method=method)  # type: ignore[arg-type]
    predicted = rng.uniform(0.3, 0.7, 20000)
    actual = predicted + rng.normal(0, 0.08, predicted.size)
    assert abs(fitted.empirical_coverage(actual, predicted) - coverage) < 0.025


def test_interval_clips_and_takes_arrays() -> None:
    fitted = ConformalInterval(coverage=0.8, lower=-0.1, upper=0.1, n=100)
    assert fitted.interval(0.95) == (pytest.approx(0.85), 1.0)
    assert fitted.interval(0.05) == (0.0, pytest.approx(0.15))
    low, high = fitted.interval(np.array([0.0, 0.5]))
    np.testing.assert_allclose(low, [0.0, 0.4])
    np.testing.assert_allclose(high, [0.1, 0.6])
    # Both bounds count as inside.
    assert fitted.empirical_coverage(np.array([0.4, 0.6, 0.61]), np.array([0.5, 0.5, 0.5])) == pytest.approx(2 / 3)


def test_round_trip_and_bad_manifests() -> None:
    fitted = fit_conformal(np.linspace(-0.2, 0.2, 41), 0.9, method="asymmetric")
    assert ConformalInterval.from_dict(json.loads(json.dumps(fitted.to_dict()))) == fitted
    good = fitted.to_dict()
    for bad in ({}, {**good, "method": "bayes"}, {**good, "units": "points"}, {**good, "coverage": 1.5},
                {**good, "lower": 0.3}, {**good, "n": 2.5}, {**good, "upper": "x"}):  # fmt: skip
        with pytest.raises(ModelError, match="conformal interval"):
            ConformalInterval.from_dict(bad)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="coverage"):
        fit_conformal(np.zeros(100), 1.0)
    with pytest.raises(ValueError, match="finite"):
        fit_conformal(np.array([0.1, np.nan] * 50))
    with pytest.raises(ValueError, match="method"):
        fit_conformal(np.zeros(100), method="wide")  # type: ignore[arg-type]
    with pytest.raises(DataError):
        fit_conformal(np.array([]))
