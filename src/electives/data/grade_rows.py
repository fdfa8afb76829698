"""Every row of a grade set as index arrays into sorted id maps (:class:`GradeRows`): what training reads from the
database or an export, a few bytes a row, never a string per row. The mode then chooses its rows
(:meth:`GradeRows.interactions`): the graded ones (explicit) or every enrolment (implicit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from electives.data.interactions import Interactions
from electives.errors import DataError

__all__ = ["GradeRows", "term_sort_keys"]


def term_sort_keys(keys: np.ndarray) -> np.ndarray | None:
    """Term keys (float, NaN: none) as int64 sort keys: a row without a term sorts before every dated row (one
    below the oldest); None when no row has a term."""
    missing = np.isnan(keys)
    if missing.all():
        return None
    if missing.any():
        keys = np.where(missing, np.nanmin(keys) - 1, keys)
    return keys.astype(np.int64)


def _sorted_codes(codes: np.ndarray, values: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes into ``values`` re-numbered into the sorted distinct values they use."""
    used = np.flatnonzero(np.bincount(codes, minlength=len(values))) if len(codes) else np.zeros(0, dtype=np.int64)
    order = sorted(used.tolist(), key=lambda j: values[j])
    remap = np.full(len(values), -1, dtype=np.int32)
    remap[order] = np.arange(len(order), dtype=np.int32)
    return remap[codes], tuple(str(values[j]) for j in order)


@dataclass(frozen=True, eq=False)
class GradeRows:
    """Aligned per-row arrays. ``students``/``courses``: int32 indexes into the sorted ids; ``grades``: float32 in
    [0, 1], NaN where a row has no grade; ``terms``: int64 sort keys, None when the source has no term."""

    students: np.ndarray
    courses: np.ndarray
    grades: np.ndarray
    terms: np.ndarray | None
    student_ids: tuple[str, ...]
    course_ids: tuple[str, ...]

    @classmethod
    def from_codes(
        cls,
        *,
        students: np.ndarray,
        student_values: Sequence[str],
        courses: np.ndarray,
        course_values: Sequence[str],
        grades: np.ndarray,
        terms: np.ndarray | None,
    ) -> GradeRows:
        """From codes into any tables of ids (unused ids are left out; the ids are sorted, as
        :meth:`Interactions.from_frame` sorts them)."""
        s, s_ids = _sorted_codes(np.asarray(students), student_values)
        c, c_ids = _sorted_codes(np.asarray(courses), course_values)
        grades = np.asarray(grades, dtype=np.float32)
        bad = ~np.isnan(grades) & ((grades < 0) | (grades > 1))
        if bad.any():
            raise DataError(f"grade {grades[bad][0]!r} is outside the normalised range [0, 1]")
        return cls(s, c, grades, terms, s_ids, c_ids)

    def __len__(self) -> int:
        return len(self.students)

    @property
    def has_grades(self) -> bool:
        return bool((~np.isnan(self.grades)).any())

    @property
    def term_count(self) -> int:
        """Distinct term keys (0 without terms)."""
        return 0 if self.terms is None else len(np.unique(self.terms))

    def interactions(self, mode: str) -> Interactions:
        """The rows a mode trains on: the graded ones with their grades (explicit), every row without grades
        (implicit); ids are those the rows use, sorted. Without terms, the row order stands for time."""
        if mode == "implicit":
            terms = self.terms if self.terms is not None else np.arange(len(self), dtype=np.int64)
            return Interactions(self.students, self.courses, None, terms, self.student_ids, self.course_ids)
        graded = ~np.isnan(self.grades)
        s, s_ids = _sorted_codes(self.students[graded], self.student_ids)
        c, c_ids = _sorted_codes(self.courses[graded], self.course_ids)
        n = int(graded.sum())
        terms = self.terms[graded] if self.terms is not None else np.arange(n, dtype=np.int64)
        return Interactions(s, c, self.grades[graded] if n else None, terms, s_ids, c_ids)
