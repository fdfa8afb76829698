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

import numpy as np

__all__ = ["MAIN_SHARE", "RECENT_TERMS", "Enrolment", "current_students"]

RECENT_TERMS = 3  # sitting out a year of semesters (leave, placement) keeps a student current
MAIN_SHARE = 0.25  # a summer school has a fraction of the students of a regular term


@dataclass(frozen=True)
class Enrolment:
    """``current``: the students on record taken as still enrolled; ``inactive``: the others, with no row since
    the term keyed ``since`` (None: every student is current, the records cannot tell)."""

    current: frozenset[str]
    inactive: frozenset[str]
    since: int | None

    def is_current(self, student: str) -> bool:
        return student not in self.inactive


def current_students(students: np.ndarray, term_keys: np.ndarray) -> Enrolment:
    """The students of rows (``students``, their ``term_keys``: NaN or None where a row has no term) split into
    current and inactive; see the module docstring."""
    s = np.asarray(students, dtype=str)
    keys = np.asarray(term_keys, dtype=np.float64)
    everyone = frozenset(np.unique(s).tolist())
    dated = ~np.isnan(keys)
    if not dated.any():
        return Enrolment(everyone, frozenset(), None)
    # Students per term (each student once per term), then the main terms by share of the busiest.
    pairs = np.unique(np.stack([keys[dated], np.unique(s, return_inverse=True)[1][dated]]), axis=1)
    terms, counts = np.unique(pairs[0], return_counts=True)
    main = terms[counts >= MAIN_SHARE * counts.max()]
    if len(main) < RECENT_TERMS:
        return Enrolment(everyone, frozenset(), None)
    since = float(main[-RECENT_TERMS])
    recent = frozenset(np.unique(s[dated & (keys >= since)]).tolist())
    undated_only = everyone - frozenset(np.unique(s[dated]).tolist())  # no evidence either way: kept
    current = recent | undated_only
    return Enrolment(current, everyone - current, int(since))
