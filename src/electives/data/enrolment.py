"""Who is still enrolled: the students on record who a term's plan or at-risk list is for.

A registrar's export holds every student of its years, and most of them are gone by the term being planned:
graduated, left, transferred. Exports rarely say so, so it is read from the records: a student is **current**
when they have a row in one of the last :data:`RECENT_TERMS` *main* terms on record (or in any smaller term since
the oldest of them). A main term is one in which at least :data:`MAIN_SHARE` as many students have rows as in the
busiest term: summer schools and other small terms do not count as a term a student was away, so a student
who took Spring and skips Summer is still current in Fall, and so is one who sits out a whole year of semesters
(on leave, abroad, on a work placement). Someone with no row for three main terms in a row is taken to have
left; callers list them only when asked (``--include-inactive``) and always count them.

Why three: on college_grades (443 students, 2001–2005), replayed at its last two terms, two main terms would
call 42 and 44 students inactive of whom 33 and 30 come back in that very term (students who sit out a year
are common there); three call 8 and 9 inactive, of whom 6 and 3 come back (2% and 1% of the term's students),
which an advisor's own ``--students`` list, never filtered, covers.

Records without dated terms give no such evidence: when fewer than :data:`RECENT_TERMS` main terms are on record,
or for a student whose rows carry no term, everyone is current.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

__all__ = ["MAIN_SHARE", "RECENT_TERMS", "Enrolment", "current_students"]

RECENT_TERMS = 3  # sitting out a year of semesters (leave, placement) keeps a student current
MAIN_SHARE = 0.25  # a summer school has a fraction of the students of a regular term


@dataclass(frozen=True)
class Enrolment:
    """``current``: the students on record taken as still enrolled; ``inactive``: the others, with no row since
    the term keyed ``since`` and labelled ``since_term`` (both None: every student is current, the records
    cannot tell)."""

    current: frozenset[str]
    inactive: frozenset[str]
    since: int | None
    since_term: str | None = None

    def is_current(self, student: str) -> bool:
        return student not in self.inactive


def current_students(records: pd.DataFrame) -> Enrolment:
    """The students of ``records`` (columns ``student``, ``term_key`` — NaN or None where a row has no term — and
    ``term``, the label shown for ``since``) split into current and inactive; see the module docstring."""
    students = records["student"].astype(str)
    keys = records["term_key"].astype("float64")
    everyone = frozenset(students.unique().tolist())
    dated = keys.notna()
    if not dated.any():
        return Enrolment(everyone, frozenset(), None)
    # Students per term (each student once per term), then the main terms by share of the busiest.
    per_term = pd.DataFrame({"key": keys[dated], "student": students[dated]}).drop_duplicates()
    counts = per_term.groupby("key").size().sort_index()
    main = counts.index[counts >= MAIN_SHARE * counts.max()]
    if len(main) < RECENT_TERMS:
        return Enrolment(everyone, frozenset(), None)
    since = main[-RECENT_TERMS]
    recent = frozenset(students[dated & (keys >= since)].unique().tolist())
    undated_only = everyone - frozenset(students[dated].unique().tolist())  # no evidence either way: kept
    current = recent | undated_only
    label = records["term"][keys == since].iloc[0] if "term" in records else None
    return Enrolment(current, everyone - current, int(since), None if label is None else str(label))
