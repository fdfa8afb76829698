"""Cohort figures: how students with records like this one did in a course.

:class:`Graders` holds, per course, the trained students who graded it (from the grade database, read once per
Recommender) and every trained student's centred embedding at unit length. :meth:`Graders.cohorts` answers with
:func:`~electives.serving.explanations.cohort_from_similarities` over a course's graders, so a cohort under
``min_cohort`` students (k-anonymity) is never reported, and the student being explained never counts towards
their own cohort.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from electives.serving.explanations import CohortStatistic, cohort_from_similarities

if TYPE_CHECKING:
    from electives.data.storage import Store

__all__ = ["MIN_RECORD", "Graders"]

# The fewest graded courses (that the model knows) a record needs before a card shows how "students with records
# like yours" did. Measured by benchmarks/cohort_minimum.py on the synthetic university (2,000 students, 80 courses,
# NeuMF; held-out students type in n of their grades, scored on the rest of their record against the true expected
# grade; RMSE in percent points, seeds 0 / 1+2). The plain course mean over every grader: 7.9 / 8.2 at any n. The
# cohort mean: n=1 8.9 / 9.8 and n=2 8.0 / 8.6, *worse* than the plain mean: "records like yours" is noise then,
# and it contradicts the card's own prediction; n=3 7.5 / 7.9, level; n=4 7.1 / 7.7, the first count clearly better
# (and better still after: 6.8 / 7.2 at 5, 6.2 / 6.4 at 10). So 4: the first count where the figure tells a student
# something about themselves that the course's average does not.
MIN_RECORD = 4


@dataclass
class Graders:
    """Per course: the trained students with a grade on it (model indices) and their normalised grades; and every
    trained student's centred vector at unit length (zero at the mean), so that a cohort's cosines are a product."""

    students: list[np.ndarray]
    grades: list[np.ndarray]
    units: np.ndarray

    @classmethod
    def from_store(
        cls,
        store: Store,
        *,
        student_index: Mapping[str, int],
        course_index: Mapping[str, int],
        embeddings: np.ndarray,
        mean: np.ndarray,
    ) -> Graders:
        """The stored grades of the trained students (``student_index``: pseudonym → model index) on the model's
        courses; ``embeddings`` are the trained students' rows and ``mean`` their average."""
        frame = store.load_grades()
        n = len(course_index)
        s = frame["student"].map(student_index)
        c = frame["course"].map(course_index)
        g = frame["grade"].to_numpy(dtype=float)
        keep = s.notna().to_numpy() & c.notna().to_numpy() & ~np.isnan(g)
        s = s.to_numpy()[keep].astype(np.int64)
        c = c.to_numpy()[keep].astype(np.int64)
        g = g[keep]
        order = np.argsort(c, kind="stable")
        bounds = np.searchsorted(c[order], np.arange(n + 1))
        centred = (embeddings - mean).astype(np.float64)
        lengths = np.linalg.norm(centred, axis=1, keepdims=True)
        return cls(
            [s[order[bounds[i] : bounds[i + 1]]] for i in range(n)],
            [g[order[bounds[i] : bounds[i + 1]]] for i in range(n)],
            np.divide(centred, lengths, out=np.zeros_like(centred), where=lengths > 0),
        )

    def cohorts(
        self, courses: np.ndarray, centred: np.ndarray, *, exclude: int | None, min_cohort: int
    ) -> list[CohortStatistic | None]:
        """The cohort figure of each of ``courses`` (None where fewer than ``min_cohort`` similar graders) for the
        student whose embedding minus the mean is ``centred``; ``exclude``: that student's model index, if any."""
        v = centred.astype(np.float64)
        length = float(np.linalg.norm(v))
        unit = v / length if length > 0 else np.zeros_like(v)
        # One product over every student beats gathering each course's graders once they outnumber the students.
        every = None
        if sum(len(self.students[c]) for c in courses) >= len(self.units):
            every = self.units @ unit
        out: list[CohortStatistic | None] = []
        for c in courses.tolist():
            students, grades = self.students[c], self.grades[c]
            if exclude is not None and len(students):
                keep = students != exclude  # the student being explained never counts towards their own cohort
                students, grades = students[keep], grades[keep]
            if len(students) < min_cohort:
                out.append(None)
                continue
            sims = every[students] if every is not None else self.units[students] @ unit
            out.append(cohort_from_similarities(sims, grades, neighbours=max(30, min_cohort), min_cohort=min_cohort))
        return out
