"""Seats for a cohort: up to k electives per student, no course over its seats, the most total value (predicted
grade), solved exactly — and the plans it is measured against.

The problem is a transportation problem: maximise Σ w[s, c]·x[s, c] subject to Σ_c x[s, c] ≤ k for every
student, Σ_s x[s, c] ≤ seats[c] for every course with a limit, 0 ≤ x ≤ 1, x[s, c] = 0 where the student may not
take the course. Its constraint matrix is a bipartite incidence matrix (totally unimodular), so every vertex of
the LP is whole: the simplex answer *is* the integer plan, and :func:`allocate` checks that it is.

Solved directly, 20,000 students × 200 courses is an LP of 3–4 million variables: HiGHS's dual simplex took
600 s on one core. Almost all of them are courses a student would never get, so :func:`allocate` solves it by
column generation, which keeps it exact:

1. prices of a seat per course come from the same problem on nested random samples of the students (200, then
   2,000, … each ten times the last while under a quarter of the cohort; seats scaled to the sample): the
   smallest over every pair, each larger one by the steps below from the last one's prices. A cohort with
   near-identical preferences (everyone ranks the courses alike, as a model dominated by course effects predicts)
   needs accurate prices before few candidates per student suffice: starting the full problem from zero prices
   took 14 LP rounds and 254 s at 20,000 × 200 with scarce seats; the samples bring it to 2 rounds (16–20 s);
2. each student's candidates are their best ``k + margin`` courses at those prices (value minus price); HiGHS
   solves the LP over the candidates only;
3. the LP's duals (a value ``u[s]`` per student, a price ``v[c]`` per course) price every left-out pair:
   ``w[s, c] − u[s] − v[c] > 0`` means that pair could improve the plan, so such pairs (and those within a small
   slack of it) are added and the LP is solved again; when none is left, the plan is optimal for the whole problem
   (LP duality);
4. the answer carries a certificate: the dual bound ``Σ seats·v + Σ_s (sum of the k largest positive
   w[s, ·] − v)`` computed over *every* pair, which no plan can exceed. ``gap = bound − objective`` is zero up to
   the solver's tolerance.

When no course would be oversubscribed by everyone taking their own top k, that is the plan (prices 0, no LP).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from electives.errors import DataError

__all__ = [
    "Allocation",
    "allocate",
    "dual_bound",
    "first_come_first_served",
    "own_top_k",
    "random_plan",
]

# The full problem's LPs: HiGHS's interior point (with its crossover to a vertex) was 2x faster than the dual
# simplex there, and its duals left fewer pairs to add (20,000 × 200: 2 rounds instead of 10). The samples' LPs are
# small and solved again and again from nearby prices: the dual simplex is faster on them. An answer that is not
# whole (a crossover that stopped short) is solved again by the dual simplex.
METHOD = "highs-ipm"
SAMPLE_METHOD = "highs-ds"
SAMPLE_STUDENTS = 200  # the smallest sample; each next one is ten times larger while under a quarter of the cohort
SAMPLE_ALL_PAIRS = 60_000  # the smallest sample is solved over every pair when it has at most this many
MARGIN = 3  # candidates per student beyond k, at the current prices
MAX_ROUNDS = 30  # column-generation rounds before the LP over every pair is solved instead
SLACK = 0.01  # once any pair is left out that could improve the plan, pairs this close to it (share of the
# largest value) come in with it: the duals of a degenerate LP move a little each round, and adding only the
# strict improvements cost ten more rounds of 5 s at 20,000 students


@dataclass(frozen=True)
class Allocation:
    """A plan: ``assigned[s, c]`` when student s gets course c. ``objective`` is its total value, ``bound`` the
    dual bound no plan can exceed (``gap`` = bound − objective: 0 up to the solver's tolerance proves it
    optimal), ``prices`` each course's dual price of a seat (0: seats to spare), ``rounds`` the LPs solved,
    ``columns`` the student–course pairs in the last one, ``integral`` whether the LP's answer was whole."""

    assigned: np.ndarray
    objective: float
    bound: float
    prices: np.ndarray
    rounds: int
    columns: int
    integral: bool
    seconds: float

    @property
    def gap(self) -> float:
        return self.bound - self.objective


def own_top_k(values: np.ndarray, k: int) -> np.ndarray:
    """(students, courses) bool: each student's k best courses by ``values`` (NaN: not eligible), ties to the
    earlier course; fewer when fewer are eligible. What every student would take if nobody had seats."""
    w = np.where(np.isnan(values), -np.inf, values)
    kk = min(k, w.shape[1])
    out = np.zeros(w.shape, dtype=bool)
    if kk == 0 or w.shape[0] == 0:
        return out
    order = np.argsort(-w, axis=1, kind="stable")[:, :kk]
    np.put_along_axis(out, order, np.isfinite(np.take_along_axis(w, order, axis=1)), axis=1)
    return out


def allocate(values: np.ndarray, k: int, seats: np.ndarray, *, seed: int = 0, method: str = METHOD) -> Allocation:
    """The plan of most total value; see the module docstring. ``values``: (students, courses) float, NaN where
    the student may not take the course; ``seats``: (courses,) seats, ``inf`` for no limit; ``seed``: the samples
    the first prices come from (the plan's value does not depend on it); ``method``: HiGHS's method for the
    cohort's LPs."""
    started = time.perf_counter()
    w, seats = _check(values, k, seats)
    everyone = _top_k_positive(w, k)
    if (everyone.sum(axis=0) <= seats).all():  # nobody is turned away: everyone's own top k is optimal
        total = float(w[everyone].sum())
        return Allocation(everyone, total, total, np.zeros(w.shape[1]), 0, 0, True, time.perf_counter() - started)
    prices, rounds = _sample_prices(w, k, seats, seed)
    solved = _generate_columns(w, k, seats, prices, method)
    assigned = solved.x > 0.5
    objective = float(w[assigned].sum())
    return Allocation(
        assigned=assigned,
        objective=objective,
        bound=dual_bound(w, k, seats, solved.prices),
        prices=solved.prices,
        rounds=rounds + solved.rounds,
        columns=solved.columns,
        integral=solved.integral,
        seconds=time.perf_counter() - started,
    )


def dual_bound(values: np.ndarray, k: int, seats: np.ndarray, prices: np.ndarray) -> float:
    """An upper bound on any plan's total value, from seat prices: Σ seats·price over courses with a limit plus,
    per student, the sum of the k largest positive (value − price). Exact at the optimal prices (LP duality)."""
    w = np.where(np.isnan(values), -np.inf, values) - prices[None, :]
    kk = min(k, w.shape[1])
    best = -np.partition(-w, kk - 1, axis=1)[:, :kk] if w.shape[0] else np.zeros((0, kk))
    limited = np.isfinite(seats)
    return float(np.maximum(best, 0.0).sum() + (seats[limited] * prices[limited]).sum())


def first_come_first_served(values: np.ndarray, k: int, seats: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Registration as it happens without a plan: students arrive in ``order`` and each takes their own k best
    courses (by ``values``) among those with seats left. (students, courses) bool."""
    w, seats = _check(values, k, seats)
    left = seats.copy()
    assigned = np.zeros(w.shape, dtype=bool)
    for s in np.asarray(order, dtype=np.int64).tolist():
        row = np.where(left > 0, w[s], -np.inf)
        pick = np.argsort(-row, kind="stable")[:k]
        pick = pick[np.isfinite(row[pick])]
        assigned[s, pick] = True
        left[pick] -= 1
    return assigned


def random_plan(eligible: np.ndarray, k: int, seats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random feasible plan: students in random order each take k random courses they may take that still have
    seats. (students, courses) bool."""
    values = np.where(eligible, rng.random(eligible.shape), np.nan)
    return first_come_first_served(values, k, seats, rng.permutation(eligible.shape[0]))


# ---------------------------------------------------------------------------------------------------- internals
@dataclass(frozen=True)
class _Solved:
    x: np.ndarray  # (students, courses) the LP's answer, 0 outside the columns
    prices: np.ndarray  # v: per course, 0 for courses without a limit
    rounds: int
    columns: int
    integral: bool


def _check(values: np.ndarray, k: int, seats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(values, dtype=np.float64)
    s = np.asarray(seats, dtype=np.float64)
    if w.ndim != 2 or s.shape != (w.shape[1],):
        raise DataError(f"values must be (students, courses) and seats (courses,), got {w.shape} and {s.shape}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise DataError(f"k must be a whole number ≥ 1, got {k!r}")
    if np.isnan(s).any() or (s < 0).any() or (np.isfinite(s) & (s != np.floor(s))).any():
        raise DataError("seats must be whole numbers ≥ 0 (inf: no limit)")
    if np.isinf(w).any():
        raise DataError("values must be finite where the student may take the course (NaN where not)")
    return np.where(np.isnan(w), -np.inf, w), s


def _top_k_positive(w: np.ndarray, k: int) -> np.ndarray:
    """Each student's k best courses among those of positive value: what they would take with unlimited seats."""
    return own_top_k(np.where(w > 0, w, np.nan), k)


def _best_pairs(reduced: np.ndarray, m: int, threshold: float) -> np.ndarray:
    """(students, courses) bool: per student, the (up to) m pairs of largest ``reduced`` above ``threshold``."""
    m = min(m, reduced.shape[1])
    idx = np.argpartition(-reduced, m - 1, axis=1)[:, :m]
    keep = np.take_along_axis(reduced, idx, axis=1) > threshold
    out = np.zeros(reduced.shape, dtype=bool)
    np.put_along_axis(out, idx, keep, axis=1)
    return out


def _sample_prices(w: np.ndarray, k: int, seats: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """Seat prices from nested random samples of the students (see the module docstring, step 1), and the LPs
    solved for them; zero prices and no LP for a cohort under four times the smallest sample."""
    n_students = w.shape[0]
    sizes = []
    n = SAMPLE_STUDENTS
    while 4 * n <= n_students:
        sizes.append(n)
        n *= 10
    prices, rounds = np.zeros(w.shape[1]), 0
    order = np.random.default_rng(seed).permutation(n_students)
    for i, n in enumerate(sizes):
        rows = np.sort(order[:n])
        part, part_seats = w[rows], seats * (n / n_students)
        if i == 0 and np.isfinite(part).sum() <= SAMPLE_ALL_PAIRS:
            prices = _solve_lp(part, k, part_seats, np.isfinite(part), SAMPLE_METHOD)[2]
            rounds += 1
        else:
            solved = _generate_columns(part, k, part_seats, prices, SAMPLE_METHOD)
            prices, rounds = solved.prices, rounds + solved.rounds
    return prices, rounds


def _generate_columns(w: np.ndarray, k: int, seats: np.ndarray, prices: np.ndarray, method: str) -> _Solved:
    """Column generation from ``prices`` (see the module docstring); the LP over every pair when it does not
    settle within MAX_ROUNDS."""
    scale = max(1.0, float(np.abs(w[np.isfinite(w)]).max(initial=0.0)))
    tol = 1e-6 * scale
    candidates = _best_pairs(w - prices[None, :], k + MARGIN, 0.0)
    for rounds in range(1, MAX_ROUNDS + 1):
        x, u, v, integral = _solve_lp(w, k, seats, candidates, method)
        reduced = w - u[:, None] - v[None, :]
        reduced[candidates] = -np.inf
        if not (reduced > tol).any():
            return _Solved(x, v, rounds, int(candidates.sum()), integral)
        candidates |= _best_pairs(reduced, k + MARGIN, -SLACK * scale)
    x, u, v, integral = _solve_lp(w, k, seats, np.isfinite(w), method)
    return _Solved(x, v, MAX_ROUNDS + 1, int(np.isfinite(w).sum()), integral)


def _solve_lp(
    w: np.ndarray, k: int, seats: np.ndarray, columns: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The LP over ``columns`` with HiGHS: the answer x, student duals u, course prices v, and whether x is
    whole (it must be: the constraint matrix is totally unimodular and the simplex ends on a vertex)."""
    n_students, n_courses = w.shape
    s_idx, c_idx = np.nonzero(columns)
    n = len(s_idx)
    limited = np.flatnonzero(np.isfinite(seats))
    row_of = np.full(n_courses, -1)
    row_of[limited] = np.arange(len(limited))
    in_limited = row_of[c_idx] >= 0
    cols = np.arange(n)
    rows = np.concatenate([s_idx, n_students + row_of[c_idx[in_limited]]])
    a = sp.csc_matrix(
        (np.ones(len(rows)), (rows, np.concatenate([cols, cols[in_limited]]))),
        shape=(n_students + len(limited), n),
    )
    b = np.concatenate([np.full(n_students, float(k)), seats[limited]])
    for how in dict.fromkeys((method, "highs-ds")):
        result = linprog(-w[s_idx, c_idx], A_ub=a, b_ub=b, bounds=(0, 1), method=how)
        if result.status != 0:
            raise DataError(f"the seat plan's LP could not be solved: {result.message}")
        integral = bool(np.all(np.abs(result.x - np.round(result.x)) <= 1e-6))
        if integral:
            break
    x = np.zeros(w.shape)
    x[s_idx, c_idx] = np.round(result.x)
    duals = np.maximum(-np.asarray(result.ineqlin.marginals), 0.0)
    v = np.zeros(n_courses)
    v[limited] = duals[n_students:]
    return x, duals[:n_students], v, integral
