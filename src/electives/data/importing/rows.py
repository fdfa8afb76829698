"""The rows an import keeps, as int32 codes into tables of distinct values (:class:`ImportedRows`): a few dozen
bytes a row instead of a string object per field, whatever the size of the export. ``ImportResult.frame`` shows
them as strings (:data:`FRAME_COLUMNS`); storage (a batch at a time) and training read the codes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from electives.data.grade_rows import GradeRows, term_sort_keys
from electives.data.terms import stored_sub
from electives.errors import DataError

# Columns of ImportResult.frame, in order. `student` is already the keyed pseudonym: raw ids never leave the reader.
FRAME_COLUMNS = ("row", "student", "course", "course_name", "term", "term_key", "mark", "points", "grade")


def first_appearance(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(new codes 0..k-1 numbered by first appearance, the old code of each new one)."""
    if not len(codes):
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    used, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return rank[inverse.ravel()], used[order]


def object_array(values: Sequence[Any]) -> np.ndarray:
    """An object array of exactly these values (numpy would make a 2-D array of equal-length tuples)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def with_none(values: Sequence[Any]) -> np.ndarray:
    """``values`` as an object array with None appended: indexed by a code, -1 (no value) gives None."""
    return object_array([*values, None])


@dataclass(frozen=True, eq=False)
class ImportedRows:
    """Kept rows, file order. Per row: ``row`` (line number) and codes; code -1 is no value (no term, no mark —
    enrolment-only — or no course name). ``students`` are pseudonyms and every table is in order of first
    appearance among the rows, so new students and courses are stored in the order the file names them."""

    row: np.ndarray  # int64
    student: np.ndarray  # int32 codes into students
    course: np.ndarray  # into courses
    course_name: np.ndarray  # into course_names
    term: np.ndarray  # into term_labels / term_keys
    mark: np.ndarray  # into marks / points / grades
    students: np.ndarray  # object (str)
    courses: np.ndarray  # object (str)
    course_names: np.ndarray  # object (str)
    term_labels: np.ndarray  # object (str or None)
    term_keys: np.ndarray  # float64, NaN: no key (a term without a place: older than every dated row)
    term_subs: np.ndarray  # float64: the order among terms sharing a key (Term.sub), NaN: no key
    marks: np.ndarray  # object (str or None)
    points: np.ndarray  # float64, NaN: no grade
    grades: np.ndarray  # float64 in [0, 1], NaN: no grade

    def __len__(self) -> int:
        return len(self.row)

    def to_frame(self) -> pd.DataFrame:
        """The rows as the frame :data:`FRAME_COLUMNS` describes (pandas object columns of strings)."""
        keys = np.append(self.term_keys, np.nan)[self.term]
        return pd.DataFrame(
            {
                "row": self.row.astype(np.int64),
                "student": pd.Series(self.students[self.student], dtype=object),
                "course": pd.Series(self.courses[self.course], dtype=object),
                "course_name": pd.Series(with_none(self.course_names)[self.course_name], dtype=object),
                "term": pd.Series(with_none(self.term_labels)[self.term], dtype=object),
                "term_key": pd.array(keys, dtype="Float64").astype("Int64"),
                "mark": pd.Series(with_none(self.marks)[self.mark], dtype=object),
                "points": np.append(self.points, np.nan)[self.mark],
                "grade": np.append(self.grades, np.nan)[self.mark],
            },
            columns=list(FRAME_COLUMNS),
        )

    def grade_rows(self) -> GradeRows:
        """The rows as training reads them (file order; a row without a term sorts before every dated one)."""
        return GradeRows.from_codes(
            students=self.student,
            student_values=self.students,
            courses=self.course,
            course_values=self.courses,
            grades=np.append(self.grades, np.nan)[self.mark],
            terms=term_sort_keys(np.append(self.term_keys, np.nan)[self.term]),
        )

    def latest_term(self) -> tuple[str, int] | None:
        """(label, key) of the first row holding the latest term key; None when no row has a key."""
        keys = np.append(self.term_keys, np.nan)[self.term]
        if not len(keys) or np.isnan(keys).all():
            return None
        first = int(np.nanargmax(keys))
        return str(with_none(self.term_labels)[self.term[first]]), int(keys[first])

    def names_by_course(self) -> dict[str, str]:
        """Each course's name in the file: the last row's that names it (trimmed, never empty)."""
        names = np.array(["" if pd.isna(n) else str(n).strip() for n in self.course_names], dtype=object)
        named = names != ""
        idx = np.flatnonzero(np.append(named, False)[self.course_name])
        if not len(idx):
            return {}
        courses = self.course[idx][::-1]
        _, last = np.unique(courses, return_index=True)  # the first from the end
        name_codes = self.course_name[idx][::-1]
        return {str(self.courses[courses[i]]): names[name_codes[i]] for i in last}

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ImportedRows:
        """Rows from a frame with the columns :data:`FRAME_COLUMNS` (as a caller may build an import by hand)."""
        missing = [c for c in FRAME_COLUMNS if c not in frame.columns]
        if missing:
            raise DataError(f"import frame lacks column(s) {', '.join(missing)}")
        frame = frame.loc[:, list(FRAME_COLUMNS)].reset_index(drop=True)
        for column in ("student", "course", "row"):
            if frame[column].isna().any():
                bad = frame.loc[frame[column].isna(), "row"].head(5).tolist()
                raise DataError(f"import frame has rows without {column} (rows {bad})")
        try:
            term_key = pd.to_numeric(frame["term_key"]).astype("Int64").to_numpy(np.float64, na_value=np.nan)
            points = pd.to_numeric(frame["points"]).astype(float).to_numpy()
            grades = pd.to_numeric(frame["grade"]).astype(float).to_numpy()
        except (TypeError, ValueError) as exc:
            raise DataError(f"import frame: {exc}") from exc
        student, students = pd.factorize(frame["student"].astype(str))
        course, courses = pd.factorize(frame["course"].astype(str))
        course_name, course_names = pd.factorize(frame["course_name"])
        term, term_rows = _pairs(frame["term"].to_numpy(object), term_key)
        mark, mark_rows = _pairs(frame["mark"].to_numpy(object), points, grades)
        labels = _objects(frame["term"].to_numpy(object)[term_rows])  # a hand-built frame's subs: read from labels
        return cls(
            row=frame["row"].to_numpy(np.int64),
            student=student.astype(np.int32),
            course=course.astype(np.int32),
            course_name=course_name.astype(np.int32),
            term=term,
            mark=mark,
            students=np.asarray(students, dtype=object),
            courses=np.asarray(courses, dtype=object),
            course_names=np.asarray(course_names, dtype=object),
            term_labels=labels,
            term_keys=term_key[term_rows],
            term_subs=np.array(
                [
                    np.nan if np.isnan(k) else stored_sub(t, int(k))
                    for t, k in zip(labels, term_key[term_rows], strict=True)
                ],
                dtype=np.float64,
            ),
            marks=_objects(frame["mark"].to_numpy(object)[mark_rows]),
            points=points[mark_rows],
            grades=grades[mark_rows],
        )


def _objects(values: np.ndarray) -> np.ndarray:
    """The values, with None for every missing one (None, NaN, NA)."""
    return object_array([None if pd.isna(v) else v for v in values])


def _pairs(labels: np.ndarray, *numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One code per distinct (label, numbers…) of a row, -1 where all are missing; and a row of each code."""
    parts = [pd.factorize(pd.Series(labels, dtype=object), use_na_sentinel=False)[0]]
    parts += [pd.factorize(n, use_na_sentinel=False)[0] for n in numbers]
    combined = parts[0].astype(np.int64)
    for p in parts[1:]:
        combined, _ = pd.factorize(combined * (int(p.max(initial=0)) + 1) + p)
    codes, first = first_appearance(np.asarray(combined, dtype=np.int64))
    _, rows = np.unique(combined, return_index=True)
    rows = rows[first]
    absent = pd.isna(labels[rows]) & np.all([np.isnan(n[rows]) for n in numbers], axis=0)
    if absent.any():  # the all-missing combination becomes -1, the others keep their order
        keep = np.flatnonzero(~absent)
        remap = np.full(len(rows), -1, dtype=np.int32)
        remap[keep] = np.arange(len(keep), dtype=np.int32)
        codes, rows = remap[codes], rows[keep]
    return codes.astype(np.int32), rows
