"""Evaluate fitted models on one train/test split with the same metrics for all.

Grade metrics (models whose `predicts_grades` is true, on graded test rows): RMSE, MAE (in scale points via
`scale_range`), share within one step, per-student NDCG with the grade as gain, per-student Spearman.
Ranking metrics (all models), per test row: HR@K and NDCG@K of the held-out course
- among sampled negatives (given, or `n_negatives` drawn from the courses the student has in neither set), and
- over the full catalogue, with the student's training courses and other held-out courses excluded.
Already-taken courses are never ranked; a split whose train and test share a (student, course) pair is refused.

With `details=True` the result also holds, per model, HR@K and NDCG@K for K = 1…`curve_k` (`curves`), the
errors per course (`by_course`) and the predictions for the graded test rows (`predictions`, with `actual`), for
reports and plots.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from electives.data.interactions import Interactions, ItemLookup
from electives.data.sampling import sample_negatives
from electives.data.splits import check_no_overlap
from electives.errors import DataError, ModelError
from electives.evaluation import metrics

__all__ = ["EvaluationResult", "Recommender", "evaluate"]


class Recommender(Protocol):
    """What `evaluate` needs of a fitted model (NCF and every baseline provide it)."""

    @property
    def predicts_grades(self) -> bool: ...
    @property
    def n_courses(self) -> int: ...
    def predict(self, students: np.ndarray, courses: np.ndarray) -> np.ndarray: ...
    def score_all(self, students: np.ndarray) -> np.ndarray: ...


@dataclass
class EvaluationResult:
    """`metrics[model][name]` plus facts about the split; `to_dict()` is JSON-ready, `table()` is text."""

    metrics: dict[str, dict[str, float]]
    seconds: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)
    # details=True only: curves[model]["hr_full"][K - 1] etc.; by_course[model] = rows sorted by course;
    # predictions[model] and actual are normalised grades of the graded test rows (courses: their indices).
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    by_course: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    actual: np.ndarray | None = None
    actual_courses: np.ndarray | None = None

    def metric_names(self) -> list[str]:
        names: list[str] = []
        for m in self.metrics.values():
            names += [n for n in m if n not in names]
        return names

    def to_dict(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return None if isinstance(v, float) and math.isnan(v) else v

        out: dict[str, Any] = {
            "metrics": {k: {n: clean(v) for n, v in m.items()} for k, m in self.metrics.items()},
            "seconds": dict(self.seconds),
            "info": dict(self.info),
        }
        if self.curves:
            out["curves"] = {k: {n: [clean(x) for x in v] for n, v in c.items()} for k, c in self.curves.items()}
        if self.by_course:
            out["by_course"] = {
                k: [{n: clean(v) for n, v in row.items()} for row in rows] for k, rows in self.by_course.items()
            }
        return out

    def table(self, digits: int = 4) -> str:
        names = self.metric_names()
        header = ["model", *names]
        rows = [
            [model, *("" if n not in m or math.isnan(m[n]) else f"{m[n]:.{digits}f}" for n in names)]
            for model, m in self.metrics.items()
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
        return "\n".join(fmt.format(*r) for r in [header, *rows])


def evaluate(
    models: Mapping[str, Recommender],
    train: Interactions,
    test: Interactions,
    *,
    k: int = 10,
    n_negatives: int = 99,
    negatives: np.ndarray | None = None,
    scale_range: float = 1.0,
    step: float | None = None,
    full_catalogue: bool = True,
    seed: int = 0,
    details: bool = False,
    curve_k: int = 20,
) -> EvaluationResult:
    """Compute every applicable metric for each model on (train, test).

    negatives: optional (len(test), m) course indices to rank each test row's course against (e.g. the NCF
    protocol's fixed 99); otherwise `n_negatives` per row are sampled with `seed` (0 disables sampled metrics),
    fewer when a student has fewer untaken courses (`info["n_negatives"]` says how many were used).
    scale_range: the grade scale's max − min, to report RMSE/MAE in scale points. step: a grade step in
    normalised units for the "within one step" share. details: also keep K = 1…curve_k curves, per-course
    errors and the graded predictions (see `EvaluationResult`).
    """
    _check_inputs(models, train, test)
    if details and curve_k < 1:
        raise DataError(f"curve_k must be 1 or more, got {curve_k}")
    train_lookup, test_lookup = train.item_lookup(), test.item_lookup()
    neg = _negatives(train, test, negatives, n_negatives, seed)
    graded = test.grades is not None and bool((~np.isnan(test.grades)).any())

    result = EvaluationResult({}, {})
    graded_rows = None
    if graded and details:
        assert test.grades is not None
        graded_rows = np.flatnonzero(~np.isnan(test.grades))
        result.actual = test.grades[graded_rows].astype(np.float64)
        result.actual_courses = test.courses[graded_rows]
    for name, model in models.items():
        t0 = time.perf_counter()
        out: dict[str, float] = {}
        if graded and model.predicts_grades:
            out.update(_grade_metrics(model, test, scale_range, step))
        full, sampled = None, None
        if full_catalogue:
            # One pass over score_all serves both: the same scores rank against negatives and the catalogue.
            full, sampled = _ranks_from_score_all(model, test, train_lookup, test_lookup, neg)
        elif neg is not None:
            sampled = _sampled_ranks(model, test, neg)
        for kind, ranks in (("sampled", sampled), ("full", full)):
            if ranks is not None:
                out[f"hr@{k}_{kind}"] = metrics.hit_rate(ranks, k)
                out[f"ndcg@{k}_{kind}"] = metrics.ndcg(ranks, k)
        result.metrics[name] = out
        if details:
            result.curves[name] = _curves(sampled, full, curve_k)
            if graded_rows is not None and model.predicts_grades:
                pred = model.predict(test.students[graded_rows], test.courses[graded_rows]).astype(np.float64)
                result.predictions[name] = pred
                result.by_course[name] = _errors_by_course(pred, result, train.course_ids, scale_range)
        result.seconds[name] = time.perf_counter() - t0
    result.info = _split_info(train, test, k=k, neg=neg, given=negatives is not None, scale_range=scale_range)
    return result


def _check_inputs(models: Mapping[str, Recommender], train: Interactions, test: Interactions) -> None:
    """Refuse a leaky or empty split, and models that were fitted on another training set."""
    check_no_overlap(train, test)
    if len(test) == 0:
        raise DataError("the test set is empty")
    for name, model in models.items():
        if model.n_courses != train.n_courses:
            raise ModelError(f"model {name!r} scores {model.n_courses} courses; this split has {train.n_courses}")
        fp = getattr(model, "train_fingerprint", None)
        if fp and fp != train.fingerprint():
            raise ModelError(f"model {name!r} was not trained on this training set (fingerprint differs)")


def _split_info(
    train: Interactions, test: Interactions, *, k: int, neg: np.ndarray | None, given: bool, scale_range: float
) -> dict[str, Any]:
    return {
        "n_train": len(train),
        "n_test": len(test),
        "n_test_students": int(np.count_nonzero(np.bincount(test.students))),
        "n_students": train.n_students,
        "n_courses": train.n_courses,
        "k": k,
        "n_negatives": 0 if neg is None else int(neg.shape[1]),
        "n_sampled_rows": 0 if neg is None else int((neg[:, 0] >= 0).sum()),
        "negatives": "given" if given else "sampled",
        "scale_range": scale_range,
        "train_fingerprint": train.fingerprint(),
        "test_fingerprint": test.fingerprint(),
    }


def _curves(sampled: np.ndarray | None, full: np.ndarray | None, max_k: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for kind, ranks in (("sampled", sampled), ("full", full)):
        if ranks is not None and len(ranks):
            out[f"hr_{kind}"] = [metrics.hit_rate(ranks, k) for k in range(1, max_k + 1)]
            out[f"ndcg_{kind}"] = [metrics.ndcg(ranks, k) for k in range(1, max_k + 1)]
    return out


def _errors_by_course(
    pred: np.ndarray, result: EvaluationResult, course_ids: tuple[str, ...], scale_range: float
) -> list[dict[str, Any]]:
    """Per held-out course: rows, RMSE, MAE and mean signed error (prediction − grade), in scale points."""
    assert result.actual is not None and result.actual_courses is not None
    c, y = result.actual_courses, result.actual
    rows = []
    for course in np.unique(c):
        m = c == course
        rows.append(
            {
                "course": course_ids[int(course)],
                "n": int(m.sum()),
                "rmse": metrics.rmse(pred[m], y[m], scale_range),
                "mae": metrics.mae(pred[m], y[m], scale_range),
                "bias": float(np.mean(pred[m] - y[m]) * scale_range),
            }
        )
    return rows


def _negatives(
    train: Interactions, test: Interactions, given: np.ndarray | None, n: int, seed: int
) -> np.ndarray | None:
    if given is not None:
        neg = np.asarray(given, dtype=np.int64)
        if neg.ndim != 2 or len(neg) != len(test):
            raise DataError(f"negatives must have one row per test row ({len(test)}), got shape {neg.shape}")
        if neg.size and (neg.min() < 0 or neg.max() >= train.n_courses):
            raise DataError("negatives contain course indices outside the catalogue")
        s = np.repeat(test.students, neg.shape[1])
        taken = train.item_lookup().contains(s, neg.ravel()) | test.item_lookup().contains(s, neg.ravel())
        if taken.any():
            i = int(np.argmax(taken))
            raise DataError(
                f"{int(taken.sum())} given negatives are courses the student has taken, "
                f"e.g. test row {i // neg.shape[1]} course {train.course_ids[int(neg.ravel()[i])]!r}"
            )
        return neg
    if n <= 0:
        return None
    both = train.concat(test)
    free = train.n_courses - both.item_lookup().counts()[test.students]
    if not (free > 0).any():
        return None
    # A small catalogue gets fewer negatives; a student who has taken every course cannot be ranked (rows -1).
    n = min(n, int(free[free > 0].min()))
    neg = np.full((len(test), n), -1, dtype=np.int64)
    ok = free > 0
    neg[ok] = sample_negatives(test.students[ok], both.item_lookup(), n, np.random.default_rng(seed), unique=True)
    return neg


def _grade_metrics(model: Recommender, test: Interactions, scale_range: float, step: float | None) -> dict[str, float]:
    assert test.grades is not None
    keep = ~np.isnan(test.grades)
    s, c, y = test.students[keep], test.courses[keep], test.grades[keep]
    p = model.predict(s, c)
    out = {"rmse": metrics.rmse(p, y, scale_range), "mae": metrics.mae(p, y, scale_range)}
    if step is not None:
        out["within_step"] = metrics.within(p, y, step)
    out["grade_ndcg"] = metrics.grade_ndcg(s, p, y)
    out["spearman"] = metrics.spearman(s, p, y)
    return out


def _sampled_ranks(model: Recommender, test: Interactions, neg: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(neg[:, 0] >= 0)
    pos = model.predict(test.students[rows], test.courses[rows])
    n, m = len(rows), neg.shape[1]
    sc = model.predict(np.repeat(test.students[rows], m), neg[rows].ravel()).reshape(n, m)
    return metrics.sampled_ranks(pos, sc)


def _ranks_from_score_all(
    model: Recommender,
    test: Interactions,
    train_lookup: ItemLookup,
    test_lookup: ItemLookup,
    neg: np.ndarray | None,
    max_cells: int = 1 << 24,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per test row: rank among all courses minus the student's train and other test courses; and, when
    negatives are given, rank among them (rows whose negatives are -1 are left out)."""
    order = np.argsort(test.students, kind="stable")
    students, inverse = np.unique(test.students[order], return_inverse=True)
    full = np.empty(len(test), dtype=np.int64)
    sampled = None if neg is None else np.full(len(test), -1, dtype=np.int64)
    step = max(1, max_cells // max(1, test.n_courses))
    for i in range(0, len(students), step):
        chunk = students[i : i + step]
        scores = np.asarray(model.score_all(chunk))
        exclude = train_lookup.mask(chunk) | test_lookup.mask(chunk)
        lo, hi = np.searchsorted(inverse, [i, i + len(chunk)])
        rows, local = order[lo:hi], inverse[lo:hi] - i
        full[rows] = metrics.full_ranks(scores[local], test.courses[rows], exclude[local])
        if neg is not None and sampled is not None:
            ok = neg[rows, 0] >= 0
            r, lc = rows[ok], local[ok]
            pos = scores[lc, test.courses[r]]
            sampled[r] = metrics.sampled_ranks(pos, scores[lc[:, None], neg[r]])
    if sampled is not None:
        sampled = sampled[sampled >= 0]
    return full, sampled
