"""Which required courses belong to a student's programme, inferred from the records (registrars' exports rarely
name the programme): what ``at-risk`` counts as *due*, so that a student is not listed for another programme's core.

Three steps, on every student's required courses on record (any attempt: a failed or withdrawn one shows the
programme as well as a pass):

1. **Seed groups** of required courses: the catalogue's departments when it names at least two for the required
   courses taken; otherwise groups of courses taken by the same students — average-linkage clustering of the
   courses on their co-enrolment *lift* (how much more often two courses are taken together than if students
   chose them independently), merged while the average lift between two groups is at least :data:`LIFT`.
   Courses taken with everything (a common core) link to nothing in particular and stay out of every group.
2. **Programmes**, refined until the students' programmes stop changing: a student's programme is the one that
   holds most of the required courses on their record (a tie: undecided between the tied programmes); a course
   belongs to programme P when the share of P's students who took it is at least :data:`SHARE` of the largest
   share any programme has for it. A common core course is taken alike by every programme (ratio ≈ 1) and so
   belongs to all; another programme's core is taken by few or none of P's students (ratio ≈ 0). The ratio, not
   the share itself, decides: shares depend on how far the students are (a final-year course is taken by the
   final-year students only), ratios much less, as every programme has students at every stage. Shares count
   the students whose records are at least as long (in terms) as the median, who have reached most of what their
   programme asks, whatever order it asks it in.
3. **Due courses** of a student: the courses of their programme; undecided (a newcomer with only common core
   courses, or no required course yet): the courses of *every* tied programme, i.e. only what all of them
   require. A required course nobody has taken yet belongs to its department's programme, or, with no such
   programme, is due for everyone (nothing on record limits it; prerequisites still keep a course that builds on
   one programme's core from the others).

A registrar who knows its programmes says so in the catalogue's ``programmes`` column: when it names a programme for
any required course, the programmes are the catalogue's (``source`` ``catalogue``): a programme's courses are those
naming it, a required course naming none is due for everyone, and only the students' programmes are inferred, as
in step 2 (the programme holding most of their required courses; a tie: undecided) — once, as the courses are given.

Pure data work (no model); see :class:`Programmes` and :func:`infer_programmes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["LIFT", "SHARE", "Programmes", "infer_programmes"]

# A course belongs to a programme whose students take it at least a quarter as often as the programme that takes it
# most. Decided on the synthetic university's seed 5 at its last five terms (never the benchmark's seeds and term):
# every (programme, course) ratio is 0 (another programme's core) or at least 0.48 (the lowest: common core courses a
# programme takes last, in the shortest record windows; 0.87 with seven terms on record). ¼ sits in that gap with
# room on both sides: ½ would cut through it on short windows, and missing a course a student must take hides a
# student at risk, where listing one too many costs an advisor a glance. A registrar's real records also have
# students who take another programme's core as an elective: they stay out unless they are a quarter as many as
# the programme's own.
SHARE = 0.25
# Two groups of courses are one seed group when students who take one take the other at least 1.5 times as often
# as students at large: unrelated courses (a common core against anything) have a lift near 1, courses of one of
# k equal programmes a lift near k ≥ 2.
LIFT = 1.5
_MIN_TAKERS = 5  # a lift from fewer students is noise: such courses join programmes in step 2 only
_ROUNDS = 20  # step 2 settles in a few rounds; the cap only guards against a cycle


@dataclass(frozen=True)
class Programmes:
    """Programmes inferred from the records: ``courses`` each programme's required courses (named by department,
    or by its first course when inferred from co-enrolment); ``homes`` each student's programme — several when
    undecided (tied); a student with no required course on record is not listed and is undecided between all;
    ``open`` the required courses no programme's students have taken (or, from the catalogue, no programme names),
    due for everyone; ``source`` what the programmes came from (``catalogue``: named there; seed groups from
    ``departments`` or ``co-enrolment``; or ``none``: the records show no programmes, and every required course
    is open)."""

    courses: Mapping[str, frozenset[str]]
    homes: Mapping[str, tuple[str, ...]]
    open: frozenset[str]
    source: str

    def programme_of(self, student: str) -> str | None:
        """The student's programme, or None when undecided."""
        home = self.homes.get(student, ())
        return home[0] if len(home) == 1 else None

    def due(self, student: str) -> frozenset[str]:
        """The required courses the student's programme (or every programme they may be in) holds."""
        home = self.homes.get(student) or tuple(self.courses)
        sets = [self.courses[p] for p in home]
        return frozenset.intersection(*sets) | self.open if sets else self.open

    @property
    def undecided(self) -> int:
        """Students on record with required courses whose programme is a tie."""
        return sum(len(h) > 1 for h in self.homes.values())


def infer_programmes(
    taken: pd.DataFrame,
    required: Sequence[str],
    *,
    departments: Mapping[str, str | None] | None = None,
    named: Mapping[str, Sequence[str]] | None = None,
) -> Programmes:
    """The programmes of the students in ``taken`` (columns ``student``, ``course``, ``term_key``: every attempt,
    any mark, any course — only required ones place a student, all count for the length of a record);
    ``departments`` maps required courses to their catalogue department (None or missing: not known); ``named``
    maps required courses to the programmes the catalogue says require them (when any is named, those are the
    programmes: see the module docstring)."""
    codes = tuple(dict.fromkeys(required))
    position = {c: j for j, c in enumerate(codes)}
    rows = taken[taken["course"].isin(position)]
    students = tuple(sorted(set(rows["student"].astype(str))))
    x = np.zeros((len(students), len(codes)), dtype=bool)
    if len(students):
        s_index = {s: i for i, s in enumerate(students)}
        x[rows["student"].astype(str).map(s_index).to_numpy(), rows["course"].map(position).to_numpy()] = True
    terms = taken.groupby(taken["student"].astype(str))["term_key"].nunique().reindex(students, fill_value=0)
    mature = terms.to_numpy() >= np.median(terms.to_numpy()) if len(students) else np.zeros(0, dtype=bool)
    if named and any(named.get(c) for c in codes):
        return _named_programmes(codes, x, students, named)
    seeds, source = _department_groups(codes, x, departments or {})
    if not seeds:
        seeds, source = _co_enrolment_groups(codes, x), "co-enrolment"
    if not seeds:  # no structure on record (one programme, or too few students): every course for everyone
        return Programmes(courses={}, homes={}, open=frozenset(codes), source="none")
    names = [_name(codes, g, departments or {}, source) for g in seeds]
    member = np.zeros((len(seeds), len(codes)), dtype=bool)
    for p, group in enumerate(seeds):
        member[p, group] = True
    member, homes = _refine(x, member, mature)
    kept = member.any(axis=1)
    member, homes = member[kept], homes[:, kept]
    names = [n for n, k in zip(names, kept, strict=True) if k]
    courses = {n: set(np.asarray(codes)[member[p]].tolist()) for p, n in enumerate(names)}
    open_courses = set()
    for j in np.flatnonzero(~member.any(axis=0)).tolist():
        # Nobody's record places the course (nobody took it yet): its department's programme when there is one,
        # else everyone's (a course that builds on one programme's core is still kept from the others by its
        # prerequisites).
        home = courses.get(str((departments or {}).get(codes[j]))) if source == "departments" else None
        (home if home is not None else open_courses).add(codes[j])
    return Programmes(
        courses={n: frozenset(c) for n, c in courses.items()},
        homes={s: tuple(n for n, h in zip(names, homes[i], strict=True) if h) for i, s in enumerate(students)},
        open=frozenset(open_courses),
        source=source,
    )


def _named_programmes(
    codes: Sequence[str], x: np.ndarray, students: Sequence[str], named: Mapping[str, Sequence[str]]
) -> Programmes:
    """The catalogue's programmes, with each student's inferred from the required courses on their record."""
    names = sorted({p for c in codes for p in named.get(c, ())})
    member = np.array([[p in named.get(c, ()) for c in codes] for p in names], dtype=bool)
    homes = _homes(x.astype(np.float32), member)
    return Programmes(
        courses={n: frozenset(np.asarray(codes)[member[p]].tolist()) for p, n in enumerate(names)},
        homes={s: tuple(n for n, h in zip(names, homes[i], strict=True) if h) for i, s in enumerate(students)},
        open=frozenset(c for c in codes if not named.get(c)),
        source="catalogue",
    )


def _department_groups(
    codes: Sequence[str], x: np.ndarray, departments: Mapping[str, str | None]
) -> tuple[list[np.ndarray], str]:
    """The taken required courses grouped by department, when at least two departments are named."""
    taken = x.any(axis=0)
    by_department: dict[str, list[int]] = {}
    for j, code in enumerate(codes):
        name = departments.get(code)
        if name and taken[j]:
            by_department.setdefault(name, []).append(j)
    if len(by_department) < 2:
        return [], ""
    return [np.array(v) for _, v in sorted(by_department.items())], "departments"


def _co_enrolment_groups(codes: Sequence[str], x: np.ndarray) -> list[np.ndarray]:
    """Groups of ≥ 2 courses by average-linkage clustering on co-enrolment lift (merged while lift ≥ LIFT)."""
    counts = x.sum(axis=0)
    usable = np.flatnonzero(counts >= _MIN_TAKERS)
    if usable.size < 2:
        return []
    xf = x[:, usable].astype(np.float64)
    n = counts[usable].astype(np.float64)
    similarity = (xf.T @ xf) * x.shape[0] / np.outer(n, n)
    np.fill_diagonal(similarity, -np.inf)
    members: list[list[int]] = [[j] for j in range(usable.size)]
    while True:
        i, j = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
        if similarity[i, j] < LIFT:
            break
        # Average linkage: the merged group's lift to any other is the size-weighted mean of its two parts'.
        a, b = len(members[i]), len(members[j])
        merged = (a * similarity[i] + b * similarity[j]) / (a + b)
        similarity[i, :], similarity[:, i] = merged, merged
        similarity[j, :], similarity[:, j] = -np.inf, -np.inf
        similarity[i, i] = -np.inf
        members[i] += members[j]
        members[j] = []
    return [usable[np.array(sorted(m))] for m in members if len(m) >= 2]


def _refine(x: np.ndarray, member: np.ndarray, mature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 2: students' programmes (argmax of their courses held; ties kept) and programmes' courses (share ratio
    ≥ SHARE), alternately, from the seed groups; returns (programme × course, student × programme) booleans."""
    xf = x.astype(np.float32)  # counts stay exact in float32 (< 2**24) and the products use BLAS
    homes = _homes(xf, member)
    for _ in range(_ROUNDS):
        decided = (homes.sum(axis=1) == 1) & mature
        size = homes[decided].sum(axis=0).astype(np.float64)
        share = (homes[decided].T.astype(np.float32) @ xf[decided]) / np.maximum(size, 1.0)[:, None]
        top = share.max(axis=0, initial=0.0)
        new_member = (share >= SHARE * top) & (top > 0)
        new_member[size == 0] = False
        new_homes = _homes(xf, new_member)
        if np.array_equal(new_member, member) and np.array_equal(new_homes, homes):
            break
        member, homes = new_member, new_homes
    return member, homes


def _homes(xf: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Each student's programmes: those holding the most of their courses (all of them when none holds any)."""
    held = xf @ member.T.astype(np.float32)
    live = member.any(axis=1)
    held[:, ~live] = -1.0
    return (held == held.max(axis=1, keepdims=True, initial=-1.0)) & live


def _name(codes: Sequence[str], group: np.ndarray, departments: Mapping[str, str | None], source: str) -> str:
    first = codes[int(group[0])]
    if source == "departments":
        return str(departments.get(first))
    return f"programme of {first}"
