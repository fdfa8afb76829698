"""`train_model`: what `electives train` does, called from Python."""

from __future__ import annotations

import pytest
from checkerboard import checkerboard

from electives.errors import DataError, ElectivesError
from electives.models.pipeline import train_model
from electives.models.privacy import PrivacyConfig
from electives.models.training import TrainConfig

SMALL = TrainConfig(gmf_dim=8, mlp_dim=8, mlp_layers=(16, 8), lr=0.01, batch_size=64, epochs=8, patience=3)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_explicit_model_is_calibrated_on_held_back_validation_students() -> None:
    data = checkerboard(n_students=300)
    result = train_model(data, SMALL, coverage=0.8, progress=False)
    assert result.is_main and result.selection is None and result.privacy is None
    assert len(result.fit_data) + len(result.validation) == len(data)
    assert result.metrics["validation_rows"] == len(result.validation)
    assert result.calibration is not None and result.calibration.coverage == 0.8
    # Measured on the validation students that did not calibrate: close to the nominal level.
    assert result.metrics["interval_coverage_nominal"] == 0.8
    assert result.metrics["interval_coverage_measured"] == pytest.approx(0.8, abs=0.1)
    assert 0 < result.metrics["val_rmse"] < 0.2 and "val_within_one_letter" not in result.metrics  # no scale


def test_auto_returns_the_selection_and_trains_its_choice() -> None:
    logged: list[str] = []
    implicit = TrainConfig(mode="implicit", epochs=2, gmf_dim=8, mlp_dim=8, mlp_layers=(16, 8))
    enrolments = checkerboard(implicit=True)
    result = train_model(enrolments, implicit, auto=True, progress=False, log=logged.append)
    assert result.selection is not None and result.selection.metric == "val_ndcg_at_10_sampled"
    # Implicit: the ranking families, chosen on each student's newest course, the winner refitted on every row.
    assert {c.family for c in result.selection.candidates} == {"ease", "ials", "neumf", "ensemble", "blend"}
    assert result.family == result.selection.family and result.metrics["refit_rows"] == len(enrolments)
    assert result.fitted.train_fingerprint == enrolments.fingerprint()
    assert any("each student's newest course" in line for line in logged)
    # Explicit: next-term selection among every family; the winner is fitted again on every row.
    result = train_model(checkerboard(), SMALL, model="auto", progress=False, log=logged.append)
    assert result.selection is not None and result.family == result.selection.family
    assert result.trained_on is not None and result.metrics["refit_rows"] == len(checkerboard())
    assert any("choosing a model on" in line for line in logged)


def test_implicit_model_has_ranking_metrics_and_no_interval() -> None:
    result = train_model(checkerboard(implicit=True), TrainConfig(mode="implicit", epochs=2), progress=False)
    assert result.calibration is None and "interval_coverage_measured" not in result.metrics
    assert 0 <= result.metrics["val_hr_at_10_sampled"] <= 1


def test_private_training_reports_its_budget() -> None:
    tiny = TrainConfig(gmf_dim=4, mlp_dim=4, mlp_layers=(8,), epochs=2)
    result = train_model(checkerboard(), tiny, privacy=PrivacyConfig(epsilon=4.0), noise_seed=1, progress=False)
    assert result.privacy is not None and 0 < result.privacy.epsilon <= 4.0
    assert result.config.batch_size == 128  # DP defaults fill what the configuration left unset
    with pytest.raises(ElectivesError, match="auto"):
        train_model(checkerboard(), tiny, privacy=PrivacyConfig(epsilon=4.0), auto=True)


def test_coverage_must_be_a_level() -> None:
    with pytest.raises(DataError, match="expected a level"):
        train_model(checkerboard(), SMALL, coverage=1.5)
