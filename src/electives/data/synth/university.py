"""The simulated university: latent strengths and demands, students entering in cohorts and taking their
department's core courses in level order plus electives (prerequisites and term offerings respected, chosen
with only a weak preference for what suits them), and the registrar-style export with the usual mess (W/I
marks, 777/999 placeholders, retakes, duplicated rows, one non-ASCII course name) together with every student's
true expected percent in every course."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from electives.data.synth.config import (
    CAREER_TERMS,
    CHOICE_WEIGHT,
    DEPARTMENT_PULL,
    DUPLICATE_RATE,
    LEVEL_PENALTY,
    MARK_RATES,
    MARKS,
    MU,
    PASS_MARK,
    RETAKE_PROBABILITY,
    SIGMA_ABILITY,
    SIGMA_DIFFICULTY,
    SIGMA_INTERACTION,
    SynthConfig,
)
from electives.data.synth.courses import Courses, build_courses, seats_from_enrolments
from electives.data.synth.departments import DEPARTMENTS
from electives.data.synth.formats import EXPORT_COLUMNS, TRUTH_COLUMNS, letter_grade, term_label


@dataclass(frozen=True, eq=False)
class University:
    """A generated university. Row order of the arrays follows `student_ids` and `course_ids`."""

    config: SynthConfig
    export: pd.DataFrame  # exactly the rows of grades.csv (strings, Year as int)
    catalog: pd.DataFrame  # exactly catalog.csv
    truth: pd.DataFrame  # exactly truth.csv (expected_total rounded to 0.1)
    enrolments: pd.DataFrame  # one row per enrolment, numeric, without the duplicated export rows
    student_ids: np.ndarray  # (n_students,) str serials
    course_ids: np.ndarray  # (n_courses,) str codes, catalogue order
    student_department: np.ndarray  # (n_students,) department prefix of each student
    entry_term: np.ndarray  # (n_students,) index of the entering term
    expected: np.ndarray = field(repr=False)  # (n_students, n_courses) true expected percent, unrounded
    ability: np.ndarray = field(repr=False)  # a_s
    strengths: np.ndarray = field(repr=False)  # u_s, (n_students, n_factors)
    difficulty: np.ndarray = field(repr=False)  # b_c
    demands: np.ndarray = field(repr=False)  # v_c, (n_courses, n_factors)

    @property
    def elective_ids(self) -> np.ndarray:
        return self.course_ids[(self.catalog["elective"] == "yes").to_numpy()]


def generate(config: SynthConfig) -> University:
    """Build the whole university in memory. Pure: the same config gives identical frames and arrays."""
    config.validate()
    rng = np.random.default_rng(config.seed)
    courses = build_courses(config, rng)

    # Cohorts enter in every term of the window, so record lengths range from 1 term to a full career.
    entry_term = np.sort(rng.integers(0, config.n_terms, size=config.n_students))
    student_dept = rng.integers(0, config.n_departments, size=config.n_students)
    student_ids = _student_ids(entry_term, config.start_year)
    expected, ability, strengths, difficulty, demands = _latent(config, courses, student_dept, rng)
    rec = _Simulation(config, courses, expected, student_dept=student_dept, entry_term=entry_term, rng=rng).run()

    s, c, t, mark, observed = rec["s"], rec["c"], rec["t"], rec["mark"], rec["observed"]
    enrolled = np.zeros((courses.ids.size, config.n_terms), dtype=np.int64)
    np.add.at(enrolled, (c, t), 1)
    catalog = courses.catalog.assign(capacity=seats_from_enrolments(enrolled, elective=courses.elective))
    numeric = mark == 0
    years = np.array([term_label(i, config.start_year)[0] for i in range(config.n_terms)], dtype=np.int64)
    seasons = np.array([term_label(i, config.start_year)[1] for i in range(config.n_terms)])
    marks = np.array(MARKS)
    total = np.where(numeric, np.char.mod("%.1f", observed), marks[mark])
    grade = np.where(numeric, letter_grade(observed), np.where(mark <= 2, marks[mark], ""))

    enrolments = pd.DataFrame(
        {
            "student serial": student_ids[s],
            "term_index": t.astype(np.int64),
            "Crs Code": courses.ids[c],
            "expected_total": expected[s, c],
            "total": np.where(numeric, observed, np.nan),
            "mark": marks[mark],
            "retake": rec["retake"],
        }
    )

    # The registrar's export bug: a few rows appear twice, next to each other.
    n_rows = s.size
    n_dup = min(n_rows, max(1, round(DUPLICATE_RATE * n_rows)))
    repeat = np.ones(n_rows, dtype=np.int64)
    repeat[rng.choice(n_rows, size=n_dup, replace=False)] = 2
    idx = np.repeat(np.arange(n_rows), repeat)
    export = pd.DataFrame(
        {
            "student serial": student_ids[s][idx],
            "Year": years[t][idx],
            "term": seasons[t][idx],
            "Crs Code": courses.ids[c][idx],
            "Course Name": courses.names[c][idx],
            "total": total[idx],
            "Grade": grade[idx],
        },
        columns=list(EXPORT_COLUMNS),
    )
    truth = pd.DataFrame(
        {
            "student serial": np.repeat(student_ids, courses.ids.size),
            "Crs Code": np.tile(courses.ids, config.n_students),
            "expected_total": np.round(expected, 1).ravel(),
        },
        columns=list(TRUTH_COLUMNS),
    )
    return University(
        config=config,
        export=export,
        catalog=catalog,
        truth=truth,
        enrolments=enrolments,
        student_ids=student_ids,
        course_ids=courses.ids,
        student_department=np.array([DEPARTMENTS[d].prefix for d in student_dept]),
        entry_term=entry_term,
        expected=expected,
        ability=ability,
        strengths=strengths,
        difficulty=difficulty,
        demands=demands,
    )


def _latent(cfg: SynthConfig, courses: Courses, student_dept: np.ndarray, rng: np.random.Generator):
    k = cfg.n_factors
    n_s, n_c = cfg.n_students, courses.ids.size
    directions = rng.standard_normal((cfg.n_departments, k))
    keep = math.sqrt(1.0 - DEPARTMENT_PULL**2)
    strengths = DEPARTMENT_PULL * directions[student_dept] + keep * rng.standard_normal((n_s, k))
    demands = DEPARTMENT_PULL * directions[courses.dept] + keep * rng.standard_normal((n_c, k))
    ability = rng.standard_normal(n_s)
    # Higher levels are somewhat harder on average.
    difficulty = 0.4 * (courses.level - 2.5) + rng.standard_normal(n_c)
    difficulty = (difficulty - difficulty.mean()) / difficulty.std()

    interaction = strengths @ demands.T
    interaction = (interaction - interaction.mean()) / interaction.std()
    expected = (
        MU + SIGMA_ABILITY * ability[:, None] - SIGMA_DIFFICULTY * difficulty[None, :] + SIGMA_INTERACTION * interaction
    )
    np.clip(expected, 0.0, 100.0, out=expected)
    return expected, ability, strengths, difficulty, demands


# ------------------------------------------------------------------------------------------------- simulation


def _student_ids(entry_term: np.ndarray, start_year: int) -> np.ndarray:
    """Serials like 20190001: calendar year of entry, then a sequence number within that year."""
    entry_year = start_year + (entry_term + 1) // 2
    n = entry_term.size
    seq = np.empty(n, dtype=np.int64)
    for year in np.unique(entry_year):  # students are sorted by entry term, hence by year
        idx = np.flatnonzero(entry_year == year)
        seq[idx] = np.arange(1, idx.size + 1)
    digits = max(4, len(str(int(seq.max()))))
    return np.array([f"{y}{s:0{digits}d}" for y, s in zip(entry_year, seq, strict=True)])


class _Simulation:
    """Term by term: each active student's core courses in program order, the retakes due, then electives to
    fill a 4-5 course load. The draws from ``rng`` come in a fixed order within each term (load, choice noise,
    grades, marks, retakes): reordering them changes every generated file."""

    def __init__(
        self,
        cfg: SynthConfig,
        courses: Courses,
        expected: np.ndarray,
        *,
        student_dept: np.ndarray,
        entry_term: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        self.cfg, self.courses, self.expected, self.rng = cfg, courses, expected, rng
        self.student_dept, self.entry_term = student_dept, entry_term
        n_s, n_c = expected.shape
        self.el = np.flatnonzero(courses.elective)
        self.el_pre = courses.prereqs[self.el]
        self.el_level = courses.level[self.el]
        el_expected = expected[:, self.el]
        centred = el_expected - el_expected.mean(axis=1, keepdims=True)
        self.preference = CHOICE_WEIGHT * centred / max(centred.std(), 1e-9)

        prog_len = np.array([p.size for p in courses.programs])
        self.programs = np.full((cfg.n_departments, prog_len.max()), -1, dtype=np.int64)
        for d, p in enumerate(courses.programs):
            self.programs[d, : p.size] = p
        self.s_prog_len = prog_len[student_dept]

        self.passed = np.zeros((n_s, n_c), dtype=bool)
        self.taken_el = np.zeros((n_s, self.el.size), dtype=bool)
        self.done_core = np.zeros(n_s, dtype=np.int64)  # position in the program
        self.pend_s = np.zeros(0, dtype=np.int64)  # scheduled retakes: student, course, term
        self.pend_c = np.zeros(0, dtype=np.int64)
        self.pend_t = np.zeros(0, dtype=np.int64)
        self.mark_cdf = np.cumsum(MARK_RATES)

    def run(self) -> dict[str, np.ndarray]:
        """Every enrolment as arrays s, c, t, retake, observed, mark; sorted by student, term, course."""
        out: dict[str, list[np.ndarray]] = {k: [] for k in ("s", "c", "t", "retake", "observed", "mark")}
        for t in range(self.cfg.n_terms):
            career = t - self.entry_term
            active = (career >= 0) & (career < CAREER_TERMS)
            act = np.flatnonzero(active)
            if act.size == 0:
                continue
            core_s, core_c, n_core = self._core(act, career)
            re_s, re_c = self._due_retakes(t, active)
            el_s, el_c = self._electives(t, act, career, n_core=n_core, re_s=re_s)

            s = np.concatenate([*core_s, re_s, el_s])
            c = np.concatenate([*core_c, re_c, el_c])
            retake = np.concatenate([np.zeros(s.size - re_s.size - el_s.size, bool), np.ones(re_s.size, bool)])
            retake = np.concatenate([retake, np.zeros(el_s.size, bool)])
            observed, mark = self._grades(t, s, c, retake)
            for key, val in (("s", s), ("c", c), ("retake", retake), ("observed", observed), ("mark", mark)):
                out[key].append(val)
            out["t"].append(np.full(s.size, t))

        res = {k: np.concatenate(v) for k, v in out.items()}
        order = np.lexsort((res["c"], res["t"], res["s"]))
        return {k: v[order] for k, v in res.items()}

    def _core(self, act: np.ndarray, career: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Core enrolments (students, courses per slot) and their number per active student: the program is
        spread evenly over the 8 terms of a career."""
        target = ((career[act] + 1) * self.s_prog_len[act]) // CAREER_TERMS
        n_core = np.maximum(target - self.done_core[act], 0)
        core_s, core_c = [], []
        for j in range(int(n_core.max(initial=0))):
            m = n_core > j
            core_s.append(act[m])
            core_c.append(self.programs[self.student_dept[act[m]], self.done_core[act[m]] + j])
        self.done_core[act] += n_core
        return core_s, core_c, n_core

    def _due_retakes(self, t: int, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Retakes due now; postponed while not offered, dropped once the student has left."""
        pend_s, pend_c, pend_t = self.pend_s, self.pend_c, self.pend_t
        due = pend_t == t
        ok = due & active[pend_s] & self.courses.offered[pend_c, t % 2]
        later = due & ~ok & (t + 1 < self.entry_term[pend_s] + CAREER_TERMS)
        re_s, re_c = pend_s[ok], pend_c[ok]
        pend_t = np.where(later, t + 1, pend_t)
        keep = ~due | later
        self.pend_s, self.pend_c, self.pend_t = pend_s[keep], pend_c[keep], pend_t[keep]
        return re_s, re_c

    def _electives(
        self, t: int, act: np.ndarray, career: np.ndarray, *, n_core: np.ndarray, re_s: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Electives fill the rest of a 4-5 course load: Gumbel-top-k sampling from a weak preference."""
        rng, el = self.rng, self.el
        load = rng.integers(4, 6, size=act.size)
        n_re = np.bincount(np.searchsorted(act, re_s), minlength=act.size)
        n_el = np.maximum(load - n_core - n_re, 0)
        eligible = ~self.taken_el[act] & self.courses.offered[el, t % 2][None, :]
        for j in range(self.el_pre.shape[1]):
            pre = self.el_pre[:, j]
            eligible &= (pre < 0)[None, :] | self.passed[np.ix_(act, np.maximum(pre, 0))]
        year = career[act] // 2 + 1
        score = self.preference[act] - LEVEL_PENALTY * np.maximum(self.el_level[None, :] - (year[:, None] + 1), 0)
        score = score + rng.gumbel(size=score.shape)
        score[~eligible] = -np.inf
        k_max = int(n_el.max(initial=0))
        order = np.argsort(-score, axis=1, kind="stable")[:, :k_max]
        pick = (np.arange(k_max)[None, :] < n_el[:, None]) & np.take_along_axis(eligible, order, axis=1)
        rows, slot = np.nonzero(pick)
        self.taken_el[act[rows], order[rows, slot]] = True
        return act[rows], el[order[rows, slot]]

    def _grades(self, t: int, s: np.ndarray, c: np.ndarray, retake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Observed totals and mark codes of this term's enrolments; passes are recorded and some failures are
        retaken (once) in a later term."""
        rng = self.rng
        observed = np.round(np.clip(self.expected[s, c] + rng.normal(0.0, self.cfg.noise_sd, s.size), 0.0, 100.0), 1)
        mark = np.searchsorted(self.mark_cdf, rng.random(s.size), side="right") + 1
        mark[mark >= len(MARKS)] = 0
        numeric = mark == 0
        self.passed[s[numeric & (observed >= PASS_MARK)], c[numeric & (observed >= PASS_MARK)]] = True

        fail = numeric & (observed < PASS_MARK) & ~retake & (rng.random(s.size) < RETAKE_PROBABILITY)
        fail &= t + 1 < self.entry_term[s] + CAREER_TERMS
        self.pend_s = np.concatenate([self.pend_s, s[fail]])
        self.pend_c = np.concatenate([self.pend_c, c[fail]])
        self.pend_t = np.concatenate([self.pend_t, np.full(int(fail.sum()), t + 1)])
        return observed, mark
