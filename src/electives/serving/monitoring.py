"""The served model on grades it never saw: which stored grades those are, and its predictions of them.

**Which grades** (:func:`unseen_grades`): a model trained from the database records the last import it read
(``trained_through.import`` in its manifest), so the grades of every later import are new to it. A model written
before that was recorded falls back on dates: the imports stored after the model was written (``created_at``).
A model trained from a file records its latest term, and the grades of later terms are new to it. ``since`` (a
term) overrides all of that: every stored grade of that term or later. Each student–course pair counts once: its
latest graded attempt among the new rows.

**Which students are scored** (:func:`predict_unseen`): students the model was trained on, with their trained
vectors; students it never saw, folded in from their earlier stored grades (``Model.fold_in``, with the noise
serving uses, :mod:`~electives.serving.options`) — what the web app does for them. A student with no earlier grade
in a course the model knows, and a course the model does not know, cannot be predicted by anyone's model: those
grades are counted and left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from electives.data.terms import stored_term
from electives.errors import DataError, ElectivesError, ModelError
from electives.evaluation.monitoring import unseen_figures, verdict
from electives.serving.options import fold_in_options

if TYPE_CHECKING:
    from electives.data.storage import Store
    from electives.models.artifact import TrainedModel

__all__ = ["NothingNewError", "Predicted", "Unseen", "monitor", "predict_unseen", "unseen_grades", "validation_figures"]


class NothingNewError(ElectivesError):
    """The database holds no grade the model has not seen."""


@dataclass(frozen=True)
class Unseen:
    """Grades a model has not seen (``new``: student, course, term, term_key, grade — one row per pair), every
    other stored grade (``earlier``: what folds in a student the model does not know), and how they were told
    apart (``basis``, a sentence). ``after_import``: the import number the new grades come after (None when they
    were chosen by term)."""

    new: pd.DataFrame
    earlier: pd.DataFrame
    basis: str
    after_import: int | None
    since_term: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Predicted:
    """One model's normalised predictions of ``Unseen.new`` (NaN where it cannot predict), interval bounds, and
    how each row was predicted (``trained``, ``folded``, ``no-history``, ``unknown-course``)."""

    pred: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None
    how: np.ndarray

    @property
    def scored(self) -> np.ndarray:
        return ~np.isnan(self.pred)


def check_explicit(model: TrainedModel, what: str) -> None:
    """Monitoring and challenging compare predicted grades: an enrolment-only model has none."""
    if not model.fitted.predicts_grades or model.scale is None:
        raise ModelError(
            f"{model.path}: an enrolment-only ({model.mode}) model predicts no grades, so {what} has nothing to "
            "compare on new grades"
        )


def unseen_grades(model: TrainedModel, store: Store, since: str | None = None) -> Unseen:
    """The stored grades ``model`` has not seen (see the module docstring); :class:`NothingNewError` when none."""
    check_explicit(model, "monitoring")
    db_scale = store.scale()
    if db_scale is None or db_scale.name != model.scale.name:  # type: ignore[union-attr]
        have = "no grades" if db_scale is None else f"grades on scale {db_scale.name!r}"
        raise ModelError(f"{model.path} predicts grades on scale {model.scale.name!r}, but {store.url} holds {have}")  # type: ignore[union-attr]
    seen = model.manifest.get("trained_through") or {}
    if since is not None:
        rows = store.load_grades("all")
        key, label = _term_key(rows, since)
        is_new = rows["term_key"].fillna(np.iinfo(np.int64).min).to_numpy() >= key
        basis, after, warnings = f"grades of {label} and later terms (--since)", None, _since_warnings(seen, key)
    else:
        after, basis = _after_import(model, store)
        warnings = ()
        if after is not None:
            rows, is_new = _split_by_import(store, after)
        else:  # trained from a file: its latest term decides
            rows = store.load_grades("all")
            latest = seen["term_key"]
            is_new = rows["term_key"].fillna(np.iinfo(np.int64).min).to_numpy() > latest
            basis = f"grades of terms after {seen.get('term') or latest}, the latest the model was trained on"
    new, earlier = _latest_graded(rows[is_new]), _latest_graded(rows[~is_new])
    if new.empty:
        raise NothingNewError(
            f"{store.url} holds no grades the model {model.path} has not seen ({basis}): nothing to score; "
            "import the next term's grades first"
        )
    return Unseen(new, earlier, basis, after, since, warnings)


def _after_import(model: TrainedModel, store: Store) -> tuple[int | None, str]:
    """The import number after which grades are new to the model, and the basis sentence; (None, "") when the
    model was trained from a file (its latest term decides instead)."""
    m = model.manifest
    seen = m.get("trained_through") or {}
    if isinstance(seen.get("import"), int):
        return seen["import"], f"grades imported after import {seen['import']}, the last the model was trained on"
    if m.get("data_source", "database") != "database":
        if isinstance(seen.get("term_key"), int):
            return None, ""
        raise DataError(
            f"{model.path} was trained from a file ({m.get('data_source')}) and records no term: the database "
            "cannot tell which of its grades the model saw; give --since TERM (the first term to score)"
        )
    # An artifact from before import numbers were recorded: the imports stored after it was written.
    try:
        created = datetime.fromisoformat(str(m.get("created_at")))
    except ValueError:
        raise DataError(
            f"{model.path} records neither the import it was trained through nor when it was written: give --since "
            "TERM (the first term to score)"
        ) from None
    # created_at has whole seconds: an import in the model's last second was read by it (training reads first).
    before = [r.id for r in store.imports() if r.imported_at.replace(microsecond=0) <= created]
    after = max(before, default=0)
    return after, f"grades imported after the model was written ({m.get('created_at')}; it records no import number)"


def _split_by_import(store: Store, after: int) -> tuple[pd.DataFrame, np.ndarray]:
    new, old = store.load_grades("all", after_import=after), store.load_grades("all", through_import=after)
    rows = pd.concat([old, new], ignore_index=True)
    return rows, np.r_[np.zeros(len(old), bool), np.ones(len(new), bool)]


def _term_key(rows: pd.DataFrame, since: str) -> tuple[int, str]:
    """The order key of ``since``: a term label stored in the database, else a term code in a known form."""
    stored = rows.dropna(subset=["term_key"]).drop_duplicates(["term", "term_key"])
    return stored_term(
        since, list(zip(stored["term"].astype(str), stored["term_key"].astype(int), strict=True)), what="--since"
    )


def _since_warnings(seen: dict[str, Any], key: int) -> tuple[str, ...]:
    latest = seen.get("term_key")
    if isinstance(latest, int) and key <= latest:
        return (
            f"the model was trained on grades up to {seen.get('term') or latest}: the figures include grades it "
            "may have seen and flatter it",
        )
    return ()


def _latest_graded(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (student, course): the latest graded attempt (rows come sorted by term, import, row)."""
    graded = rows[rows["grade"].notna()]
    return graded.drop_duplicates(["student", "course"], keep="last").reset_index(drop=True)


def predict_unseen(model: TrainedModel, unseen: Unseen) -> Predicted:
    """``model``'s predictions of the new grades; see the module docstring for who is scored and how."""
    new, fitted, index = unseen.new, model.fitted, model.course_index()
    courses = new["course"].map(index).to_numpy(np.float64)
    students = new["student"].map(model.student_index()).to_numpy(np.float64)
    pred = np.full(len(new), np.nan)
    how = np.where(np.isnan(courses), "unknown-course", "no-history").astype(object)
    trained = ~np.isnan(students) & ~np.isnan(courses)
    if trained.any():
        pred[trained] = fitted.predict(students[trained].astype(np.int64), courses[trained].astype(np.int64))
        how[trained] = "trained"
    foldable = np.isnan(students) & ~np.isnan(courses)
    if foldable.any():
        options = fold_in_options(model)  # as a Recommender folds in with its defaults
        earlier = unseen.earlier[unseen.earlier["student"].isin(set(new["student"][foldable]))]
        history = {s: own for s, own in earlier.groupby("student")}
        for student, rows in pd.Series(np.flatnonzero(foldable)).groupby(new["student"].to_numpy()[foldable]):
            own = history.get(student)
            if own is None:
                continue
            entries = {index[c]: float(g) for c, g in zip(own["course"], own["grade"], strict=True) if c in index}
            if not entries:
                continue
            vector = fitted.fold_in(entries, options).embedding
            at = rows.to_numpy()
            pred[at] = fitted.scores(vector)[courses[at].astype(np.int64)]
            how[at] = "folded"
    lower = upper = None
    if model.calibration is not None:
        lower, upper = model.calibration.interval(np.clip(np.nan_to_num(pred), 0.0, 1.0))
    return Predicted(pred, lower, upper, how.astype(str))


def figures_on(model: TrainedModel, unseen: Unseen, predicted: Predicted, rows: np.ndarray) -> dict[str, Any]:
    """:func:`~electives.evaluation.monitoring.unseen_figures` of ``predicted`` on the new grades at ``rows``."""
    scale = model.scale
    assert scale is not None
    new = unseen.new
    return unseen_figures(
        new["student"].to_numpy()[rows],
        predicted.pred[rows],
        new["grade"].to_numpy(np.float64)[rows],
        span=scale.span,
        letter_step=scale.letter_step / scale.span,
        lower=None if predicted.lower is None else predicted.lower[rows],
        upper=None if predicted.upper is None else predicted.upper[rows],
    )


def validation_figures(model: TrainedModel) -> dict[str, Any]:
    """What the model recorded about itself on validation, named as :func:`unseen_figures` names its figures."""
    m = model.manifest.get("metrics") or {}
    ranking = model.manifest.get("validation_ranking") or {}
    return {
        "grades": m.get("validation_rows"),
        "rmse": m.get("val_rmse"),
        "mae": m.get("val_mae"),
        "within_one_letter": m.get("val_within_one_letter"),
        "interval_coverage": m.get("interval_coverage_measured"),
        "interval_coverage_nominal": m.get("interval_coverage_nominal"),
        "grade_ndcg": ranking.get("grade_ndcg"),
        "spearman": ranking.get("spearman"),
    }


@dataclass(frozen=True)
class MonitorReport:
    """What ``electives monitor`` prints (``to_dict`` for ``--json``)."""

    model: str
    family: str
    basis: str
    new_grades: int
    scored_by: dict[str, int]
    figures: dict[str, Any]
    validation: dict[str, Any]
    verdict: str
    reason: str
    trained_through: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "family": self.family,
            "trained_through": self.trained_through,
            "basis": self.basis,
            "new_grades": self.new_grades,
            "scored_by": self.scored_by,
            "figures": self.figures,
            "validation": self.validation,
            "verdict": self.verdict,
            "reason": self.reason,
            "warnings": list(self.warnings),
        }


def monitor(model: TrainedModel, store: Store, since: str | None = None) -> MonitorReport:
    """Score ``model`` on the grades in ``store`` it has not seen, against its validation figures."""
    unseen = unseen_grades(model, store, since)
    predicted = predict_unseen(model, unseen)
    counts = {k: int(v) for k, v in zip(*np.unique(predicted.how, return_counts=True), strict=True)}
    if not predicted.scored.any():
        raise NothingNewError(
            f"none of the {len(unseen.new):,} new grades in {store.url} can be predicted by {model.path}: they are "
            "in courses it does not know or of students with no earlier grades (counts: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            + ")"
        )
    figures = figures_on(model, unseen, predicted, predicted.scored)
    validation = validation_figures(model)
    verdict_, reason = verdict(figures, {"val_rmse": validation["rmse"], **validation})
    return MonitorReport(
        model=str(model.path),
        family=model.family,
        basis=unseen.basis,
        new_grades=len(unseen.new),
        scored_by=counts,
        figures=figures,
        validation=validation,
        verdict=verdict_,
        reason=reason,
        trained_through=dict(model.manifest.get("trained_through") or {}),
        warnings=unseen.warnings,
    )
