"""A term's seat plan for the whole cohort: who gets which electives so that no course is over its seats and the
cohort's total predicted grade is as high as it can be (:mod:`~electives.serving.allocation` solves it exactly).

Who and what is planned, as ``recommend`` decides it for one student: every student with grades in the database
is a row, their history decides eligibility (:mod:`~electives.data.eligibility`: not passed yet, prerequisites
passed, offered in the term, an elective), and the served model predicts their grade in every course — any
family, through the :class:`~electives.models.interface.Model` interface: the trained students' vectors in
batches (``score_all``), a student the model has not seen (imported since) folded in from their stored grades.
The columns are the model's courses open to at least one student in the term; a student open to none is counted,
not planned, and so is one who has left (:mod:`~electives.data.enrolment`: no row in the last three main terms on
record; ``include_inactive`` plans them too). Seats are the catalogue's ``capacity`` per offering (none: unlimited). The predicted grades are in
the scale's points, so the objective is the cohort's total predicted grade.

:func:`build_plan` returns a :class:`SeatPlan`: the allocation, each course's demand if nobody had seats (how
many have it in their own top k), and what the report and the database need (:meth:`SeatPlan.course_lines`,
:meth:`SeatPlan.student_lines`, :meth:`SeatPlan.seat_counts` — counts only).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from electives.data.catalog import Catalog, canonical_term
from electives.data.eligibility import EligibilityIndex, EligibilityRules
from electives.data.enrolment import current_students
from electives.data.scales import GradeScale
from electives.data.storage import CourseSeats
from electives.errors import DataError, ModelError
from electives.models.compute import torch_threads
from electives.serving.allocation import Allocation, allocate, own_top_k
from electives.serving.entry import GradeReader
from electives.serving.options import fold_in_options

if TYPE_CHECKING:
    import pandas as pd

    from electives.data.storage import Store
    from electives.models.artifact import TrainedModel

__all__ = ["CourseLine", "SeatPlan", "StudentLine", "build_plan", "plan_term"]

_CHUNK = 4096  # students scored at a time


@dataclass(frozen=True)
class CourseLine:
    """One course of the plan: seats (None: unlimited), demand (students with it in their own top k),
    allocated, and the mean predicted grade (points) of those it was allocated to (None: nobody)."""

    course: str
    name: str
    seats: int | None
    demand: int
    allocated: int
    mean_predicted: float | None

    @property
    def likely_full(self) -> bool:
        return self.seats is not None and self.demand > self.seats


@dataclass(frozen=True)
class StudentLine:
    """One planned elective: the student's label, the course, its predicted grade (points and the scale's letter)
    and its rank among the courses the student may take, by predicted grade (1: their best)."""

    student: str
    course: str
    name: str
    points: float
    letter: str
    rank: int


@dataclass(frozen=True, eq=False)
class SeatPlan:
    """A term's plan. Rows are ``students`` (pseudonyms), columns ``courses``; ``predicted`` (points, NaN where
    the student may not take the course), ``seats`` (inf: unlimited) and ``allocation`` follow them.
    ``unplanned``: the students on record with no elective open to them in the term."""

    term: str
    k: int
    scale: GradeScale
    students: tuple[str, ...]
    courses: tuple[str, ...]
    names: tuple[str, ...]
    predicted: np.ndarray = field(repr=False)
    seats: np.ndarray = field(repr=False)
    allocation: Allocation = field(repr=False)
    unplanned: tuple[str, ...] = field(default=(), repr=False)
    inactive: tuple[str, ...] = field(default=(), repr=False)  # on record, left out as no longer current
    active_since: str | None = None  # the first of the recent terms a current student has a row in

    @property
    def on_record(self) -> frozenset[str]:
        """Every student with grades in the database, planned or not."""
        return frozenset(self.students) | frozenset(self.unplanned) | frozenset(self.inactive)

    @property
    def assigned(self) -> np.ndarray:
        return self.allocation.assigned

    @property
    def demand(self) -> np.ndarray:
        """Per course: students with it among their own k best predicted courses (what seats would have to hold)."""
        return own_top_k(self.predicted, self.k).sum(axis=0)

    @property
    def allocated(self) -> np.ndarray:
        return self.assigned.sum(axis=0)

    @property
    def over_capacity(self) -> int:
        """Courses given more students than seats (0 for every plan :func:`build_plan` makes)."""
        return int((self.allocated > self.seats).sum())

    @property
    def at_capacity(self) -> int:
        return int((np.isfinite(self.seats) & (self.allocated >= self.seats)).sum())

    def course_lines(self) -> list[CourseLine]:
        """Every course of the plan, in catalogue (model) order."""
        allocated, demand = self.allocated, self.demand
        total = np.where(self.assigned, self.predicted, 0.0).sum(axis=0)
        return [
            CourseLine(
                course=code,
                name=self.names[j],
                seats=None if math.isinf(self.seats[j]) else int(self.seats[j]),
                demand=int(demand[j]),
                allocated=int(allocated[j]),
                mean_predicted=float(total[j] / allocated[j]) if allocated[j] else None,
            )
            for j, code in enumerate(self.courses)
        ]

    def seat_counts(self) -> list[CourseSeats]:
        """The per-course counts the database keeps (no student in them)."""
        return [CourseSeats(c.course, self.k, c.demand, c.seats, c.allocated) for c in self.course_lines()]

    def student_lines(self, labels: Mapping[str, str] | None = None) -> list[StudentLine]:
        """The planned electives, by student then rank. ``labels`` (pseudonym → label): only those students,
        labelled so (an advisor's own numbers); None: every student, labelled by pseudonym."""
        ranks = _ranks(self.predicted)
        rows = range(len(self.students))
        if labels is not None:
            rows = [i for i, p in enumerate(self.students) if p in labels]
        lines = []
        for i in rows:
            label = self.students[i] if labels is None else labels[self.students[i]]
            for j in np.flatnonzero(self.assigned[i]).tolist():
                points = float(self.predicted[i, j])
                letter = self.scale.letter(points)
                lines.append(StudentLine(label, self.courses[j], self.names[j], points, letter, int(ranks[i, j])))
        return sorted(lines, key=lambda line: (line.student, line.rank))


def plan_term(term: str, catalog: Catalog | None) -> str:
    """``term`` as plans are stored and looked up (``2024-Fall``, or a season such as ``Fall``); a DataError
    listing the terms the catalogue offers electives in when it is neither a term nor a season."""
    canonical = canonical_term(term)
    if canonical is None:
        raise DataError(
            f"term {term!r} is not a term (e.g. 2024-Fall) or a season (e.g. Fall); {_known_terms(catalog)}",
        )
    return canonical


def build_plan(
    model: TrainedModel,
    store: Store,
    *,
    term: str,
    k: int,
    catalog: Catalog | None = None,
    rules: EligibilityRules | None = None,
    seed: int = 0,
    threads: int | None = None,
    include_inactive: bool = False,
) -> SeatPlan:
    """The plan for ``term`` of every current student in ``store``'s grades (``include_inactive``: every one);
    see the module docstring. ``catalog``: default the courses stored in the database (their seats included)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise DataError(f"k must be a whole number ≥ 1 (electives per student), got {k!r}")
    if model.mode != "explicit" or model.scale is None:
        raise ModelError(
            "a seat plan maximises the cohort's predicted grades, but this model is enrolment-only (it predicts "
            "no grade); train it on grades"
        )
    if catalog is None:
        stored = store.courses()
        catalog = Catalog(tuple(stored), source=f"courses in {store.url}") if stored else None
    canonical = plan_term(term, catalog)
    scale = model.scale
    index = EligibilityIndex(catalog, model.course_ids, scale, rules)
    records = _records(store)
    enrolment = current_students(records.frame)
    gone = set() if include_inactive else enrolment.inactive
    open_to = np.zeros((len(records.students), len(model.course_ids)), dtype=bool)
    for i, history in enumerate(records.histories):
        if records.students[i] not in gone:
            open_to[i] = index.evaluate(history, canonical).mask
    if not open_to.any():
        raise DataError(f"no student on record may take an elective in {canonical}; {_known_terms(catalog)}")
    columns = np.flatnonzero(open_to.any(axis=0))
    rows = np.flatnonzero(open_to.any(axis=1))
    with torch_threads(threads):
        normalised = _predictions(model, records, rows)
    predicted = scale.low + np.clip(normalised[:, columns], 0.0, 1.0) * scale.span
    predicted[~open_to[np.ix_(rows, columns)]] = np.nan
    codes = tuple(model.course_ids[j] for j in columns)
    seats = np.array([_seats(catalog, code) for code in codes], dtype=np.float64)
    return SeatPlan(
        term=canonical,
        k=k,
        scale=scale,
        students=tuple(records.students[i] for i in rows.tolist()),
        courses=codes,
        names=tuple(_name(model, catalog, code) for code in codes),
        predicted=predicted,
        seats=seats,
        allocation=allocate(predicted, k, seats, seed=seed),
        unplanned=tuple(p for p in np.delete(np.array(records.students, dtype=object), rows).tolist() if p not in gone),
        inactive=tuple(sorted(gone)),
        active_since=enrolment.since_term,
    )


# ---------------------------------------------------------------------------------------------------- internals
@dataclass(frozen=True, eq=False)
class _Records:
    """Every student on record (pseudonym order), their stored rows (``frame[bounds[i]:bounds[i + 1]]``, every
    attempt, each course's oldest first) and the same rows as eligibility rows."""

    students: list[str]
    frame: pd.DataFrame
    bounds: list[int]
    histories: list[list[tuple[str, float | None, int | None]]]


def _records(store: Store) -> _Records:
    frame = store.load_grades("all").sort_values("student", kind="stable").reset_index(drop=True)
    students, starts = np.unique(frame["student"].to_numpy(dtype=str), return_index=True)
    courses = frame["course"].astype(str).tolist()
    points = [None if p != p else float(p) for p in frame["points"].tolist()]  # NaN: a mark without a grade
    keys = [None if k is None or k != k else int(k) for k in frame["term_key"].astype(object).tolist()]
    bounds = [*starts.tolist(), len(frame)]
    rows = list(zip(courses, points, keys, strict=True))
    histories = [rows[a:b] for a, b in itertools.pairwise(bounds)]
    return _Records(students.tolist(), frame, bounds, histories)


def _predictions(model: TrainedModel, records: _Records, rows: np.ndarray) -> np.ndarray:
    """(len(rows), n_courses) normalised predictions for the students ``rows`` of ``records``: trained students
    from their vectors, in chunks; any other student folded in from their stored grades (the latest graded
    attempt of each course counts, as in recommend)."""
    fitted = model.fitted
    known = model.student_index()
    out = np.empty((len(rows), fitted.n_courses), dtype=np.float64)
    pseudonyms = [records.students[r] for r in rows.tolist()]
    trained = [(i, known[p]) for i, p in enumerate(pseudonyms) if p in known]
    for lo in range(0, len(trained), _CHUNK):
        part = trained[lo : lo + _CHUNK]
        out[[i for i, _ in part]] = fitted.score_all(np.array([j for _, j in part], dtype=np.int64))
    new = [i for i, p in enumerate(pseudonyms) if p not in known]
    if new:
        reader = GradeReader(course_index=model.course_index(), catalog_codes=None, scale=model.scale, explicit=True)
        options = fold_in_options(model)
        for i in new:
            r = int(rows[i])
            _, entries, _ = reader.read_history(records.frame.iloc[records.bounds[r] : records.bounds[r + 1]])
            out[i] = fitted.scores(fitted.fold_in(entries, options).embedding)
    return out


def _ranks(predicted: np.ndarray) -> np.ndarray:
    """Each course's rank among the student's open courses by predicted grade (1: best; ties to the earlier)."""
    order = np.argsort(-np.nan_to_num(predicted, nan=-np.inf), axis=1, kind="stable")
    ranks = np.empty(predicted.shape, dtype=np.int64)
    np.put_along_axis(ranks, order, np.arange(1, predicted.shape[1] + 1)[None, :], axis=1)
    return ranks


def _seats(catalog: Catalog | None, code: str) -> float:
    course = catalog.get(code) if catalog is not None else None
    return math.inf if course is None or course.capacity is None else float(course.capacity)


def _name(model: TrainedModel, catalog: Catalog | None, code: str) -> str:
    course = catalog.get(code) if catalog is not None else None
    return (course.name if course is not None and course.name else None) or model.course_names.get(code) or code


def _known_terms(catalog: Catalog | None) -> str:
    """The terms and seasons the catalogue offers electives in, for an error message."""
    offered = sorted({t for c in catalog or () if c.elective is not False for t in c.terms_offered})
    if not offered:
        return "the catalogue lists no terms offered, so any term or season is accepted"
    return f"the catalogue offers electives in: {', '.join(offered)}"
