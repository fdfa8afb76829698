"""Reading stored grades: as a frame of strings (one student's history, the rows a monitor or a cohort reads), or
for training as index arrays (:func:`read_grade_rows`), streamed a chunk at a time and coded as they come, so a
decade of grades never becomes a string per row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from electives.data.grade_rows import GradeRows, term_sort_keys
from electives.data.storage.engine import fetch_frame, stream_rows
from electives.data.storage.schema import courses_table, grades_table, students_table

READ_CHUNK = 100_000  # rows fetched and coded at a time


@dataclass(frozen=True)
class StoredGrades:
    """The grades training reads, and the latest term among them (label, key; None without terms)."""

    rows: GradeRows
    latest_term: tuple[str, int] | None


def read_grades(
    conn: Connection, pseudonym: str | None, *, after_import: int | None = None, through_import: int | None = None
) -> pd.DataFrame:
    """Stored rows (every attempt) as a frame with the grades' columns plus `student` and `course` strings."""
    g, s, c = grades_table, students_table, courses_table
    stmt = sa.select(
        g.c.student_id, g.c.course_id, g.c.term, g.c.term_key, g.c.term_sub, g.c.mark, g.c.points, g.c.grade,
        g.c.import_id, g.c.row,
    )  # fmt: skip
    if after_import is not None:
        stmt = stmt.where(g.c.import_id > after_import)
    if through_import is not None:
        stmt = stmt.where(g.c.import_id <= through_import)
    students = sa.select(s.c.id, s.c.pseudonym)
    if pseudonym is not None:
        sid = sa.select(s.c.id).where(s.c.pseudonym == pseudonym).scalar_subquery()
        stmt = stmt.where(g.c.student_id == sid)
        students = students.where(s.c.pseudonym == pseudonym)
    # Grades come without the joins: mapping ids to names in numpy is much faster than a million joined strings.
    frame = fetch_frame(conn, stmt)
    student_map = dict(conn.execute(students).all())
    course_map = dict(conn.execute(sa.select(c.c.id, c.c.code)).all())
    frame["student"] = frame["student_id"].map(student_map).astype(str)
    frame["course"] = frame["course_id"].map(course_map).astype(str)
    frame["term_key"] = frame["term_key"].astype("Int64")
    frame["term_sub"] = frame["term_sub"].astype("Int64")
    for column in ("points", "grade"):
        frame[column] = frame[column].astype(float)
    for column in ("term", "mark"):
        frame[column] = frame[column].astype(object)
    return frame


class _Columns:
    """The streamed chunks' columns as arrays; each chunk's term labels coded into one table."""

    NAMES = ("student_id", "course_id", "term", "term_key", "term_sub", "points", "grade", "import_id", "row")

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {n: [] for n in self.NAMES}
        self.labels: dict[str, int] = {}

    def add(self, chunk: list[tuple]) -> None:
        frame = pd.DataFrame.from_records(chunk, columns=list(self.NAMES), coerce_float=True)
        for name in ("student_id", "course_id", "import_id"):
            self.parts[name].append(frame[name].to_numpy(np.int32))
        # A row number is a line of its file (int32); a missing one sorts first, as NaN does in load_grades.
        self.parts["row"].append(pd.to_numeric(frame["row"]).fillna(-1).to_numpy(np.int32))
        for name in ("term_key", "term_sub", "points"):
            self.parts[name].append(pd.to_numeric(frame[name]).to_numpy(np.float64, na_value=np.nan))
        self.parts["grade"].append(pd.to_numeric(frame["grade"]).to_numpy(np.float32, na_value=np.nan))
        codes, uniq = pd.factorize(frame["term"])  # no label: -1
        table = np.array([self.labels.setdefault(str(u), len(self.labels)) for u in uniq] + [-1], dtype=np.int32)
        self.parts["term"].append(table[codes])

    def joined(self) -> dict[str, np.ndarray]:
        """Each column's chunks joined, one column at a time (the chunks of each let go as it is joined)."""
        out = {}
        for name in self.NAMES:
            parts = self.parts.pop(name)
            out[name] = np.concatenate(parts) if parts else np.zeros(0)
            del parts
        return out


def read_grade_rows(
    conn: Connection, *, retakes: str, through_import: int | None = None, chunk_rows: int = READ_CHUNK
) -> StoredGrades:
    """Stored grades as :class:`GradeRows`, one row per (student, course) unless ``retakes="all"``, chosen and
    ordered exactly as ``Store.load_grades`` does (a graded attempt first, then the latest term — key, then sub — or
    the most points, then the later import and row); rows ordered by student id, course id."""
    g = grades_table
    stmt = sa.select(*(g.c[n] for n in _Columns.NAMES))
    if through_import is not None:
        stmt = stmt.where(g.c.import_id <= through_import)
    columns = _Columns()
    for chunk in stream_rows(conn, stmt, size=chunk_rows):
        columns.add(chunk)
    if not columns.parts["row"]:
        columns.add([])
    labels = list(columns.labels)
    a = columns.joined()
    chosen = _chosen_attempts(a, retakes)
    student_map = dict(conn.execute(sa.select(students_table.c.id, students_table.c.pseudonym)).all())
    course_map = dict(conn.execute(sa.select(courses_table.c.id, courses_table.c.code)).all())
    s_used, students = np.unique(a["student_id"][chosen], return_inverse=True)
    c_used, courses = np.unique(a["course_id"][chosen], return_inverse=True)
    keys = a["term_key"][chosen]
    rows = GradeRows.from_codes(
        students=students.ravel(),
        student_values=[student_map[int(i)] for i in s_used],
        courses=courses.ravel(),
        course_values=[course_map[int(i)] for i in c_used],
        grades=a["grade"][chosen],
        terms=term_sort_keys(keys),
    )
    latest = None
    if len(keys) and not np.isnan(keys).all():
        first = int(np.nanargmax(keys))  # the first row holding the latest key
        code = int(a["term"][chosen[first]])
        latest = (labels[code] if code >= 0 else "None", int(keys[first]))
    return StoredGrades(rows, latest)


def _chosen_attempts(a: dict[str, np.ndarray], retakes: str) -> np.ndarray:
    """Indexes of the rows kept, in (student id, course id) order; NaN terms and points sort first."""
    term_key = np.nan_to_num(a["term_key"], nan=-np.inf)
    term_sub = np.nan_to_num(a["term_sub"], nan=-np.inf)
    if retakes == "all":
        return np.lexsort((a["row"], a["import_id"], term_sub, term_key, a["course_id"], a["student_id"]))
    graded = ~np.isnan(a["points"])
    keys = [a["row"], a["import_id"], term_sub, term_key]
    if retakes == "best":
        keys.append(np.nan_to_num(a["points"], nan=-np.inf))
    keys += [graded, a["course_id"], a["student_id"]]
    order = np.lexsort(keys)
    s, c = a["student_id"][order], a["course_id"][order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (s[1:] != s[:-1]) | (c[1:] != c[:-1])
    return order[last]
