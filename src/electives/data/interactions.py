"""Student × course interactions as index arrays, the form every model and split works on.

Grades arrive as a DataFrame with columns `student`, `course`, optional `term` and optional `grade` (already
normalised to [0, 1]; NaN or absent for enrolment-only implicit data). `Interactions.from_frame` maps the string
ids to dense indices; train and test sets built with the same id maps share one index space.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from electives.errors import DataError

__all__ = ["Interactions", "ItemLookup", "isin_sorted", "sorted_unique"]


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """np.unique by sorting: numpy 2's hash-based np.unique is ~30× slower on a million distinct int64."""
    a = np.sort(np.asarray(a).ravel())
    if len(a) == 0:
        return a
    keep = np.empty(len(a), dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def isin_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Boolean membership of `values` in an ascending array, by binary search."""
    values = np.asarray(values)
    if len(sorted_set) == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[pos] == values


@dataclass(frozen=True)
class ItemLookup:
    """CSR view of the courses each student has: `indices[indptr[s]:indptr[s + 1]]`, sorted and unique."""

    indptr: np.ndarray
    indices: np.ndarray
    n_courses: int

    def items(self, student: int) -> np.ndarray:
        return self.indices[self.indptr[student] : self.indptr[student + 1]]

    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    @cached_property
    def sorted_keys(self) -> np.ndarray:
        """`student * n_courses + course` for every stored pair, ascending (for searchsorted membership)."""
        rows = np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int64), self.counts())
        return rows * self.n_courses + self.indices

    def contains(self, students: np.ndarray, courses: np.ndarray) -> np.ndarray:
        """Boolean array: whether each (student, course) pair is stored. Vectorised binary search."""
        keys = np.asarray(students, dtype=np.int64) * self.n_courses + np.asarray(courses, dtype=np.int64)
        return isin_sorted(keys, self.sorted_keys)

    def mask(self, students: np.ndarray) -> np.ndarray:
        """Dense boolean (len(students), n_courses): True where the student already has the course."""
        students = np.asarray(students, dtype=np.int64)
        starts, ends = self.indptr[students], self.indptr[students + 1]
        lengths = ends - starts
        rows = np.repeat(np.arange(len(students)), lengths)
        # Positions of each student's slice in `indices`, built without a Python loop.
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out = np.zeros((len(students), self.n_courses), dtype=bool)
        out[rows, self.indices[np.repeat(starts, lengths) + offsets]] = True
        return out


def _readonly(a: np.ndarray, dtype: type) -> np.ndarray:
    # A private copy: freezing the caller's own array would surprise them, and caches rely on immutability.
    a = np.array(a, dtype=dtype, copy=True, order="C")
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Interactions:
    """Interaction rows as aligned arrays plus the id maps that give the indices their meaning.

    `grades` is float32 in [0, 1] (NaN where a row has no grade) or None for purely implicit data. `terms` orders
    each student's rows in time (row order when the source had no term). Arrays are read-only.
    """

    students: np.ndarray
    courses: np.ndarray
    grades: np.ndarray | None
    terms: np.ndarray
    student_ids: tuple[str, ...]
    course_ids: tuple[str, ...]
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.students)
        object.__setattr__(self, "students", _readonly(self.students, np.int64))
        object.__setattr__(self, "courses", _readonly(self.courses, np.int64))
        object.__setattr__(self, "terms", _readonly(self.terms, np.int64))
        if self.grades is not None:
            object.__setattr__(self, "grades", _readonly(self.grades, np.float32))
        object.__setattr__(self, "student_ids", tuple(self.student_ids))
        object.__setattr__(self, "course_ids", tuple(self.course_ids))
        lengths = {len(self.courses), len(self.terms)} | ({len(self.grades)} if self.grades is not None else set())
        if lengths != {n}:
            raise DataError(f"interaction arrays differ in length: students={n}, others={sorted(lengths)}")
        if n and (self.students.min() < 0 or self.students.max() >= self.n_students):
            raise DataError(f"student index out of range [0, {self.n_students})")
        if n and (self.courses.min() < 0 or self.courses.max() >= self.n_courses):
            raise DataError(f"course index out of range [0, {self.n_courses})")

    # -- construction -------------------------------------------------------------------------------------------

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        student_ids: Sequence[str] | None = None,
        course_ids: Sequence[str] | None = None,
    ) -> Interactions:
        """Build from a frame with `student`, `course` and optional `term`, `grade` columns.

        Without id maps, the sorted distinct ids of the frame are used. With them (to put a test set in the
        training set's index space), an id missing from a map is a DataError naming the row.
        """
        for col in ("student", "course"):
            if col not in df.columns:
                raise DataError(f"grade frame has no '{col}' column (columns: {list(df.columns)})")
        students = df["student"].astype(str).to_numpy()
        courses = df["course"].astype(str).to_numpy()
        s_ids = tuple(sorted(set(students))) if student_ids is None else tuple(student_ids)
        c_ids = tuple(sorted(set(courses))) if course_ids is None else tuple(course_ids)
        s_idx = _index(students, s_ids, "student", df.index)
        c_idx = _index(courses, c_ids, "course", df.index)

        grades = None
        if "grade" in df.columns:
            g = pd.to_numeric(df["grade"], errors="coerce").to_numpy(dtype=np.float64)
            bad = ~np.isnan(g) & ((g < 0.0) | (g > 1.0))
            if bad.any():
                row = df.index[int(np.argmax(bad))]
                raise DataError(f"row {row}: grade {g[bad][0]!r} is outside the normalised range [0, 1]")
            if not np.isnan(g).all():
                grades = g.astype(np.float32)

        if "term" in df.columns and not df["term"].isna().all():
            t = df["term"]
            if t.isna().any():
                row = df.index[int(np.argmax(t.isna().to_numpy()))]
                raise DataError(f"row {row}: 'term' is empty while other rows have one")
            try:
                terms = t.to_numpy().astype(np.int64)
            except (TypeError, ValueError) as exc:
                raise DataError(f"'term' must be an integer sort key: {exc}") from None
        else:
            terms = np.arange(len(df), dtype=np.int64)
        return cls(s_idx, c_idx, grades, terms, s_ids, c_ids)

    def subset(self, rows: np.ndarray) -> Interactions:
        """Rows selected by a boolean mask or index array, with the same id maps."""
        g = None if self.grades is None else self.grades[rows]
        return Interactions(
            self.students[rows], self.courses[rows], g, self.terms[rows], self.student_ids, self.course_ids
        )

    def to_frame(self) -> pd.DataFrame:
        df = pd.DataFrame(
            {
                "student": np.asarray(self.student_ids, dtype=object)[self.students],
                "course": np.asarray(self.course_ids, dtype=object)[self.courses],
                "term": self.terms,
            }
        )
        if self.grades is not None:
            df["grade"] = self.grades
        return df

    # -- views --------------------------------------------------------------------------------------------------

    @property
    def n_students(self) -> int:
        return len(self.student_ids)

    @property
    def n_courses(self) -> int:
        return len(self.course_ids)

    def __len__(self) -> int:
        return len(self.students)

    @property
    def has_grades(self) -> bool:
        return self.grades is not None

    def keys(self) -> np.ndarray:
        """One int64 per row identifying its (student, course) pair: `student * n_courses + course`."""
        return self.students * np.int64(self.n_courses) + self.courses

    def same_index_space(self, other: Interactions) -> bool:
        return self.student_ids == other.student_ids and self.course_ids == other.course_ids

    def concat(self, other: Interactions) -> Interactions:
        """Both sets' rows (same index space): e.g. everything a student has, train ∪ test. Grades are kept when
        both sets have them."""
        if not self.same_index_space(other):
            raise DataError("cannot combine interactions over different students or courses")
        both_graded = self.grades is not None and other.grades is not None
        return Interactions(
            np.concatenate([self.students, other.students]),
            np.concatenate([self.courses, other.courses]),
            np.concatenate([self.grades, other.grades]) if both_graded else None,
            np.concatenate([self.terms, other.terms]),
            self.student_ids,
            self.course_ids,
        )

    def item_lookup(self) -> ItemLookup:
        """Per-student sorted unique courses (CSR), cached: for excluding already-taken courses fast."""
        if "csr" not in self._cache:
            uniq = sorted_unique(self.keys())
            rows = uniq // self.n_courses
            indptr = np.zeros(self.n_students + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=self.n_students), out=indptr[1:])
            self._cache["csr"] = ItemLookup(indptr, uniq % self.n_courses, self.n_courses)
        return self._cache["csr"]

    def fingerprint(self) -> str:
        """sha256 (hex) over id maps and row content; equal data in equal order gives an equal fingerprint."""
        if "sha256" in self._cache:
            return self._cache["sha256"]
        h = hashlib.sha256(b"electives.Interactions/1\0")
        for ids in (self.student_ids, self.course_ids):
            h.update(len(ids).to_bytes(8, "little"))
            for s in ids:
                b = s.encode("utf-8")
                h.update(len(b).to_bytes(8, "little") + b)
        for name, arr in (("s", self.students), ("c", self.courses), ("t", self.terms), ("g", self.grades)):
            h.update(name.encode())
            if arr is None:
                h.update(b"none")
            else:
                h.update(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
        self._cache["sha256"] = h.hexdigest()
        return self._cache["sha256"]


def _index(values: np.ndarray, ids: tuple[str, ...], what: str, index: pd.Index) -> np.ndarray:
    if len(set(ids)) != len(ids):
        raise DataError(f"{what} id map has duplicate entries")
    pos = pd.Index(ids).get_indexer(values)
    missing = pos < 0
    if missing.any():
        i = int(np.argmax(missing))
        raise DataError(
            f"row {index[i]}: {what} {values[i]!r} is not in the {what} id map ({int(missing.sum())} rows affected)"
        )
    return pos.astype(np.int64)
