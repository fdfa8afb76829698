"""A seat plan's per-course counts in the database: demand, seats and allocated per (term, course).

Only counts are stored, never a student: recommendations read them to say that a course is likely full in a term
(more students have it in their own top k than it has seats). Saving a plan for a term replaces that term's
counts, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from electives.data.storage.engine import as_utc
from electives.data.storage.schema import plan_courses_table


@dataclass(frozen=True)
class CourseSeats:
    """One course's line of a stored plan: students with it in their own top ``k`` (``demand``), its ``seats``
    per offering (None: unlimited) and how many the plan gave it."""

    course: str
    k: int
    demand: int
    seats: int | None
    allocated: int

    @property
    def likely_full(self) -> bool:
        """More students want it than it has seats."""
        return self.seats is not None and self.demand > self.seats


@dataclass(frozen=True)
class StoredPlan:
    """A term with a stored plan: its ``k``, how many courses it counts and when it was made (UTC)."""

    term: str
    k: int
    courses: int
    planned_at: datetime


def replace_plan(conn: Connection, term: str, rows: Iterable[CourseSeats], *, planned_at: datetime) -> int:
    """Store ``rows`` as ``term``'s plan (a plan stored before for the term is dropped); the rows written."""
    t = plan_courses_table
    conn.execute(t.delete().where(t.c.term == term))
    values = [
        {
            "term": term,
            "course": r.course,
            "k": int(r.k),
            "demand": int(r.demand),
            "seats": None if r.seats is None else int(r.seats),
            "allocated": int(r.allocated),
            "planned_at": planned_at,
        }
        for r in rows
    ]
    if values:
        conn.execute(t.insert(), values)
    return len(values)


def read_plan(conn: Connection, term: str) -> dict[str, CourseSeats]:
    """``term``'s stored plan by course code; empty when none was stored."""
    t = plan_courses_table
    rows = conn.execute(sa.select(t).where(t.c.term == term).order_by(t.c.course)).all()
    return {r.course: CourseSeats(r.course, r.k, r.demand, r.seats, r.allocated) for r in rows}


def read_plans(conn: Connection) -> list[StoredPlan]:
    """Every term with a stored plan, by term."""
    t = plan_courses_table
    stmt = (
        sa.select(t.c.term, sa.func.max(t.c.k), sa.func.count(), sa.func.max(t.c.planned_at))
        .group_by(t.c.term)
        .order_by(t.c.term)
    )
    return [StoredPlan(term, int(k), int(n), as_utc(at)) for term, k, n, at in conn.execute(stmt).all()]
