"""A deterministic synthetic university: the built-in demo data set and the ground truth for evaluation.

`generate(SynthConfig(...))` simulates students entering in cohorts, taking their department's core courses in
level order plus electives (prerequisites and term offerings respected, chosen with only a weak preference for
what suits them), and returns a registrar-style export with the usual mess (W/I marks, 777/999 placeholders,
retakes, duplicated rows, one non-ASCII course name) together with every student's true expected percent in
every course. `write(university, out_dir)` puts it on disk as CSV files plus a README.

Latent model: true = clip(mu + sigma_a*a_s - sigma_b*b_c + sigma_i*z(u_s . v_c), 0, 100), where a_s is general
ability, b_c difficulty, u_s/v_c latent strengths/demands (pulled towards a per-department direction) and z()
standardises the interaction over all student x course pairs. Observed = clip(true + N(0, noise_sd), 0, 100).
"""

from __future__ import annotations

import math
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "CATALOG_COLUMNS",
    "EXPORT_COLUMNS",
    "EXPORT_MAPPING",
    "EXPORT_SCALE",
    "TRUTH_COLUMNS",
    "SynthConfig",
    "University",
    "generate",
    "import_flags",
    "letter_grade",
    "write",
    "write_large",
]

EXPORT_COLUMNS = ("student serial", "Year", "term", "Crs Code", "Course Name", "total", "Grade")
CATALOG_COLUMNS = (
    "course_id",
    "name",
    "elective",
    "prerequisites",
    "credits",
    "department",
    "terms_offered",
    "description",
)
TRUTH_COLUMNS = ("student serial", "Crs Code", "expected_total")
# How the importer reads grades.csv: importer field -> export column(s), on the percent scale.
EXPORT_MAPPING = {
    "student": "student serial",
    "term": "Year+term",
    "course": "Crs Code",
    "course_name": "Course Name",
    "grade": "total",
}
EXPORT_SCALE = "percent"


def import_flags() -> list[str]:
    """The `electives import` flags that read grades.csv (`--map FIELD=EXPR ... --scale percent`)."""
    return [a for field, expr in EXPORT_MAPPING.items() for a in ("--map", f"{field}={expr}")] + [
        "--scale",
        EXPORT_SCALE,
    ]


SEASONS = ("Fall", "Spring")
CAREER_TERMS = 8  # students leave after four academic years
PASS_MARK = 60.0

# Latent-model scale (percent points). sqrt(4.5² + 4.5² + 8²) ≈ 10 = sd of true totals; the interaction is the
# largest part so that a student's best electives are clearly better than random ones.
MU = 75.0
SIGMA_ABILITY = 4.5
SIGMA_DIFFICULTY = 4.5
SIGMA_INTERACTION = 8.0
DEPARTMENT_PULL = 0.55  # how strongly u_s / v_c lean towards their department's direction

# Enrolment behaviour.
CHOICE_WEIGHT = 0.4  # weak preference: logit weight per within-student sd of the true elective grades
LEVEL_PENALTY = 1.0  # logit penalty per level above (career year + 1): freshmen rarely take 400-level courses
RETAKE_PROBABILITY = 0.35
# Mark codes and their share of rows: W, I, 777, 999 (the registrar's placeholders).
MARKS = ("", "W", "I", "777", "999")
MARK_RATES = (0.003, 0.003, 0.003, 0.003)
DUPLICATE_RATE = 0.001

# AAST-like letter bands: lower bounds, ascending, and the letter for each band (F below the first bound).
GRADE_BOUNDS = np.array([60.0, 64.0, 67.0, 70.0, 73.0, 76.0, 80.0, 84.0, 89.0, 93.0, 97.0])
GRADE_LETTERS = np.array(["F", "D", "D+", "C-", "C", "C+", "B-", "B", "B+", "A-", "A", "A+"])


@dataclass(frozen=True)
class _Department:
    prefix: str
    name: str
    core: tuple[str, ...]  # names in rough level order
    electives: tuple[str, ...]
    topics: tuple[str, ...]
    non_ascii: str  # used for the single non-ASCII course name


_DEPARTMENTS = (
    _Department(
        "CS",
        "Computer Science",
        (
            "Introduction to Programming",
            "Discrete Structures",
            "Object-Oriented Programming",
            "Data Structures",
            "Computer Organization",
            "Algorithms",
            "Database Systems",
            "Operating Systems",
            "Software Engineering",
            "Computer Networks",
            "Theory of Computation",
            "Compiler Construction",
            "Senior Project in Computing",
            "Parallel Computing",
        ),
        (
            "Web Development",
            "Machine Learning",
            "Computer Graphics",
            "Information Security",
            "Mobile Application Development",
            "Human-Computer Interaction",
            "Cloud Computing",
            "Natural Language Processing",
            "Computer Vision",
            "Distributed Systems",
            "Game Programming",
            "Data Mining",
        ),
        (
            "algorithm design",
            "data abstraction",
            "software testing",
            "complexity analysis",
            "memory management",
            "concurrency",
            "program correctness",
            "system design",
        ),
        "Théorie des Langages",
    ),
    _Department(
        "MA",
        "Mathematics",
        (
            "Calculus I",
            "Linear Algebra",
            "Calculus II",
            "Differential Equations",
            "Probability",
            "Multivariable Calculus",
            "Real Analysis",
            "Abstract Algebra",
            "Mathematical Statistics",
            "Complex Analysis",
            "Numerical Analysis",
            "Topology",
            "Partial Differential Equations",
            "Functional Analysis",
        ),
        (
            "Number Theory",
            "Combinatorics",
            "Graph Theory",
            "Operations Research",
            "Cryptography",
            "Stochastic Processes",
            "Optimization",
            "Mathematical Modelling",
            "Game Theory",
            "Time Series Analysis",
            "Mathematical Logic",
            "Dynamical Systems",
        ),
        (
            "rigorous proof",
            "limits and continuity",
            "matrix methods",
            "estimation",
            "convergence",
            "numerical approximation",
            "abstract structures",
            "modelling",
        ),
        "Géométrie Différentielle",
    ),
    _Department(
        "EE",
        "Electrical Engineering",
        (
            "Circuit Analysis I",
            "Digital Logic Design",
            "Circuit Analysis II",
            "Electronics I",
            "Signals and Systems",
            "Electromagnetics",
            "Electronics II",
            "Control Systems",
            "Microprocessors",
            "Communication Systems",
            "Power Systems",
            "Digital Signal Processing",
            "Electrical Design Project",
            "Electric Machines",
        ),
        (
            "Embedded Systems",
            "Renewable Energy Systems",
            "Wireless Communications",
            "Robotics",
            "VLSI Design",
            "Antenna Theory",
            "Power Electronics",
            "Optical Communications",
            "Biomedical Instrumentation",
            "Digital Image Processing",
            "Instrumentation and Measurement",
            "Smart Grids",
        ),
        (
            "circuit modelling",
            "frequency-domain analysis",
            "feedback design",
            "laboratory measurement",
            "hardware prototyping",
            "signal representation",
            "energy conversion",
            "system stability",
        ),
        "Électronique Appliquée",
    ),
    _Department(
        "BA",
        "Business Administration",
        (
            "Principles of Management",
            "Financial Accounting",
            "Microeconomics",
            "Macroeconomics",
            "Managerial Accounting",
            "Business Statistics",
            "Marketing Management",
            "Corporate Finance",
            "Organizational Behavior",
            "Operations Management",
            "Business Law",
            "Strategic Management",
            "Business Capstone",
            "International Business",
        ),
        (
            "Entrepreneurship",
            "Digital Marketing",
            "Supply Chain Management",
            "Investment Analysis",
            "Human Resource Management",
            "Business Ethics",
            "Project Management",
            "Consumer Behavior",
            "Negotiation",
            "Risk Management",
            "Business Analytics",
            "Leadership",
        ),
        (
            "case analysis",
            "financial reporting",
            "market research",
            "decision making",
            "team leadership",
            "budgeting",
            "competitive strategy",
            "business communication",
        ),
        "Économie Internationale",
    ),
    _Department(
        "ME",
        "Mechanical Engineering",
        (
            "Engineering Drawing",
            "Statics",
            "Dynamics",
            "Thermodynamics I",
            "Strength of Materials",
            "Fluid Mechanics",
            "Thermodynamics II",
            "Machine Design",
            "Heat Transfer",
            "Manufacturing Processes",
            "Mechanical Vibrations",
            "Mechanical Design Project",
            "Materials Science",
            "Mechatronics",
        ),
        (
            "Automotive Engineering",
            "Finite Element Analysis",
            "Refrigeration and Air Conditioning",
            "Composite Materials",
            "Turbomachinery",
            "Computer-Aided Design",
            "Biomechanics",
            "Additive Manufacturing",
            "Marine Engineering",
            "Tribology",
            "Energy Systems",
            "Quality Control",
        ),
        (
            "force analysis",
            "energy balances",
            "material behaviour",
            "design for manufacture",
            "experimental methods",
            "fluid flow",
            "failure analysis",
            "mechanical modelling",
        ),
        "Mécanique des Fluides Avancée",
    ),
    _Department(
        "PH",
        "Physics",
        (
            "General Physics I",
            "General Physics II",
            "Classical Mechanics",
            "Modern Physics",
            "Waves and Optics",
            "Electricity and Magnetism",
            "Mathematical Physics",
            "Quantum Mechanics",
            "Statistical Mechanics",
            "Solid State Physics",
            "Nuclear Physics",
            "Advanced Physics Laboratory",
            "Physics Research Project",
            "Relativity",
        ),
        (
            "Astrophysics",
            "Medical Physics",
            "Laser Physics",
            "Computational Physics",
            "Plasma Physics",
            "Particle Physics",
            "Acoustics",
            "Atmospheric Physics",
            "Biophysics",
            "Semiconductor Physics",
            "Cosmology",
            "Photonics",
        ),
        (
            "physical modelling",
            "conservation laws",
            "experimental error",
            "field theory",
            "approximation methods",
            "laboratory technique",
            "dimensional analysis",
            "computational methods",
        ),
        "Physique Nucléaire Appliquée",
    ),
)

_LEVEL_WORDS = {1: "An introductory", 2: "An intermediate", 3: "An advanced", 4: "A senior-level"}
_ACTIVITIES = ("weekly problem sets", "a semester-long team project", "short written reports", "tutorial sessions")
_DEPT_ACTIVITY = {
    "CS": "guided programming exercises",
    "MA": "weekly proof-writing exercises",
    "EE": "hands-on laboratory sessions",
    "BA": "case studies and class discussion",
    "ME": "workshop and laboratory sessions",
    "PH": "hands-on laboratory sessions",
}
_ASSESSMENTS = (
    "a midterm and a final examination",
    "coursework and a final examination",
    "a project report and an oral presentation",
    "quizzes, assignments and a final examination",
)


@dataclass(frozen=True)
class SynthConfig:
    """Size and seed of a synthetic university. Same config → identical output."""

    n_students: int = 2000
    n_courses: int = 80
    n_electives: int = 30
    n_departments: int = 4  # 3–4 for the demo; up to 6 are defined
    n_terms: int = 8  # length of the export window, alternating Fall, Spring
    n_factors: int = 4  # latent dimensions
    seed: int = 2017
    noise_sd: float = 5.0  # percent points of noise on observed totals
    start_year: int = 2019  # calendar year of the first (Fall) term

    def validate(self) -> None:
        if self.n_students < 1:
            raise ValueError("n_students must be at least 1")
        if not 1 <= self.n_departments <= len(_DEPARTMENTS):
            raise ValueError(f"n_departments must be between 1 and {len(_DEPARTMENTS)}")
        n_core = self.n_courses - self.n_electives
        if self.n_electives < 1 or n_core < 2 * self.n_departments:
            raise ValueError("need at least one elective and two core courses per department")
        if self.n_terms < 1 or self.n_factors < 1 or self.noise_sd < 0:
            raise ValueError("n_terms and n_factors must be positive and noise_sd non-negative")


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


def letter_grade(total: np.ndarray) -> np.ndarray:
    """Letter for each percent total (AAST-like bands)."""
    return GRADE_LETTERS[np.searchsorted(GRADE_BOUNDS, np.asarray(total, dtype=float), side="right")]


def term_label(term_index: int, start_year: int) -> tuple[int, str]:
    """(calendar year, season) of a term: 0 → (start, Fall), 1 → (start+1, Spring), 2 → (start+1, Fall)..."""
    return start_year + (term_index + 1) // 2, SEASONS[term_index % 2]


# --------------------------------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class _Courses:
    ids: np.ndarray
    names: np.ndarray
    dept: np.ndarray  # department index
    level: np.ndarray  # 1..4
    elective: np.ndarray  # bool
    offered: np.ndarray  # (n_courses, 2) bool: Fall, Spring
    prereqs: np.ndarray  # (n_courses, max_prereqs) course indices, -1 padded
    programs: list[np.ndarray]  # per department: core course indices in the order they are taken
    catalog: pd.DataFrame


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


def _build_courses(cfg: SynthConfig, rng: np.random.Generator) -> _Courses:
    depts = _DEPARTMENTS[: cfg.n_departments]
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

    # Prerequisites always point to a lower level, so chains go up in level and cannot cycle. Few electives
    # need a department-only core course: most must stay reachable for everyone so that there is a choice.
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

    # Programs: the department's core plus the common core of the other departments, in level order.
    programs = []
    for d in range(len(depts)):
        prog = np.union1d(np.flatnonzero(~elective & (dept == d)), common)
        programs.append(prog[np.lexsort((ids[prog], level[prog]))])

    credits = np.where(elective, rng.choice([2, 3, 4], size=n, p=[0.25, 0.5, 0.25]), 3)
    credits[~elective & (rng.random(n) < 0.2)] = 4
    descriptions = [_describe(str(names[c]), int(level[c]), bool(elective[c]), depts[dept[c]], rng) for c in range(n)]
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
        },
        columns=list(CATALOG_COLUMNS),
    )
    return _Courses(ids, names.astype(str), dept, level, elective, offered, prereqs, programs, catalog)


def _describe(name: str, level: int, elective: bool, dep: _Department, rng: np.random.Generator) -> str:
    t1, t2 = (dep.topics[i] for i in rng.choice(len(dep.topics), size=2, replace=False))
    activities = (*_ACTIVITIES, _DEPT_ACTIVITY[dep.prefix])
    activity = activities[rng.integers(len(activities))]
    assessment = _ASSESSMENTS[rng.integers(len(_ASSESSMENTS))]
    kind = "elective" if elective else "core"
    templates = [
        f"{_LEVEL_WORDS[level]} {kind} course in {name} covering {t1} and {t2}, with {activity}.",
        f"Students in {name} study {t1} and {t2} through {activity}, assessed by {assessment}.",
    ]
    if level > 1:
        templates.append(
            f"{name} builds on earlier {dep.name} courses to develop {t1} and {t2}; assessed by {assessment}."
        )
    return templates[rng.integers(len(templates))]


# ----------------------------------------------------------------------------------------------- latent model


def _latent(cfg: SynthConfig, courses: _Courses, student_dept: np.ndarray, rng: np.random.Generator):
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


def _simulate(
    cfg: SynthConfig,
    courses: _Courses,
    expected: np.ndarray,
    student_dept: np.ndarray,
    entry_term: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    n_s, n_c = expected.shape
    el = np.flatnonzero(courses.elective)
    el_pre = courses.prereqs[el]
    el_level = courses.level[el]
    el_expected = expected[:, el]
    centred = el_expected - el_expected.mean(axis=1, keepdims=True)
    preference = CHOICE_WEIGHT * centred / max(centred.std(), 1e-9)

    prog_len = np.array([p.size for p in courses.programs])
    max_prog = prog_len.max()
    programs = np.full((cfg.n_departments, max_prog), -1, dtype=np.int64)
    for d, p in enumerate(courses.programs):
        programs[d, : p.size] = p
    s_prog_len = prog_len[student_dept]

    passed = np.zeros((n_s, n_c), dtype=bool)
    taken_el = np.zeros((n_s, el.size), dtype=bool)
    done_core = np.zeros(n_s, dtype=np.int64)  # position in the program
    pend_s = np.zeros(0, dtype=np.int64)  # scheduled retakes: student, course, term
    pend_c = np.zeros(0, dtype=np.int64)
    pend_t = np.zeros(0, dtype=np.int64)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("s", "c", "t", "retake", "observed", "mark")}

    mark_cdf = np.cumsum(MARK_RATES)
    for t in range(cfg.n_terms):
        season = t % 2
        career = t - entry_term
        active = (career >= 0) & (career < CAREER_TERMS)
        act = np.flatnonzero(active)
        if act.size == 0:
            continue

        # Core: the program is spread evenly over the 8 terms of a career.
        target = ((career[act] + 1) * s_prog_len[act]) // CAREER_TERMS
        n_core = np.maximum(target - done_core[act], 0)
        core_s, core_c = [], []
        for j in range(int(n_core.max(initial=0))):
            m = n_core > j
            core_s.append(act[m])
            core_c.append(programs[student_dept[act[m]], done_core[act[m]] + j])
        done_core[act] += n_core

        # Retakes due now; postponed while not offered, dropped once the student has left.
        due = pend_t == t
        ok = due & active[pend_s] & courses.offered[pend_c, season]
        later = due & ~ok & (t + 1 < entry_term[pend_s] + CAREER_TERMS)
        re_s, re_c = pend_s[ok], pend_c[ok]
        pend_t = np.where(later, t + 1, pend_t)
        keep = ~due | later
        pend_s, pend_c, pend_t = pend_s[keep], pend_c[keep], pend_t[keep]

        # Electives fill the rest of a 4-5 course load: Gumbel-top-k sampling from a weak preference.
        load = rng.integers(4, 6, size=act.size)
        n_re = np.bincount(np.searchsorted(act, re_s), minlength=act.size)
        n_el = np.maximum(load - n_core - n_re, 0)
        eligible = ~taken_el[act] & courses.offered[el, season][None, :]
        for j in range(el_pre.shape[1]):
            pre = el_pre[:, j]
            eligible &= (pre < 0)[None, :] | passed[np.ix_(act, np.maximum(pre, 0))]
        year = career[act] // 2 + 1
        score = preference[act] - LEVEL_PENALTY * np.maximum(el_level[None, :] - (year[:, None] + 1), 0)
        score = score + rng.gumbel(size=score.shape)
        score[~eligible] = -np.inf
        k_max = int(n_el.max(initial=0))
        order = np.argsort(-score, axis=1, kind="stable")[:, :k_max]
        pick = (np.arange(k_max)[None, :] < n_el[:, None]) & np.take_along_axis(eligible, order, axis=1)
        rows, slot = np.nonzero(pick)
        el_s, el_c = act[rows], el[order[rows, slot]]
        taken_el[act[rows], order[rows, slot]] = True

        s = np.concatenate([*core_s, re_s, el_s])
        c = np.concatenate([*core_c, re_c, el_c])
        retake = np.concatenate([np.zeros(s.size - re_s.size - el_s.size, bool), np.ones(re_s.size, bool)])
        retake = np.concatenate([retake, np.zeros(el_s.size, bool)])
        observed = np.round(np.clip(expected[s, c] + rng.normal(0.0, cfg.noise_sd, s.size), 0.0, 100.0), 1)
        mark = np.searchsorted(mark_cdf, rng.random(s.size), side="right") + 1
        mark[mark >= len(MARKS)] = 0
        numeric = mark == 0
        passed[s[numeric & (observed >= PASS_MARK)], c[numeric & (observed >= PASS_MARK)]] = True

        # Some failures are retaken (once) in a later term.
        fail = numeric & (observed < PASS_MARK) & ~retake & (rng.random(s.size) < RETAKE_PROBABILITY)
        fail &= t + 1 < entry_term[s] + CAREER_TERMS
        pend_s = np.concatenate([pend_s, s[fail]])
        pend_c = np.concatenate([pend_c, c[fail]])
        pend_t = np.concatenate([pend_t, np.full(int(fail.sum()), t + 1)])

        for key, val in (("s", s), ("c", c), ("retake", retake), ("observed", observed), ("mark", mark)):
            out[key].append(val)
        out["t"].append(np.full(s.size, t))

    res = {k: np.concatenate(v) for k, v in out.items()}
    order = np.lexsort((res["c"], res["t"], res["s"]))
    return {k: v[order] for k, v in res.items()}


# ---------------------------------------------------------------------------------------------------- public


def generate(config: SynthConfig) -> University:
    """Build the whole university in memory. Pure: the same config gives identical frames and arrays."""
    config.validate()
    rng = np.random.default_rng(config.seed)
    courses = _build_courses(config, rng)

    # Cohorts enter in every term of the window, so record lengths range from 1 term to a full career.
    entry_term = np.sort(rng.integers(0, config.n_terms, size=config.n_students))
    student_dept = rng.integers(0, config.n_departments, size=config.n_students)
    student_ids = _student_ids(entry_term, config.start_year)
    expected, ability, strengths, difficulty, demands = _latent(config, courses, student_dept, rng)
    rec = _simulate(config, courses, expected, student_dept, entry_term, rng)

    s, c, t, mark, observed = rec["s"], rec["c"], rec["t"], rec["mark"], rec["observed"]
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
        catalog=courses.catalog,
        truth=truth,
        enrolments=enrolments,
        student_ids=student_ids,
        course_ids=courses.ids,
        student_department=np.array([_DEPARTMENTS[d].prefix for d in student_dept]),
        entry_term=entry_term,
        expected=expected,
        ability=ability,
        strengths=strengths,
        difficulty=difficulty,
        demands=demands,
    )


def _readme(u: University) -> str:
    cfg = u.config
    first = " ".join(map(str, term_label(0, cfg.start_year)))
    last = " ".join(map(str, term_label(cfg.n_terms - 1, cfg.start_year)))
    depts = ", ".join(d.name for d in _DEPARTMENTS[: cfg.n_departments])
    generation = (
        f"Synthetic university generated by electives.data.synth with seed {cfg.seed}: {cfg.n_students} students, "
        f"{cfg.n_courses} courses ({cfg.n_electives} electives) in {cfg.n_departments} departments ({depts}), "
        f"{cfg.n_terms} terms from {first} to {last}, {len(u.export)} grade rows. Each student has a general "
        f"ability a_s and {cfg.n_factors} latent strengths u_s, each course a difficulty b_c and {cfg.n_factors} "
        f"latent demands v_c; the true expected percent is clip({MU:g} + {SIGMA_ABILITY:g}*a_s - "
        f"{SIGMA_DIFFICULTY:g}*b_c + {SIGMA_INTERACTION:g}*z(u_s.v_c), 0, 100), listed in truth.csv for every "
        f"student and course, and an observed total adds N(0, {cfg.noise_sd:g}) noise. Students take their "
        "department's core courses in level order and fill a 4-5 course load with electives offered that term "
        "whose prerequisites they passed (>= 60), chosen with only a weak preference for what suits them. The "
        "export keeps a registrar's mess on purpose: W and I marks, 777/999 placeholders, retakes, a few "
        "duplicated rows and one non-ASCII course name; grades-latin1.csv is the same export encoded latin-1."
    )
    importing = (
        "Import it with the command below; catalog.csv describes every course (elective yes/no, ';'-separated "
        "prerequisites and terms offered). No real person's data is involved: the same seed and sizes "
        "regenerate identical files."
    )
    command = (
        'electives import grades.csv --map student="student serial" --map term=Year+term --map course="Crs Code" '
        '--map course_name="Course Name" --map grade=total --scale percent --catalog catalog.csv'
    )
    return f"{textwrap.fill(generation, 100)}\n\n{textwrap.fill(importing, 100)}\n\n    {command}\n"


def write(university: University, out_dir: Path) -> dict[str, Path]:
    """Write grades.csv, grades-latin1.csv, catalog.csv, truth.csv and README.txt; return their paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "grades": out_dir / "grades.csv",
        "grades_latin1": out_dir / "grades-latin1.csv",
        "catalog": out_dir / "catalog.csv",
        "truth": out_dir / "truth.csv",
        "readme": out_dir / "README.txt",
    }
    # One rendering, two encodings, so both files hold exactly the same text.
    grades = university.export.to_csv(index=False, lineterminator="\n")
    paths["grades"].write_bytes(grades.encode("utf-8"))
    paths["grades_latin1"].write_bytes(grades.encode("latin-1"))
    paths["catalog"].write_bytes(university.catalog.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    truth = university.truth.to_csv(index=False, lineterminator="\n", float_format="%.1f")
    paths["truth"].write_bytes(truth.encode("utf-8"))
    paths["readme"].write_bytes(_readme(university).encode("utf-8"))
    return paths


# ------------------------------------------------------------------------------------------------------ at scale


def write_large(
    out_dir: Path,
    n_students: int = 200_000,
    n_courses: int = 2_000,
    grades_per_student: int = 40,
    *,
    n_departments: int = 6,
    n_factors: int = 4,
    n_terms: int = 8,
    seed: int = 2017,
    noise_sd: float = 5.0,
    start_year: int = 2019,
    chunk_students: int = 10_000,
) -> dict[str, Path]:
    """Write a large university's grades.csv (and catalog.csv) in chunks of students, for scale tests.

    The same latent model as `generate` (true = clip(MU + σa·a_s − σb·b_c + σi·z(u_s·v_c), 0, 100), observed adds
    N(0, noise_sd)), but streamlined so that memory is bounded by `chunk_students × n_courses`: every student
    takes exactly `grades_per_student` distinct courses, drawn by Gumbel-top-k from a weak preference for what
    suits them and a stronger one for their own department, spread over `n_terms` terms in level order; no
    prerequisites, retakes or placeholder marks, and no truth.csv (it would hold n_students × n_courses rows).
    Same arguments → identical files. Import with the flags `generate`'s README gives (without --catalog).
    """
    if n_students < 1 or n_courses < n_departments or not 1 <= grades_per_student <= n_courses:
        raise ValueError("need n_students ≥ 1, n_courses ≥ n_departments and 1 ≤ grades_per_student ≤ n_courses")
    if not 1 <= n_departments <= len(_DEPARTMENTS) or n_terms < 1 or chunk_students < 1:
        raise ValueError(f"n_departments must be 1..{len(_DEPARTMENTS)}; n_terms and chunk_students positive")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    depts = _DEPARTMENTS[:n_departments]
    c_dept = np.arange(n_courses) % n_departments
    c_level = 1 + (np.arange(n_courses) // n_departments) % 4
    ids = np.array([f"{depts[d].prefix}{lv}{i:04d}" for i, (d, lv) in enumerate(zip(c_dept, c_level, strict=True))])
    names = np.array([f"{depts[d].name} {lv}{i:04d}" for i, (d, lv) in enumerate(zip(c_dept, c_level, strict=True))])
    directions = rng.standard_normal((n_departments, n_factors))
    keep = math.sqrt(1.0 - DEPARTMENT_PULL**2)
    demands = DEPARTMENT_PULL * directions[c_dept] + keep * rng.standard_normal((n_courses, n_factors))
    difficulty = 0.4 * (c_level - 2.5) + rng.standard_normal(n_courses)
    difficulty = (difficulty - difficulty.mean()) / difficulty.std()
    # z() over all pairs, from the moments of u·v: u's rows are draws of one mixture, so E and Var follow
    # from a large sample of students instead of the n_students × n_courses matrix.
    probe = DEPARTMENT_PULL * directions[rng.integers(0, n_departments, 4096)] + keep * rng.standard_normal(
        (4096, n_factors)
    )
    pv = probe @ demands.T
    z_mean, z_sd = float(pv.mean()), float(pv.std())
    catalog = pd.DataFrame(
        {
            "course_id": ids,
            "name": names,
            "elective": "yes",
            "prerequisites": "",
            "credits": 3,
            "department": [depts[d].name for d in c_dept],
            "terms_offered": "Fall;Spring",
            "description": [f"Level {lv} course of {depts[d].name}." for d, lv in zip(c_dept, c_level, strict=True)],
        },
        columns=list(CATALOG_COLUMNS),
    )
    paths = {"grades": out_dir / "grades.csv", "catalog": out_dir / "catalog.csv"}
    catalog.to_csv(paths["catalog"], index=False, lineterminator="\n")
    years = np.array([term_label(i, start_year)[0] for i in range(n_terms)], dtype=np.int64)
    seasons = np.array([term_label(i, start_year)[1] for i in range(n_terms)])
    tmp = paths["grades"].with_name(".grades.csv.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(EXPORT_COLUMNS) + "\n")
        for lo in range(0, n_students, chunk_students):
            n = min(chunk_students, n_students - lo)
            dept = rng.integers(0, n_departments, n)
            strengths = DEPARTMENT_PULL * directions[dept] + keep * rng.standard_normal((n, n_factors))
            ability = rng.standard_normal(n)
            inter = (strengths @ demands.T - z_mean) / z_sd
            expected = MU + SIGMA_ABILITY * ability[:, None] - SIGMA_DIFFICULTY * difficulty[None, :]
            expected = np.clip(expected + SIGMA_INTERACTION * inter, 0.0, 100.0)
            pref = CHOICE_WEIGHT * inter + 1.5 * (c_dept[None, :] == dept[:, None]) + rng.gumbel(size=inter.shape)
            chosen = np.argpartition(-pref, grades_per_student - 1, axis=1)[:, :grades_per_student]
            # Lower levels first: the student's courses in level order over the terms of the window.
            chosen = np.take_along_axis(chosen, np.argsort(c_level[chosen], axis=1, kind="stable"), axis=1)
            term = (np.arange(grades_per_student) * n_terms) // grades_per_student
            rows = np.repeat(np.arange(n), grades_per_student)
            c = chosen.ravel()
            t = np.tile(term, n)
            observed = np.round(np.clip(expected[rows, c] + rng.normal(0.0, noise_sd, c.size), 0.0, 100.0), 1)
            serial = np.char.add(str(start_year), np.char.zfill((lo + rows + 1).astype(str), 7))
            frame = pd.DataFrame(
                {
                    "student serial": serial,
                    "Year": years[t],
                    "term": seasons[t],
                    "Crs Code": ids[c],
                    "Course Name": names[c],
                    "total": np.char.mod("%.1f", observed),
                    "Grade": letter_grade(observed),
                },
                columns=list(EXPORT_COLUMNS),
            )
            frame.to_csv(fh, index=False, header=False, lineterminator="\n")
    os.replace(tmp, paths["grades"])
    return paths
