"""Students at risk in the required courses they are due to take in a term (what ``electives at-risk`` prints,
and what an advisor's page reads: :func:`find_at_risk` → per-student rows and per-course counts).

For each student and each *required* course *due* in term T: the model's predicted grade, its interval and two
flags.

- **Required**: a catalogue course marked ``elective = no``. An empty elective cell is not counted: the catalogue
  does not say the course is required, and a report to an advisor should not invent duties (nor does a course
  known only from grade files count). A catalogue that marks no course ``no`` is an error: nothing to report.
- **Due** in T, judged on the records *before* T (rows of T and later are left out, so a past term can be
  replayed): a course of the student's programme, not passed yet — a failed, withdrawn or ungraded attempt leaves
  the course due —, every prerequisite passed, and offered in T (``terms_offered``; a course whose entry says
  nothing stays due). The programme is inferred from everyone's records before T
  (:mod:`~electives.data.programmes`: the catalogue's departments or co-enrolment, then the courses a programme's
  students take; a student whose programme is undecided — say a newcomer with only common courses — is due only
  what every programme they may be in requires); the rest are :mod:`~electives.data.eligibility`'s rules
  (:data:`DUE_RULES`) with the electives rule off.
- **Predicted, low, high**: what ``electives recommend`` shows — a student the model was trained on keeps the
  trained vector, anyone else is folded in from their graded record before T (serving's fold-in options) — with
  the model's conformal interval at its own coverage, in the scale's points, rounded as shown (one decimal on a
  scale wider than 10 points, else two); the flags read the rounded numbers, so a row never contradicts itself.
  One exception: a due course with a graded attempt on record (a failed course, due again) is predicted from the
  student's record folded in, even for a trained student. The trained vector has fitted that very grade, its
  exam-day noise included, so it echoes a failed attempt (synthetic university seeds 5, 11, 23, not the benchmark's
  ones: 1.4–2.5 points too low on such rows, RMSE 4.3–4.9 against the true grade); the fold-in weighs the
  attempt as one grade with the model's measured noise (bias +0.3–1.0, RMSE 3.4–3.8). Courses never attempted
  keep the trained vector, which predicts them slightly better than the fold-in (RMSE 3.9–4.6 against 4.1–4.8).
- **At risk**: the prediction is below a pass. **High confidence**: the whole interval is.

A pass is the scale's pass mark (``pass`` in its TOML, else its lowest mark or letter above the bottom), or the
caller's ``pass_mark`` (a mark or points on the scale, e.g. ``C`` where a program asks for a C): it then decides
both what counts as passed on the record (the courses due, the prerequisites met) and the flags.

Students: an advisor's :class:`~electives.data.advisees.Advisees` (rows labelled with the numbers given, in the
file's order; numbers with no record before T are counted, not an error), or every *current* student on record
before T (labelled with pseudonyms; :mod:`~electives.data.enrolment`: those with no row in the last three main terms
before T have left and are counted, not listed, unless ``include_inactive``). A student with no due required course has no row. Required courses the model has no
data on cannot be predicted: their due rows are counted and left out. Nothing is stored.

Inferring the programmes reads every student's record; a caller that reports on a few students at a time (an
advisor's page) infers them once per term with :func:`programmes_before` and passes them in, and then only the
advisees' own records are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from electives.data.catalog import Catalog
from electives.data.eligibility import EligibilityIndex, EligibilityRules
from electives.data.enrolment import current_students
from electives.data.programmes import Programmes, infer_programmes
from electives.data.scales import GradeScale, MarkError
from electives.data.terms import stored_term
from electives.errors import DataError, ModelError
from electives.serving.entry import GradeReader
from electives.serving.options import fold_in_options

if TYPE_CHECKING:
    from electives.data.advisees import Advisees
    from electives.data.storage import Store
    from electives.models.artifact import TrainedModel

__all__ = [
    "DUE_RULES",
    "AtRiskReport",
    "AtRiskRow",
    "CourseCount",
    "TermProgrammes",
    "find_at_risk",
    "programmes_before",
]

# Due = eligible under these rules among the required courses: the electives rule off, any attempt without a pass
# (failed, withdrawn, incomplete) leaves the course to take.
DUE_RULES = EligibilityRules(
    electives_only=False,
    allow_retake_failed=True,
    allow_retake_ungraded=True,
    require_prerequisites=True,
    require_offered=True,
    require_listed=True,
)
_CHUNK = 1024  # students scored at once: bounded memory on a large university


@dataclass(frozen=True)
class AtRiskRow:
    """One student and one required course due. ``student``: the number the advisor gave, or the pseudonym;
    points on the scale; ``low``/``high``/``high_confidence`` are None when the model has no interval."""

    student: str
    course: str
    course_name: str
    predicted: float
    low: float | None
    high: float | None
    at_risk: bool
    high_confidence: bool | None


@dataclass(frozen=True)
class CourseCount:
    """One required course: its due rows, how many are flagged, and their predictions (points, row order)."""

    course: str
    name: str
    due: int
    at_risk: int
    high_confidence: int
    predicted: tuple[float, ...]


@dataclass(frozen=True)
class AtRiskReport:
    """What :func:`find_at_risk` found; see the module docstring. ``students``: the students asked about (the
    numbers given, or every student on record before the term); ``unknown``: the numbers given with no record
    before the term; ``no_data``: required courses the model cannot predict, with ``no_data_rows`` due rows."""

    term: str
    scale: GradeScale  # pass_points is the pass used
    coverage: float | None
    rows: tuple[AtRiskRow, ...]
    courses: tuple[CourseCount, ...]
    labelled_by: str  # "numbers given" or "pseudonyms"
    students: int
    unknown: tuple[str, ...]
    duplicates: int
    folded_in: int
    required: int
    no_data: tuple[str, ...]
    no_data_rows: int
    warnings: tuple[str, ...] = ()
    programmes: int = 0  # programmes inferred
    programmes_from: str = ""  # where they came from: "catalogue", "departments", "co-enrolment" or "none"
    undecided: int = 0  # students asked about whose programme is undecided (due: what every candidate requires)
    inactive: int = 0  # students on record with no row since ``active_since``: left out (every student: counted)
    active_since: str | None = None  # the first term of the recent ones a current student has a row in
    inactive_included: bool = False  # the inactive students were listed too (asked for)

    @property
    def pass_points(self) -> float:
        return float(self.scale.pass_points)  # type: ignore[arg-type]

    @property
    def students_with_rows(self) -> int:
        return len({r.student for r in self.rows})

    @property
    def flagged(self) -> int:
        return sum(r.at_risk for r in self.rows)

    @property
    def high_confidence(self) -> int:
        return sum(bool(r.high_confidence) for r in self.rows)

    @property
    def flagged_students(self) -> int:
        return len({r.student for r in self.rows if r.at_risk})

    def summary(self) -> dict[str, Any]:
        """The counts, JSON-able (no row, no student number)."""
        on_record = self.students - len(self.unknown)
        return {
            "term": self.term,
            "scale": self.scale.name,
            "pass": self.pass_points,
            "coverage": self.coverage,
            "labelled_by": self.labelled_by,
            "students": self.students,
            "unknown": len(self.unknown),
            "duplicates": self.duplicates,
            "on_record": on_record,
            "with_rows": self.students_with_rows,
            "without_rows": on_record - self.students_with_rows,
            "folded_in": self.folded_in,
            "rows": len(self.rows),
            "at_risk": self.flagged,
            "at_risk_students": self.flagged_students,
            "high_confidence": self.high_confidence,
            "required_courses": self.required,
            "no_data_courses": list(self.no_data),
            "no_data_rows": self.no_data_rows,
            "programmes": self.programmes,
            "programmes_from": self.programmes_from,
            "undecided": self.undecided,
            "inactive": self.inactive,
            "active_since": self.active_since,
            "inactive_included": self.inactive_included,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class TermProgrammes:
    """The programmes inferred from the records before ``term`` (order key ``key``): what is due then."""

    term: str
    key: int
    programmes: Programmes


def programmes_before(store: Store, term: str, *, catalog: Catalog | None = None) -> TermProgrammes:
    """The programmes of every student on record before ``term`` (catalogue: as :func:`find_at_risk`), to pass to
    :func:`find_at_risk` for one advisor after another without reading everyone's records each time."""
    catalog = _stored_catalog(store) if catalog is None else catalog
    grades = store.load_grades("all")
    key, label = _target_term(grades, term)
    return _programmes(_before(grades, key), key, label, catalog)


def find_at_risk(
    model: TrainedModel,
    store: Store,
    term: str,
    *,
    advisees: Advisees | None = None,
    catalog: Catalog | None = None,
    pass_mark: str | float | None = None,
    programmes: TermProgrammes | None = None,
    include_inactive: bool = False,
) -> AtRiskReport:
    """The at-risk report of ``advisees`` (None: every current student on record before ``term``, or with
    ``include_inactive`` every one) in ``term``; the catalogue defaults to the courses stored in ``store``;
    ``programmes`` (from :func:`programmes_before`, for this term) saves inferring them, and with ``advisees``
    only their records are read. A DataError (``field`` term, pass or catalog) or ModelError names what cannot
    be used."""
    scale = _scale(model, store, pass_mark)
    catalog = _stored_catalog(store) if catalog is None else catalog
    required = _required(catalog)
    if programmes is not None and advisees is not None:
        key, label = _given_term(programmes, term)
        histories = _own_histories(store, advisees, key)
    else:
        grades = store.load_grades("all")
        key, label = _target_term(grades, term)
        before = _before(grades, key)
        histories = dict(tuple(before.groupby("student", sort=True)))
        if programmes is None:
            programmes = _programmes(before, key, label, catalog)
        _given_term(programmes, label)
    inactive, since = 0, None
    if advisees is None:
        wanted = [(p, p) for p in histories]
        unknown: tuple[str, ...] = ()
        enrolment = current_students(before)
        since, inactive = enrolment.since_term, len(enrolment.inactive)
        if not include_inactive:
            wanted = [(p, g) for p, g in wanted if enrolment.is_current(p)]
    else:
        wanted = [(p, g) for g, p in zip(advisees.given, advisees.pseudonyms, strict=True) if p in histories]
        unknown = advisees.unknown(frozenset(histories))
    scorer = _Scorer(model, scale, catalog, required, programmes.programmes)
    for start in range(0, len(wanted), _CHUNK):
        scorer.add(wanted[start : start + _CHUNK], histories, label)
    cal = model.calibration
    return AtRiskReport(
        term=label,
        scale=scale,
        coverage=None if cal is None else cal.coverage,
        rows=tuple(scorer.rows),
        courses=_course_counts(scorer.rows, required),
        labelled_by="pseudonyms" if advisees is None else "numbers given",
        students=len(wanted) if advisees is None else len(advisees.given),
        unknown=unknown,
        duplicates=0 if advisees is None else advisees.duplicates,
        folded_in=scorer.folded_in,
        required=len(required),
        no_data=tuple(c for c in required if c in scorer.no_data),
        no_data_rows=sum(scorer.no_data.values()),
        warnings=_warnings(model, key, label),
        programmes=len(programmes.programmes.courses),
        programmes_from=programmes.programmes.source,
        undecided=_undecided(programmes.programmes, [p for p, _ in wanted]),
        inactive=inactive,
        active_since=since,
        inactive_included=include_inactive and advisees is None,
    )


def _undecided(programmes: Programmes, students: Sequence[str]) -> int:
    if not programmes.courses:
        return 0  # no programmes at all: nothing to decide
    return sum(programmes.programme_of(p) is None for p in students)


def _stored_catalog(store: Store) -> Catalog:
    return Catalog(tuple(store.courses()), source=f"the courses stored in {store.url}")


def _required(catalog: Catalog) -> tuple[str, ...]:
    required = tuple(c.code for c in catalog if c.elective is False)
    if not required:
        raise _error(
            f"{catalog.source or 'the catalogue'} marks no course as required (elective = no), so no course is "
            "due: give a catalogue whose elective column says no for required courses",
            "catalog",
        )
    return required


def _before(grades: pd.DataFrame, key: int) -> pd.DataFrame:
    term_keys = grades["term_key"].astype("float64").to_numpy()  # NaN: no term, older than every dated row
    return grades[~(term_keys >= key)]


def _programmes(before: pd.DataFrame, key: int, label: str, catalog: Catalog) -> TermProgrammes:
    required = _required(catalog)
    departments = {c: catalog[c].department for c in required}
    named = {c: catalog[c].programmes for c in required}
    return TermProgrammes(label, key, infer_programmes(before, required, departments=departments, named=named))


def _given_term(programmes: TermProgrammes, term: str) -> tuple[int, str]:
    """``term`` resolved against the term the programmes were inferred for (they must be that term's)."""
    try:
        key, label = stored_term(term, [(programmes.term, programmes.key)], what="term")
    except DataError as exc:
        raise _error(str(exc), "term") from None
    if key != programmes.key:
        raise _error(
            f"term {label!r}: the programmes given were inferred from the records before {programmes.term}; infer "
            f"them for {label}",
            "term",
        )
    return key, label


def _own_histories(store: Store, advisees: Advisees, key: int) -> dict[str, pd.DataFrame]:
    """The advisees' records before the term, read one student at a time; those with none are left out."""
    out = {}
    for pseudonym in dict.fromkeys(advisees.pseudonyms):
        history = _before(store.student_history(pseudonym), key)
        if len(history):
            out[pseudonym] = history
    return out


class _Scorer:
    """Due courses, predictions and flags, a chunk of students at a time (rows accumulate in ``rows``)."""

    def __init__(
        self, model: TrainedModel, scale: GradeScale, catalog: Catalog, required: Sequence[str], programmes: Programmes
    ) -> None:
        self.model, self.scale, self.fitted = model, scale, model.fitted
        self.required = tuple(required)
        self.programmes = programmes
        self._programme_masks: dict[frozenset[str], np.ndarray] = {}  # few distinct due sets: one mask each
        course_index = model.course_index()
        self.reader = GradeReader(course_index=course_index, catalog_codes=catalog.codes, scale=scale, explicit=True)
        self.eligibility = EligibilityIndex(catalog, self.required, scale, DUE_RULES)
        self.in_model = np.array([course_index.get(c, -1) for c in self.required], dtype=np.int64)
        self.names = [
            (catalog[c].name if catalog[c].name else None) or model.course_names.get(c) or c for c in self.required
        ]
        self.student_index = model.student_index()
        self.options = fold_in_options(model)
        self.decimals = 1 if scale.span > 10 else 2
        self.rows: list[AtRiskRow] = []
        self.no_data: dict[str, int] = {}
        self.folded_in = 0

    def add(self, chunk: Sequence[tuple[str, str]], histories: dict[str, pd.DataFrame], term: str) -> None:
        """Rows for ``chunk`` ((pseudonym, label) pairs, every one with a history before ``term``)."""
        due, entries = [], []
        for pseudonym, _ in chunk:
            rows, grades, _ignored = self.reader.read_history(histories[pseudonym])
            due.append(self.eligibility.evaluate(rows, term).mask & self._programme_mask(pseudonym))
            entries.append(grades)
        scores = self._scores([p for p, _ in chunk], entries, due)
        for (_, label), mask, row_scores in zip(chunk, due, scores, strict=True):
            for j in np.flatnonzero(mask & (self.in_model < 0)).tolist():
                self.no_data[self.required[j]] = self.no_data.get(self.required[j], 0) + 1
            at = np.flatnonzero(mask & (self.in_model >= 0))
            if at.size:
                self._rows(label, at, row_scores[self.in_model[at]])

    def _programme_mask(self, pseudonym: str) -> np.ndarray:
        courses = self.programmes.due(pseudonym)
        mask = self._programme_masks.get(courses)
        if mask is None:
            mask = self._programme_masks[courses] = np.array([c in courses for c in self.required], dtype=bool)
        return mask

    def _scores(
        self, pseudonyms: list[str], entries: list[dict[int, float]], due: list[np.ndarray]
    ) -> list[np.ndarray]:
        """Each student's normalised predictions of every model course: the trained vector, except for the due
        courses with a graded attempt on record (fold-in, see the module docstring); anyone else: fold-in."""
        known = [self.student_index.get(p) for p in pseudonyms]
        trained = [i for i in known if i is not None]
        batch = iter(np.asarray(self.fitted.score_all(np.array(trained, dtype=np.int64)), dtype=np.float64))
        out = []
        for index, grades, mask in zip(known, entries, due, strict=True):
            if index is None:
                self.folded_in += 1
                out.append(self._fold_in(grades))
                continue
            scores = next(batch)
            again = [k for k in self.in_model[mask].tolist() if k in grades]
            if again:
                scores = scores.copy()
                scores[again] = self._fold_in(grades)[again]
            out.append(scores)
        return out

    def _fold_in(self, grades: dict[int, float]) -> np.ndarray:
        return np.asarray(self.fitted.scores(self.fitted.fold_in(grades, self.options).embedding), dtype=np.float64)

    def _rows(self, label: str, at: np.ndarray, scores: np.ndarray) -> None:
        scale, cal, d = self.scale, self.model.calibration, self.decimals
        bar = float(scale.pass_points) - 1e-9  # type: ignore[arg-type]
        predicted = np.round(scale.low + np.clip(scores, 0.0, 1.0) * scale.span, d)
        low = high = None
        if cal is not None:
            lo, hi = cal.interval(scores)
            low, high = np.round(scale.low + lo * scale.span, d), np.round(scale.low + hi * scale.span, d)
        for n, j in enumerate(at.tolist()):
            self.rows.append(
                AtRiskRow(
                    student=label,
                    course=self.required[j],
                    course_name=self.names[j],
                    predicted=float(predicted[n]),
                    low=None if low is None else float(low[n]),
                    high=None if high is None else float(high[n]),
                    at_risk=bool(predicted[n] < bar),
                    high_confidence=None if high is None else bool(high[n] < bar),
                )
            )


def _scale(model: TrainedModel, store: Store, pass_mark: str | float | None) -> GradeScale:
    """The model's scale (it must predict grades, on the database's scale), with ``pass_mark`` as its pass."""
    scale = model.scale
    if not model.fitted.predicts_grades or scale is None:
        raise ModelError(
            f"{model.path}: an enrolment-only ({model.mode}) model predicts no grades, so no student can be "
            "found at risk of failing; train it on grades"
        )
    db_scale = store.scale()
    if db_scale is None or db_scale.name != scale.name:
        have = "no grades" if db_scale is None else f"grades on scale {db_scale.name!r}"
        raise DataError(f"the model predicts grades on scale {scale.name!r}, but {store.url} holds {have}")
    if pass_mark is None:
        return scale
    text = f"{pass_mark:g}" if isinstance(pass_mark, int | float) else str(pass_mark)
    try:
        points = scale.parse(text).points
    except MarkError as exc:
        raise _error(f"pass {text!r}: {exc} (expected a mark or points on scale {scale.name!r})", "pass") from None
    if points is None:
        raise _error(f"pass {text!r}: a mark without a grade on scale {scale.name!r} cannot be a pass mark", "pass")
    return replace(scale, pass_points=points)


def _target_term(grades: pd.DataFrame, term: str) -> tuple[int, str]:
    stored = grades.dropna(subset=["term_key"]).drop_duplicates(["term", "term_key"])
    pairs = list(zip(stored["term"].astype(str), stored["term_key"].astype(int), strict=True))
    try:
        return stored_term(term, pairs, what="term")
    except DataError as exc:
        raise _error(str(exc), "term") from None


def _warnings(model: TrainedModel, key: int, label: str) -> tuple[str, ...]:
    seen = model.manifest.get("trained_through") or {}
    latest = seen.get("term_key")
    if isinstance(latest, int) and latest >= key:
        return (
            f"the model was trained on grades up to {seen.get('term') or latest}, {label} included: its predictions "
            "for that term are not forecasts",
        )
    return ()


def _course_counts(rows: Sequence[AtRiskRow], required: Sequence[str]) -> tuple[CourseCount, ...]:
    by_course: dict[str, list[AtRiskRow]] = {}
    for row in rows:
        by_course.setdefault(row.course, []).append(row)
    return tuple(
        CourseCount(
            course=code,
            name=own[0].course_name,
            due=len(own),
            at_risk=sum(r.at_risk for r in own),
            high_confidence=sum(bool(r.high_confidence) for r in own),
            predicted=tuple(r.predicted for r in own),
        )
        for code in required
        if (own := by_course.get(code))
    )


def _error(message: str, field: str) -> DataError:
    error = DataError(message)
    error.field = field
    return error
