"""Writing one import inside the caller's transaction: its record, its students and the file's courses, and its
grade rows a batch at a time — rows already stored, or repeated in the file, skipped. The rows arrive as codes
(:class:`~electives.data.importing.ImportedRows`): memory holds a few int64 keys a row, and Python tuples for one
batch only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from electives.data.importing import ImportedRows, ImportResult
from electives.data.importing.rows import with_none
from electives.data.scales import GradeScale
from electives.data.storage.courses import ensure_courses
from electives.data.storage.engine import fetch_frame, write_rows
from electives.data.storage.schema import GRADE_INSERT, grades_table, imports_table, students_table
from electives.errors import ScaleError, StorageError

BATCH_ROWS = 50_000  # rows per executemany / COPY call: bounded memory, few round trips
IN_CHUNK = 1_000  # ids per IN (...) list: far below SQLite's bound-variable limit
PG_BULK_ROWS = 100_000  # from this many rows, PostgreSQL checks foreign keys once per import, not once per row
NO_TERM = np.iinfo(np.int64).min  # stands for a missing term_key when comparing rows


@dataclass(frozen=True)
class RowsWritten:
    """What :func:`write_grades` did."""

    added: int
    skipped: int
    students_added: int
    courses_added: int
    course_names_filled: int


def insert_import(conn: Connection, result: ImportResult, *, imported_at: datetime) -> int:
    """The import's row (rows_added set once the grades are in); its id."""
    report = result.report
    import_id = conn.execute(
        imports_table.insert().values(
            file_sha256=report.file_sha256,
            file_name=report.file_name,
            imported_at=imported_at,
            scale_name=result.scale.name,
            scale_toml=result.scale.to_toml(),
            enrolment_only=bool(result.enrolment_only),
            rows_kept=int(report.rows_kept),
            rows_added=0,
            report=report.to_json(),
        )
    ).inserted_primary_key[0]
    return int(import_id)


def write_grades(conn: Connection, rows: ImportedRows, *, import_id: int, batch_rows: int | None = None) -> RowsWritten:
    """Store the rows' students, courses and grades; rows identical in (student, course, term, mark) to a stored
    row or an earlier row of the file are skipped. Inserted in (student, course) order, ``batch_rows`` at a time:
    appending to the (student, course) index is much cheaper than random inserts."""
    student_ids, known = _ensure_students(conn, rows.students.tolist())
    course_ids, new_courses, names_filled = ensure_courses(conn, rows.courses.tolist(), rows.names_by_course())
    sid = np.array([student_ids[p] for p in rows.students], dtype=np.int64)[rows.student]
    cid = np.array([course_ids[c] for c in rows.courses], dtype=np.int64)[rows.course]
    skip = _repeated_rows(conn, rows, sid, cid, known=[student_ids[p] for p in known])
    keep = np.flatnonzero(~skip)
    keep = keep[np.lexsort((cid[keep], sid[keep]))]
    values = _GradeValues.of(rows)
    batch_rows = batch_rows or BATCH_ROWS
    with _foreign_keys_checked_at_end(conn, len(keep)):
        for start in range(0, len(keep), batch_rows):
            part = keep[start : start + batch_rows]
            write_rows(conn, grades_table, GRADE_INSERT, values.tuples(part, sid, cid, import_id))
    return RowsWritten(
        added=len(keep),
        skipped=int(skip.sum()),
        students_added=len(student_ids) - len(known),
        courses_added=new_courses,
        course_names_filled=names_filled,
    )


@dataclass(frozen=True)
class _GradeValues:
    """The stored value of each code (None for missing), for building a batch's insert tuples."""

    rows: ImportedRows
    labels: np.ndarray
    keys: np.ndarray
    subs: np.ndarray
    marks: np.ndarray
    points: np.ndarray
    grades: np.ndarray

    @classmethod
    def of(cls, rows: ImportedRows) -> _GradeValues:
        def numbers(values: np.ndarray, kind: type) -> np.ndarray:
            return with_none([None if np.isnan(v) else kind(v) for v in values])

        # Code -1 (no value) reads the None that with_none appends.
        return cls(
            rows,
            labels=with_none(rows.term_labels.tolist()),
            keys=numbers(rows.term_keys, int),
            subs=numbers(rows.term_subs, int),
            marks=with_none(rows.marks.tolist()),
            points=numbers(rows.points, float),
            grades=numbers(rows.grades, float),
        )

    def tuples(self, part: np.ndarray, sid: np.ndarray, cid: np.ndarray, import_id: int) -> list[tuple]:
        term, mark = self.rows.term[part], self.rows.mark[part]
        columns = [
            sid[part].tolist(),
            cid[part].tolist(),
            self.labels[term].tolist(),
            self.keys[term].tolist(),
            self.subs[term].tolist(),
            self.marks[mark].tolist(),
            self.points[mark].tolist(),
            self.grades[mark].tolist(),
            [import_id] * len(part),
            self.rows.row[part].tolist(),
        ]
        return list(zip(*columns, strict=True))


def _repeated_rows(
    conn: Connection, rows: ImportedRows, sid: np.ndarray, cid: np.ndarray, *, known: list[int]
) -> np.ndarray:
    """Rows identical in (student, course, term, mark) to a stored row of a known student or to an earlier row of
    the file (a term is its key and sub; no mark and an empty one count as the same)."""
    key_of = np.append(np.where(np.isnan(rows.term_keys), NO_TERM, rows.term_keys).astype(np.int64), NO_TERM)
    sub_of = np.append(np.nan_to_num(rows.term_subs, nan=0).astype(np.int64), 0)
    as_text = ["" if m is None else str(m) for m in rows.marks] + [""]
    marks = pd.Index(as_text).unique()
    file_keys = [sid, cid, key_of[rows.term], sub_of[rows.term], marks.get_indexer(as_text).astype(np.int64)[rows.mark]]
    stored = _stored_keys(conn, known, marks)
    both = [np.concatenate([s, f]) for s, f in zip(stored, file_keys, strict=True)]
    if len(both[0]) < 2:
        return np.zeros(len(sid), dtype=bool)
    order = np.lexsort(both[::-1])  # stable: stored rows, then the file's in order, within equal keys
    same = np.ones(len(order) - 1, dtype=bool)
    for key in both:
        ordered = key[order]
        same &= ordered[1:] == ordered[:-1]
    repeated = np.zeros(len(order), dtype=bool)
    repeated[order[1:][same]] = True
    return repeated[len(stored[0]) :]


def _stored_keys(conn: Connection, student_ids: list[int], marks: pd.Index) -> list[np.ndarray]:
    """(student_id, course_id, term_key, term_sub, mark) of the stored rows of these students, as int64 arrays; a
    mark is its position in ``marks`` (-1: a mark the file does not have), read a few students at a time."""
    g = grades_table
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(student_ids), IN_CHUNK):
        stored = fetch_frame(
            conn,
            sa.select(g.c.student_id, g.c.course_id, g.c.term_key, g.c.term_sub, g.c.mark).where(
                g.c.student_id.in_(student_ids[start : start + IN_CHUNK])
            ),
        )
        parts.append(
            [
                stored["student_id"].to_numpy(np.int64),
                stored["course_id"].to_numpy(np.int64),
                stored["term_key"].astype("Int64").fillna(NO_TERM).to_numpy(np.int64),
                stored["term_sub"].astype("Int64").fillna(0).to_numpy(np.int64),
                marks.get_indexer(stored["mark"].fillna("").astype(str)).astype(np.int64),
            ]
        )
    if not parts:
        return [np.zeros(0, dtype=np.int64) for _ in range(5)]
    return [np.concatenate(column) for column in zip(*parts, strict=True)]


def _ensure_students(conn: Connection, pseudonyms: list[str]) -> tuple[dict[str, int], list[str]]:
    """Ids of all ``pseudonyms`` (inserting new ones), and the pseudonyms that were already stored."""
    t = students_table
    stored = dict(conn.execute(sa.select(t.c.pseudonym, t.c.id)).all())
    known = [p for p in pseudonyms if p in stored]
    new = [p for p in pseudonyms if p not in stored]
    if new:
        write_rows(conn, t, ("pseudonym",), [(p,) for p in new])
        stored = dict(conn.execute(sa.select(t.c.pseudonym, t.c.id)).all())
    return {p: stored[p] for p in pseudonyms}, known


@contextmanager
def _foreign_keys_checked_at_end(conn: Connection, n_rows: int) -> Iterator[None]:
    """PostgreSQL checks a foreign key per inserted row with a row lock on the parent (about 30 s per million
    rows); dropping the grades' keys and adding them back validates all rows in one join instead. Both happen in
    the import's transaction, so a failure restores them; the price is that readers wait for a large import."""
    if conn.dialect.name != "postgresql" or n_rows < PG_BULK_ROWS:
        yield
        return
    quote = conn.dialect.identifier_preparer
    table = quote.format_table(grades_table)
    keys = sorted(grades_table.foreign_keys, key=lambda fk: fk.name)
    conn.exec_driver_sql(f"ALTER TABLE {table} " + ", ".join(f"DROP CONSTRAINT {quote.quote(k.name)}" for k in keys))
    yield
    # Plain SQL: SQLAlchemy's AddConstraint would mark the constraints as no longer part of CREATE TABLE.
    added = [
        f"ADD CONSTRAINT {quote.quote(k.name)} FOREIGN KEY ({quote.quote(k.parent.name)}) "
        f"REFERENCES {quote.format_table(k.column.table)} ({quote.quote(k.column.name)})"
        for k in keys
    ]
    conn.exec_driver_sql(f"ALTER TABLE {table} " + ", ".join(added))


def check_scale(conn: Connection, scale: GradeScale, file_name: str) -> None:
    """Refuse grades on a scale other than the database's (that of its first graded import)."""
    t = imports_table
    stored = conn.execute(
        sa.select(t.c.scale_name, t.c.scale_toml, t.c.file_name)
        .where(t.c.enrolment_only == sa.false())
        .order_by(t.c.id)
        .limit(1)
    ).first()
    if stored is None:
        return
    if stored.scale_name != scale.name:
        raise StorageError(
            f"{file_name} is on grade scale {scale.name!r}, but this database holds grades on scale "
            f"{stored.scale_name!r} (first imported from {stored.file_name}); a database holds one grade scale, "
            f"so import it with scale {stored.scale_name!r} or into another database"
        )
    if stored.scale_toml != scale.to_toml() and _parse_or_none(stored.scale_toml) != scale:
        raise StorageError(
            f"{file_name} is on grade scale {scale.name!r}, but its definition differs from the scale "
            f"{stored.scale_name!r} stored in this database (first imported from {stored.file_name}); "
            "a database holds one grade scale"
        )


def _parse_or_none(toml: str) -> GradeScale | None:
    try:
        return GradeScale.from_toml(toml)
    except ScaleError:
        return None
