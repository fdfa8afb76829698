"""What an advisor's page shows of a term: the stored seat plan's demand against seats per elective, and the
at-risk counts per required course over every student on record — counts only, under the k-anonymity rule.

**The rule** (``min_students``, 10 by default: the recommender's ``min_cohort``): no figure counts fewer students.

- A count below it is not shown: it reads "fewer than 10" (a zero as well: "nobody" is a figure about fewer than
  10 students too).
- A count that is part of another — at risk within due, high confidence within at risk — is shown only when the
  larger one is, and when what is left of it is not below the rule either: due 14 and at risk 12 would say that 2
  students are predicted to pass, so the 12 is withheld. Every difference a reader can take is then ≥ 10 as well.
- Nothing adds the rows up (no totals row), so a suppressed cell cannot be recovered from a total; the plan's
  counts stand alone (a course's demand and its allocation are counted over different students).
- "Likely full" (demand above seats) stays: it is the flag every student's recommendation card already shows.

The at-risk counts come from :func:`~electives.serving.at_risk.find_at_risk` over every student on record before
the term (``--all``): its per-student rows are dropped here, once counted; nothing about a student (no pseudonym)
leaves this module. The plan's counts are what ``electives plan`` stored (:meth:`Store.plan`).

Which terms: those with a stored plan, and the term after the stored grades (:func:`~electives.data.terms.next_term`),
which is what a registrar plans next; :func:`term_choices` lists them and :func:`choose_term` reads a typed one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from electives.data.catalog import Catalog, canonical_term
from electives.data.storage import CourseSeats, StoredPlan
from electives.data.terms import TermError, next_term, parse_term
from electives.errors import DataError
from electives.serving.at_risk import AtRiskReport, find_at_risk
from electives.serving.explanations import MIN_COHORT, check_min_cohort

if TYPE_CHECKING:
    from electives.data.storage import Store
    from electives.models.artifact import TrainedModel

__all__ = [
    "MIN_STUDENTS",
    "RiskFigures",
    "RiskOverview",
    "SeatFigures",
    "TermChoice",
    "at_risk_overview",
    "choose_term",
    "plan_figures",
    "risk_overview",
    "shown_count",
    "term_choices",
]

MIN_STUDENTS = MIN_COHORT


def fewer_than(min_students: int) -> str:
    return f"fewer than {min_students} students"


def withheld(min_students: int) -> str:
    return f"withheld: fewer than {min_students} students would be left of the figure it is part of"


def shown_count(
    count: int, *, min_students: int, within: int | None = None, within_shown: bool = True
) -> tuple[int | None, str | None]:
    """``(count, None)`` when the rule lets it be shown, else ``(None, why)``. ``within``: the count it is part of
    (shown or not: ``within_shown``); see the module docstring."""
    if count < min_students:
        return None, fewer_than(min_students)
    if within is not None and (not within_shown or within - count < min_students):
        return None, withheld(min_students)
    return count, None


def figures_dict(figures: SeatFigures | RiskFigures) -> dict[str, Any]:
    """A line of figures as JSON: its fields in order, ``suppressed`` as an object (field → why)."""
    out = {f.name: getattr(figures, f.name) for f in fields(figures)}
    out["suppressed"] = dict(figures.suppressed)
    return out


@dataclass(frozen=True)
class SeatFigures:
    """One elective of a stored plan: seats (None: unlimited), demand and allocated (None: suppressed, the reason
    in ``suppressed`` by field) and whether demand exceeds seats."""

    course: str
    name: str
    seats: int | None
    demand: int | None
    allocated: int | None
    likely_full: bool
    suppressed: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return figures_dict(self)


@dataclass(frozen=True)
class RiskFigures:
    """One required course: students due, at risk and at risk with high confidence (None: suppressed)."""

    course: str
    name: str
    due: int | None
    at_risk: int | None
    high_confidence: int | None
    suppressed: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return figures_dict(self)


@dataclass(frozen=True)
class RiskOverview:
    """A term's at-risk counts, ready to show: every figure already under the rule. ``students``: current students
    on record before the term (None: suppressed); ``inactive``: those with no row since ``active_since``, taken to
    have left and not counted (None: suppressed); ``no_data``: required courses the model cannot predict."""

    term: str
    scale: str
    pass_points: float
    coverage: float | None
    students: int | None
    courses: tuple[RiskFigures, ...]
    no_data: tuple[str, ...]
    warnings: tuple[str, ...]
    programmes: int
    programmes_from: str
    min_students: int
    inactive: int | None = 0
    active_since: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "term": self.term,
            "scale": self.scale,
            "pass": self.pass_points,
            "coverage": self.coverage,
            "students": self.students,
            "courses": [c.to_dict() for c in self.courses],
            "no_data_courses": list(self.no_data),
            "warnings": list(self.warnings),
            "programmes": self.programmes,
            "programmes_from": self.programmes_from,
            "inactive": self.inactive,
            "active_since": self.active_since,
        }


@dataclass(frozen=True)
class TermChoice:
    """A term an advisor may look at: its stored plan (None: none yet) and whether it follows the stored grades."""

    term: str
    plan: StoredPlan | None
    next: bool


def plan_figures(
    plan: Mapping[str, CourseSeats], names: Mapping[str, str], *, min_students: int = MIN_STUDENTS
) -> tuple[SeatFigures, ...]:
    """A stored plan's lines under the rule, by course code (``names``: code → name, the code when missing)."""
    min_students = check_min_cohort(min_students)
    out = []
    for code in sorted(plan):
        line = plan[code]
        demand, why_demand = shown_count(line.demand, min_students=min_students)
        allocated, why_allocated = shown_count(line.allocated, min_students=min_students)
        suppressed = tuple((f, why) for f, why in (("demand", why_demand), ("allocated", why_allocated)) if why)
        out.append(
            SeatFigures(code, names.get(code) or code, line.seats, demand, allocated, line.likely_full, suppressed)
        )
    return tuple(out)


def risk_overview(report: AtRiskReport, *, min_students: int = MIN_STUDENTS) -> RiskOverview:
    """``report``'s per-course counts under the rule; its rows (one per student) are not kept."""
    min_students = check_min_cohort(min_students)
    courses = []
    for c in report.courses:
        due, why_due = shown_count(c.due, min_students=min_students)
        at_risk, why_at = shown_count(c.at_risk, min_students=min_students, within=c.due, within_shown=due is not None)
        high, why_high = shown_count(
            c.high_confidence, min_students=min_students, within=c.at_risk, within_shown=at_risk is not None
        )
        reasons = (("due", why_due), ("at_risk", why_at), ("high_confidence", why_high))
        courses.append(RiskFigures(c.course, c.name, due, at_risk, high, tuple((f, w) for f, w in reasons if w)))
    on_record = report.students - len(report.unknown)
    return RiskOverview(
        term=report.term,
        scale=report.scale.name,
        pass_points=report.pass_points,
        coverage=report.coverage,
        students=shown_count(on_record, min_students=min_students)[0],
        courses=tuple(courses),
        no_data=report.no_data,
        warnings=report.warnings,
        programmes=report.programmes,
        programmes_from=report.programmes_from,
        min_students=min_students,
        inactive=shown_count(report.inactive, min_students=min_students)[0] if report.inactive else 0,
        active_since=report.active_since,
    )


def at_risk_overview(
    model: TrainedModel,
    store: Store,
    term: str,
    *,
    catalog: Catalog | None = None,
    min_students: int = MIN_STUDENTS,
) -> RiskOverview:
    """The at-risk counts of every student on record before ``term`` (a dated term: what is due depends on the
    year), under the rule. A DataError (``field`` term or catalog) or ModelError says why there are none."""
    try:
        parse_term(term)
    except TermError:
        raise _term_error(
            f"term {term!r}: at-risk counts need a dated term such as 2025-{term}, since what a student is due "
            "depends on their record up to then"
        ) from None
    report = find_at_risk(model, store, term, catalog=catalog)
    return risk_overview(report, min_students=min_students)


def term_choices(store: Store, *, terms: Sequence[tuple[str, int]] | None = None) -> tuple[TermChoice, ...]:
    """The terms with a stored plan and the term after the stored grades (``terms``: :meth:`Store.terms`, when the
    caller has them already): dated terms latest first, then the seasons plans were made for."""
    plans = {p.term: p for p in store.plans()}
    upcoming = next_term(store.terms() if terms is None else terms)
    terms = set(plans) | ({upcoming} if upcoming else set())
    return tuple(TermChoice(t, plans.get(t), t == upcoming) for t in sorted(terms, key=_latest_first))


def choose_term(text: str, choices: Sequence[TermChoice]) -> TermChoice:
    """The choice ``text`` names (a term as plans store it, any case or known form: ``fa2023`` is 2023-Fall); a
    DataError (``field`` term) listing the choices otherwise."""
    wanted = (canonical_term(text) or text.strip()).casefold()
    for choice in choices:
        if choice.term.casefold() == wanted:
            return choice
    listed = ", ".join(c.term for c in choices) or "none yet (make a seat plan with electives plan)"
    raise _term_error(f"term {text.strip()!r} is not one with figures to show; the terms are: {listed}")


def _latest_first(term: str) -> tuple[int, float, str]:
    try:
        return (0, -float(parse_term(term).key or 0), term)
    except TermError:
        return (1, 0.0, term)  # a season: after the dated terms


def _term_error(message: str) -> DataError:
    error = DataError(message)
    error.field = "term"
    return error
