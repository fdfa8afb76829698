"""What a Recommender reads from a trained model's record to fold students in: the noise of a grade around its
prediction and, for enrolment-only models, how heavily untaken courses count (the weight of training's negatives).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from electives.models.interface import FoldInOptions

if TYPE_CHECKING:
    from electives.models.artifact import TrainedModel

__all__ = ["DEFAULT_NOISE", "fold_in_options", "n_negatives_from_model", "noise_from_model"]

# Fallback noise (normalised units) when the model records no validation RMSE: typical for grade data.
DEFAULT_NOISE = 0.1


def noise_from_model(model: TrainedModel) -> float:
    """σ of a grade around its prediction (normalised): the validation RMSE the model recorded, else the
    calibration interval's half-width read as a normal quantile, else :data:`DEFAULT_NOISE`."""
    metrics = model.manifest.get("metrics") or {}
    rmse = metrics.get("val_rmse")
    span = model.scale.span if model.scale is not None else 1.0
    if isinstance(rmse, int | float) and math.isfinite(rmse) and rmse > 0:
        return float(rmse) / span
    cal = model.calibration
    if cal is not None:
        z = _normal_quantile(0.5 + cal.coverage / 2)
        half = (cal.upper - cal.lower) / 2
        if half > 0:
            return half / z
    return DEFAULT_NOISE


def fold_in_options(
    model: TrainedModel,
    *,
    noise: float | None = None,
    prior_strength: float = FoldInOptions.prior_strength,
    shrinkage: float = FoldInOptions.shrinkage,
    max_steps: int = FoldInOptions.max_steps,
) -> FoldInOptions:
    """How serving folds a student into ``model``: ``noise`` (default :func:`noise_from_model`) and, for an
    enrolment-only model, the negatives' weight it trained with (:func:`n_negatives_from_model`)."""
    explicit = model.mode == "explicit"
    return FoldInOptions(
        noise=float(noise) if noise is not None else noise_from_model(model),
        prior_strength=prior_strength,
        shrinkage=shrinkage,
        max_steps=max_steps,
        n_negatives=FoldInOptions.n_negatives if explicit else n_negatives_from_model(model),
    )


def n_negatives_from_model(model: TrainedModel) -> int:
    """Negatives per taken course the model trained with (its parameters' ``n_negatives``, or their ``config``'s),
    so that an implicit fold-in weighs untaken courses as training did; the fold-in default when none is recorded.
    A model not loaded from an artifact (no parameters in its manifest) is asked for its state's parameters."""
    m = model.manifest
    # Format 2 keeps a family's parameters under 'params'; format 1 (NCF only) kept its config at the top level.
    params: Mapping[str, Any] | None = m.get("params") if isinstance(m.get("params"), dict) else None
    if params is None and isinstance(m.get("config"), dict):
        params = m
    if params is None:
        params = model.fitted.state()[1]
    for source in (params, params.get("config")):
        value = source.get("n_negatives") if isinstance(source, Mapping) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return FoldInOptions().n_negatives


def _normal_quantile(q: float) -> float:
    """Inverse standard normal CDF (bisection on erf: called once per Recommender)."""
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
