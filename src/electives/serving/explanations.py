"""Why a course is recommended: similar courses the student did well in, and how similar students fared.

All grades here are normalised ([0, 1], see ``GradeScale.normalise``); vectors are the model's learned
embeddings, compared by cosine similarity.

Privacy rule (k-anonymity): :func:`cohort_statistic` reports a cohort's mean grade only when at least
``min_cohort`` students (default 10, never fewer than 5) stand behind it, so no single student's grade can be read
off an explanation. Callers must leave the student being explained out of the graders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from electives.data.scales import GradeScale
from electives.errors import ElectivesError

MIN_COHORT = 10
MIN_COHORT_FLOOR = 5


def check_min_cohort(value: int) -> int:
    """``value`` as a k-anonymity threshold, or a clear error when it is below :data:`MIN_COHORT_FLOOR` (a
    configuration value: the product never shows a statistic of fewer students, whatever it is told)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_COHORT_FLOOR:
        raise ElectivesError(
            f"min_cohort (the fewest students behind any figure about other students) must be a whole number of at "
            f"least {MIN_COHORT_FLOOR}, got {value!r}; the default is {MIN_COHORT}"
        )
    return value


@dataclass(frozen=True)
class CohortStatistic:
    """Mean normalised grade of ``size`` students with records like the student's."""

    mean: float
    size: int


def similar_taken_courses(
    course_vectors: np.ndarray,
    target: int,
    taken: Sequence[tuple[int, float]],
    good_threshold: float,
    k: int = 3,
) -> list[tuple[int, float]]:
    """Up to ``k`` ``(course index, cosine similarity)`` pairs, most similar first: courses in ``taken``
    (``(course index, normalised grade)``, retakes allowed: the best grade counts) where the student's grade is at
    least ``good_threshold`` and whose embedding is positively similar to the ``target`` course's."""
    vectors = np.asarray(course_vectors, dtype=float)
    best: dict[int, float] = {}
    for index, grade in taken:
        if index != target and grade > best.get(index, -np.inf):
            best[index] = grade
    good = np.array([i for i, g in best.items() if g >= good_threshold], dtype=np.int64)
    if k < 1 or good.size == 0:
        return []
    sims = _cosine(vectors[good], vectors[target])
    order = np.argsort(-sims, kind="stable")[:k]
    return [(int(good[i]), float(sims[i])) for i in order if sims[i] > 0]


def cohort_statistic(
    student_vector: np.ndarray,
    grader_vectors: np.ndarray,
    grader_grades: np.ndarray,
    *,
    neighbours: int = 30,
    min_cohort: int = MIN_COHORT,
) -> CohortStatistic | None:
    """Mean grade on the target course of the (up to ``neighbours``) graders whose embeddings are most similar to
    ``student_vector`` (cosine > 0). None unless at least ``min_cohort`` students make up that cohort.

    ``grader_vectors`` (m, d) and ``grader_grades`` (m,) are the course's graders, one row per student."""
    if min_cohort < MIN_COHORT_FLOOR:
        raise ValueError(f"min_cohort must be at least {MIN_COHORT_FLOOR} (k-anonymity), got {min_cohort}")
    if neighbours < min_cohort:
        raise ValueError(f"neighbours ({neighbours}) must be at least min_cohort ({min_cohort})")
    vectors = np.asarray(grader_vectors, dtype=float)
    grades = np.asarray(grader_grades, dtype=float)
    if vectors.ndim != 2 or grades.shape != (vectors.shape[0],):
        raise ValueError(f"expected grader vectors (m, d) and grades (m,), got {vectors.shape} and {grades.shape}")
    if len(grades) < min_cohort:
        return None
    sims = _cosine(vectors, np.asarray(student_vector, dtype=float))
    return cohort_from_similarities(sims, grades, neighbours=neighbours, min_cohort=min_cohort)


def cohort_from_similarities(
    similarities: np.ndarray, grades: np.ndarray, *, neighbours: int = 30, min_cohort: int = MIN_COHORT
) -> CohortStatistic | None:
    """:func:`cohort_statistic` from the graders' cosine similarities to the student, already computed (a server
    computes them for every card of a request at once)."""
    if min_cohort < MIN_COHORT_FLOOR:
        raise ValueError(f"min_cohort must be at least {MIN_COHORT_FLOOR} (k-anonymity), got {min_cohort}")
    if len(grades) < min_cohort:
        return None
    if len(similarities) > neighbours:
        # The `neighbours` most similar, ties broken by position (as a stable sort would), without sorting all.
        cut = np.partition(similarities, len(similarities) - neighbours)[len(similarities) - neighbours]
        above = np.flatnonzero(similarities > cut)
        order = np.concatenate([above, np.flatnonzero(similarities == cut)[: neighbours - len(above)]])
    else:
        order = np.arange(len(similarities))
    cohort = order[similarities[order] > 0]
    if cohort.size < min_cohort:
        return None
    return CohortStatistic(mean=float(grades[cohort].mean()), size=int(cohort.size))


def cohort_relation(cohort_mean: float, predicted: float, scale: GradeScale) -> str:
    """How a cohort's mean sits against the card's prediction (normalised grades), in the letters the card shows:
    "in line with" when both read as the same letter, else "above" or "below"."""
    if _letter(scale, cohort_mean) == _letter(scale, predicted):
        return "in line with"
    return "above" if cohort_mean > predicted else "below"


def explanation_sentence(
    similar: Sequence[tuple[str, float]],
    cohort: CohortStatistic | None,
    scale: GradeScale,
    predicted: float | None = None,
) -> str | None:
    """One sentence from ``similar`` (course name, normalised grade) and ``cohort``; None when both are empty.

    "It is like Linear Algebra (A) and Calculus II (A-), two of your stronger courses; students with records like
    yours averaged B+ here (23 students)." — "stronger" is relative to the student's own average (the courses passed
    in are the ones at or above it), so a C+ can be one of a C student's stronger courses. With ``predicted`` (the
    card's normalised prediction) the cohort clause says how it relates to it ("…, above your predicted B"), so
    two figures on one card never read as a contradiction left unexplained."""
    parts: list[str] = []
    if similar:
        names = [f"{name} ({_letter(scale, grade)})" for name, grade in similar]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        count = {1: "one", 2: "two", 3: "three"}.get(len(names), str(len(names)))
        parts.append(f"It is like {listed}, {count} of your stronger courses")
    if cohort is not None:
        clause = (
            f"students with records like yours averaged {_letter(scale, cohort.mean)} here ({cohort.size} students)"
        )
        if predicted is not None:
            clause += f", {cohort_relation(cohort.mean, predicted, scale)} your predicted {_letter(scale, predicted)}"
        parts.append(clause if parts else clause[0].upper() + clause[1:])
    return "; ".join(parts) + "." if parts else None


def typical_sentence(typical: float, predicted: float, scale: GradeScale) -> str:
    """The explanation left when there are no similar courses or cohort to point to (e.g. a bias model, or few
    grades): how the course usually goes against what is predicted for this student (normalised grades)."""
    usual, yours = _letter(scale, typical), _letter(scale, predicted)
    if usual == yours:
        return f"Students typically get {usual} here, and your grades so far point the same way."
    direction = "above" if predicted > typical else "below"
    return f"Students typically get {usual} here; your grades so far point to {yours}, {direction} that."


def _letter(scale: GradeScale, normalised: float) -> str:
    return scale.letter(scale.to_points(normalised))


def _cosine(rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row with ``vector``; 0 where either has no length (nothing to compare)."""
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(vector)
    dots = rows @ vector
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
