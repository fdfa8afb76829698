"""Training the model that goes into an artifact (what `electives train` does), callable from Python.

`train_model(train, config, …)` carves the validation split from `train`, fits on the rest (plain, differentially
private with `privacy`, or with `auto` the family chosen on each student's latest term — :mod:`selection` — or, in
the implicit mode, on each student's newest course — :mod:`implicit_selection`), then measures the model validation chose on the validation rows,
which it never trained on (after a refit, the model as fitted before it): RMSE/MAE (explicit) or HR/NDCG
(implicit), and in explicit mode a split-conformal prediction interval at `coverage` whose coverage is measured on
held-back validation students. `model=NAME` forces one family (see :data:`config.FAMILY_NAMES`).

Under torchrun every rank calls `train_model` alike and trains; the process group is left before returning, and
only rank 0 measures (`TrainingResult.is_main`): the caller reports and writes on rank 0 only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from electives.data.interactions import Interactions
from electives.data.scales import GradeScale
from electives.data.splits import validation_split
from electives.errors import DataError, ElectivesError
from electives.evaluation.evaluate import evaluate
from electives.evaluation.metrics import mae, rmse, within
from electives.models import distributed
from electives.models.calibration import ConformalInterval, calibrate_on_validation
from electives.models.config import EXPLICIT_FAMILY_NAMES, FAMILY_NAMES, IMPLICIT_FAMILY_NAMES, NCF_NAMES, TrainConfig
from electives.models.implicit_selection import select_implicit
from electives.models.interface import Model
from electives.models.privacy import PrivacyConfig, PrivacyReport, fit_private
from electives.models.selection import Selection, select
from electives.models.training import fit

__all__ = ["TrainingResult", "train_model", "validation_metrics"]


@dataclass(frozen=True)
class TrainingResult:
    """A trained model and what was measured on its validation rows (only on rank 0 under torchrun)."""

    fitted: Model
    fit_data: Interactions  # the rows trained on (before a refit); the artifact's index space is theirs
    validation: Interactions
    metrics: dict[str, Any] = field(default_factory=dict)  # empty where not is_main
    calibration: ConformalInterval | None = None  # explicit mode
    selection: Selection | None = None  # auto or a forced family: every candidate tried
    privacy: PrivacyReport | None = None  # with a privacy budget
    is_main: bool = True  # False on the ranks other than 0: nothing measured, nothing to report or write
    # The model as it stood before it was fitted again on every row (None without a refit): it has not seen the
    # validation rows, so the validation metrics and the calibration are its.
    validated: Model | None = None
    trained_on: Interactions | None = None  # the rows `fitted` was fitted on, when not `fit_data` (selection)

    @property
    def config(self) -> TrainConfig | None:
        """The NCF configuration trained (the chosen candidate's with auto; DP defaults filled in with privacy);
        None for a family without one (baselines)."""
        return getattr(self.fitted, "config", None)

    @property
    def family(self) -> str:
        return self.fitted.family or str(getattr(self.config, "model", ""))


def train_model(
    train: Interactions,
    config: TrainConfig | None = None,
    *,
    scale: GradeScale | None = None,
    coverage: float = 0.8,
    auto: bool = False,
    privacy: PrivacyConfig | None = None,
    noise_seed: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    model: str | None = None,
) -> TrainingResult:
    """Train on `train` (all the training data; the validation split is carved here) and measure on validation.

    config: left-None fields take the mode's defaults (with `privacy`, DP_DEFAULTS first); with selection, the NCF
    candidates' settings. scale: reports RMSE/MAE in its points and the share within one letter. auto (or
    model="auto"): choose the family — explicit mode on each student's latest term (models.selection), implicit
    mode on each student's newest course (models.implicit_selection). model: a family name from
    config.FAMILY_NAMES forces it (neumf/gmf/mlp train as configured; the others go through selection alone, so
    they are refitted on every row); None trains `config.model`. privacy: DP-SGD within this budget (NCF only,
    not with auto, not under torchrun); noise_seed: tests and benchmarks only (see electives.models.privacy).
    log: progress lines (e.g. each candidate's score).
    """
    if not 0.5 <= coverage < 1:
        raise DataError(f"coverage {coverage}: expected a level in [0.5, 1), e.g. 0.8")
    if model == "auto":
        auto, model = True, None
    if model is not None and model not in FAMILY_NAMES:
        raise DataError(f"unknown model family {model!r}; choose from auto, {', '.join(FAMILY_NAMES)}")
    if privacy is not None and (auto or (model is not None and model not in NCF_NAMES)):
        raise ElectivesError("private training cannot compare models (auto): every candidate would spend budget")
    given = config or TrainConfig()
    if model in NCF_NAMES:
        given = replace(given, model=model)  # type: ignore[arg-type]
    base = given.resolved()
    if auto or (model is not None and model not in NCF_NAMES):
        return _selected(train, base, families=None if auto else (model,), scale=scale, coverage=coverage,
                         progress=progress, log=log)  # fmt: skip
    ctx = distributed.init(base.device)
    if privacy is not None and ctx.distributed:
        raise ElectivesError("private training cannot run distributed: the accounting assumes one process")
    fit_data, val = validation_split(train, base.validation, base.val_fraction, base.seed)  # type: ignore[arg-type]
    start = time.perf_counter()
    report = None
    if privacy is not None:
        # DP has its own defaults for the settings left unset, so it starts from the unresolved configuration.
        fitted, report = fit_private(fit_data, given, privacy, validation=val, progress=progress, noise_seed=noise_seed)
    else:
        fitted = fit(fit_data, base, validation=val, progress=progress)
    seconds = time.perf_counter() - start
    distributed.shutdown()
    if not ctx.is_main:
        return TrainingResult(fitted, fit_data, val, privacy=report, is_main=False)  # type: ignore[arg-type]

    metrics: dict[str, Any] = {"train_seconds": round(seconds, 2), "validation_rows": len(val)}
    # After a refit the final model has trained on the validation rows: measure (and calibrate) the model that
    # had not, the best-epoch one validation chose.
    checked = fitted.validated or fitted
    metrics.update(validation_metrics(checked, fit_data, val, scale=scale))  # type: ignore[arg-type]
    calibration = _calibrate(checked, val, coverage, metrics)  # type: ignore[arg-type]
    if fitted.validated is not None:
        metrics["refit_rows"] = len(fit_data) + len(val)
    return TrainingResult(fitted, fit_data, val, metrics, calibration, None, report, validated=fitted.validated)  # type: ignore[arg-type]


def _selected(
    train: Interactions,
    base: TrainConfig,
    *,
    families: tuple[str, ...] | None,
    scale: GradeScale | None,
    coverage: float,
    progress: bool,
    log: Callable[[str], None] | None,
) -> TrainingResult:
    """Selection (every family of the mode, or the one forced), then the winner's validation metrics (and, with
    grades, its calibration), measured with the winner as fitted on the fit part (before its refit on every row)."""
    if distributed.init(base.device).distributed:
        raise ElectivesError("model selection runs in one process; under torchrun force one NCF family (--model neumf)")
    span = scale.span if scale else 1.0
    start = time.perf_counter()
    if base.mode == "explicit":
        chosen = select(
            train, base, families=families or EXPLICIT_FAMILY_NAMES, progress=progress, log=log, scale_range=span
        )
    else:
        chosen = select_implicit(train, base, families=families or IMPLICIT_FAMILY_NAMES, progress=progress, log=log)
    metrics: dict[str, Any] = {"train_seconds": round(time.perf_counter() - start, 2)}
    metrics["validation_rows"] = len(chosen.validation)
    metrics.update(validation_metrics(chosen.validated, chosen.fit_data, chosen.validation, scale=scale))
    calibration = _calibrate(chosen.validated, chosen.validation, coverage, metrics)
    if chosen.refit_error is None:
        metrics["refit_rows"] = len(train)
    fitted = chosen.model if chosen.refit_error is None else chosen.validated
    return TrainingResult(
        fitted,
        chosen.fit_data,
        chosen.validation,
        metrics,
        calibration,
        chosen,
        validated=chosen.validated,
        trained_on=train if chosen.refit_error is None else chosen.fit_data,
    )


def _calibrate(checked: Model, val: Interactions, coverage: float, metrics: dict[str, Any]) -> ConformalInterval | None:
    if not checked.predicts_grades:
        return None
    calibration, measured = calibrate_on_validation(checked.predict, val, coverage)
    metrics["interval_coverage_nominal"] = coverage
    metrics["interval_coverage_measured"] = measured
    return calibration


def validation_metrics(
    fitted: Model, fit_data: Interactions, validation: Interactions, *, scale: GradeScale | None = None
) -> dict[str, float]:
    """`val_…` metrics of `fitted` on `validation`: RMSE, MAE (in `scale`'s points) and the share within one
    letter (explicit); HR@10 and NDCG@10, sampled and over the catalogue (implicit)."""
    if fitted.predicts_grades:
        assert validation.grades is not None
        pred = fitted.predict(validation.students, validation.courses)
        span = scale.span if scale else 1.0
        out = {"val_rmse": rmse(pred, validation.grades, span), "val_mae": mae(pred, validation.grades, span)}
        if scale is not None:
            out["val_within_one_letter"] = within(pred, validation.grades, scale.letter_step / span)
        return out
    result = evaluate({"model": fitted}, fit_data, validation, k=10, n_negatives=99, seed=0)
    return {f"val_{k.replace('@', '_at_')}": v for k, v in result.metrics["model"].items()}
