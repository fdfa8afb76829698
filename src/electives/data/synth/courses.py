"""The course catalogue of a synthetic university: codes and names per department and level, term offerings,
prerequisites that always point to a lower level (so they cannot cycle), each department's program of core
courses, credits, descriptions and the electives' seats (:func:`seats_from_enrolments`, once the simulation has
said how many took each)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from electives.data.synth.config import SynthConfig
from electives.data.synth.departments import DEPARTMENTS, Department, describe_course
from electives.data.synth.formats import CATALOG_COLUMNS, SEASONS

_SEAT_STEP = 5  # seats come in multiples of 5
_MIN_SEATS = 10  # the smallest class an elective runs with


@dataclass(frozen=True)
class Courses:
    """The catalogue as arrays (catalogue order) for the simulation, and as the frame of catalog.csv."""

    ids: np.ndarray
    names: np.ndarray
    dept: np.ndarray  # department index
    level: np.ndarray  # 1..4
    elective: np.ndarray  # bool
    offered: np.ndarray  # (n_courses, 2) bool: Fall, Spring
    prereqs: np.ndarray  # (n_courses, max_prereqs) course indices, -1 padded
    programs: list[np.ndarray]  # per department: core course indices in the order they are taken
    catalog: pd.DataFrame


def build_courses(cfg: SynthConfig, rng: np.random.Generator) -> Courses:
    """The catalogue of ``cfg``; the draws from ``rng`` come in a fixed order (offerings, prerequisites, credits,
    descriptions): reordering them changes every generated file."""
    depts = DEPARTMENTS[: cfg.n_departments]
    rows = _course_rows(cfg, depts)
    n = len(rows)
    ids = np.array([r["id"] for r in rows])
    names = np.array([r["name"] for r in rows], dtype=object)
    dept = np.array([r["dept"] for r in rows])
    level = np.array([r["level"] for r in rows])
    elective = np.array([r["elective"] for r in rows])

    # Exactly one non-ASCII name (latin-1 encodable), on the first elective of the 2nd department.
    special_dept = min(1, cfg.n_departments - 1)
    special = int(np.flatnonzero(elective & (dept == special_dept))[0])
    names[special] = depts[special_dept].non_ascii

    # Offerings: core every term; electives mostly both, some only in Fall or only in Spring.
    offered = np.ones((n, 2), dtype=bool)
    pattern = rng.choice(3, size=n, p=[0.6, 0.2, 0.2])
    offered[elective & (pattern == 1), 1] = False
    offered[elective & (pattern == 2), 0] = False

    # Common first-year core: the first 100-level course of every department is in every program, so
    # electives that build on it are open to all departments.
    common = np.array([np.flatnonzero(~elective & (dept == d) & (level == 1))[0] for d in range(len(depts))])
    prereqs = _prerequisites(elective=elective, dept=dept, level=level, common=common, rng=rng)

    # Programs: the department's core plus the common core of the other departments, in level order.
    programs = []
    for d in range(len(depts)):
        prog = np.union1d(np.flatnonzero(~elective & (dept == d)), common)
        programs.append(prog[np.lexsort((ids[prog], level[prog]))])

    credits = np.where(elective, rng.choice([2, 3, 4], size=n, p=[0.25, 0.5, 0.25]), 3)
    credits[~elective & (rng.random(n) < 0.2)] = 4
    descriptions = [
        describe_course(str(names[c]), level=int(level[c]), elective=bool(elective[c]), dep=depts[dept[c]], rng=rng)
        for c in range(n)
    ]
    catalog = pd.DataFrame(
        {
            "course_id": ids,
            "name": names.astype(str),
            "elective": np.where(elective, "yes", "no"),
            "prerequisites": [";".join(ids[p] for p in pre if p >= 0) for pre in prereqs],
            "credits": credits.astype(np.int64),
            "department": [depts[d].name for d in dept],
            "terms_offered": [";".join(s for s, ok in zip(SEASONS, o, strict=True) if ok) for o in offered],
            "description": descriptions,
            "capacity": pd.array([None] * n, dtype="Int64"),  # set by seats_from_enrolments after the simulation
        },
        columns=list(CATALOG_COLUMNS),
    )
    return Courses(ids, names.astype(str), dept, level, elective, offered, prereqs, programs, catalog)


def seats_from_enrolments(enrolled: np.ndarray, *, elective: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """The catalogue's ``capacity`` column: an elective's seats per offering are its largest class in the window
    (``enrolled``: (n_courses, n_terms) enrolments), rounded up to a multiple of 5 and at least 10 — rooms are
    booked for the largest class a course has had. Core courses have no limit (empty). Demand for a term comes
    from what each student would do best in, not from the weak preferences that filled past classes, so some
    electives are oversubscribed and others are not: the planning problem a registrar has."""
    largest = enrolled.max(axis=1, initial=0)
    seats = np.maximum(_MIN_SEATS, -(-largest // _SEAT_STEP) * _SEAT_STEP)
    return pd.array([int(n) if e else None for n, e in zip(seats, elective, strict=True)], dtype="Int64")


def _course_rows(cfg: SynthConfig, depts: tuple[Department, ...]) -> list[dict]:
    """One dict per course (dept, level, elective, num, name, id), sorted by id; no random draws."""
    core_per_dept = _split(cfg.n_courses - cfg.n_electives, cfg.n_departments)
    el_per_dept = _split(cfg.n_electives, cfg.n_departments)

    rows: list[dict] = []
    for d, dep in enumerate(depts):
        # Core spread evenly over levels 1-4; electives cycle over levels 2-4.
        core_levels = [1 + (4 * i) // core_per_dept[d] for i in range(core_per_dept[d])]
        el_levels = sorted(2 + (j % 3) for j in range(el_per_dept[d]))
        for level in range(1, 5):
            n_core_l = core_levels.count(level)
            n_el_l = el_levels.count(level)
            core_nums, el_nums = _numbers(n_core_l, n_el_l)
            for kind, nums in (("core", core_nums), ("elective", el_nums)):
                for num in nums:
                    rows.append({"dept": d, "level": level, "elective": kind == "elective", "num": num})
        core_i = el_i = 0
        for row in rows:
            if row["dept"] != d:
                continue
            if row["elective"]:
                row["name"] = _pool_name(dep.electives, el_i)
                el_i += 1
            else:
                row["name"] = _pool_name(dep.core, core_i)
                core_i += 1
            row["id"] = f"{dep.prefix}{row['level']}{row['num']:02d}"

    rows.sort(key=lambda r: r["id"])
    return rows


def _prerequisites(
    *, elective: np.ndarray, dept: np.ndarray, level: np.ndarray, common: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(n_courses, max_prereqs) course indices, -1 padded. Prerequisites always point to a lower level, so chains
    go up in level and cannot cycle. Few electives need a department-only core course: most must stay reachable
    for everyone so that there is a choice."""
    n = elective.size
    prereq_lists: list[list[int]] = [[] for _ in range(n)]
    for c in range(n):
        own_core = np.flatnonzero(~elective & (dept == dept[c]) & (level < level[c]))
        if not elective[c]:
            if level[c] > 1:
                prev = np.flatnonzero(~elective & (dept == dept[c]) & (level == level[c] - 1))
                prereq_lists[c].append(int(rng.choice(prev if prev.size else own_core)))
            continue
        lower_el = np.flatnonzero(elective & (level < level[c]))
        own_el = lower_el[dept[lower_el] == dept[c]]
        if own_el.size and rng.random() < 0.8:
            lower_el = own_el  # chains mostly stay within a department
        base = int(common[dept[c]] if rng.random() < 0.75 else rng.choice(common))
        u = rng.random()
        if level[c] == 2:
            if u < 0.5:
                prereq_lists[c].append(base)
        elif u < 0.35 and lower_el.size:
            prereq_lists[c].append(int(rng.choice(lower_el)))
        elif u < 0.6:
            prereq_lists[c].append(base)
        elif u < 0.75 and own_core.size:
            prereq_lists[c].append(int(rng.choice(own_core[level[own_core] <= level[c] - 1])))
        elif u < 0.85 and lower_el.size:
            prereq_lists[c] += [int(rng.choice(lower_el)), int(common[dept[c]])]
    max_pre = max(1, max(len(p) for p in prereq_lists))
    prereqs = np.full((n, max_pre), -1, dtype=np.int64)
    for c, pre in enumerate(prereq_lists):
        pre = sorted(set(pre))
        prereqs[c, : len(pre)] = pre
    return prereqs


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def _roman(n: int) -> str:
    numerals = ((10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))
    out = ""
    for value, letter in numerals:
        while n >= value:
            out += letter
            n -= value
    return out


def _pool_name(pool: tuple[str, ...], i: int) -> str:
    # Larger configs than the pools reuse names with a numeral so that names stay unique.
    base = pool[i % len(pool)]
    return base if i < len(pool) else f"{base} {_roman(i // len(pool) + 1)}"


def _numbers(n_core: int, n_electives: int) -> tuple[list[int], list[int]]:
    """Course numbers within one department level: core 01, 02, ...; electives from 10 in steps of 5."""
    core = list(range(1, n_core + 1))
    start = max(10, 10 * math.ceil((n_core + 1) / 10))
    for step in (5, 1):
        if start + step * (n_electives - 1) <= 99:
            return core, [start + step * j for j in range(n_electives)]
    if n_core + n_electives > 99:
        raise ValueError("too many courses per department and level for 3-digit course codes")
    return core, list(range(n_core + 1, n_core + n_electives + 1))
