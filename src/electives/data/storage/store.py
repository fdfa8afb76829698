"""Store: the grade database's reads and writes, each write one transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from electives.data.catalog import Catalog, Course
from electives.data.importing import FRAME_COLUMNS, RETAKE_POLICIES, ImportResult, RetakePolicy
from electives.data.scales import GradeScale
from electives.data.storage.courses import read_courses, upsert_catalog
from electives.data.storage.engine import (
    WRITE_OPTION,
    configure_sqlite,
    engine_options,
    fetch_frame,
    hide_password,
    make_parent_dir,
)
from electives.data.storage.plans import CourseSeats, read_plan, replace_plan
from electives.data.storage.results import CatalogSummary, ImportRecord, ImportSummary
from electives.data.storage.schema import (
    GRADE_INSERT,
    SCHEMA_VERSION,
    courses_table,
    grades_table,
    imports_table,
    meta_table,
    metadata,
    migrate,
    students_table,
)
from electives.defaults import DEFAULT_DB_URL
from electives.errors import DataError, ScaleError, StorageError

GRADE_COLUMNS = ("student", "course", "term", "term_key", "mark", "points", "grade")

BATCH_ROWS = 50_000  # rows per executemany / COPY call: bounded memory, few round trips
IN_CHUNK = 1_000  # ids per IN (...) list: far below SQLite's bound-variable limit
PG_BULK_ROWS = 100_000  # from this many rows, PostgreSQL checks foreign keys once per import, not once per row
_NO_TERM = np.iinfo(np.int64).min  # stands for a missing term_key when comparing rows


class Store:
    """A grade database at an SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://user:pw@host/db``).

    Opening creates the tables when missing. Database errors surface as :class:`StorageError` with the URL
    shown without its password."""

    def __init__(self, url: str = DEFAULT_DB_URL) -> None:
        try:
            parsed = sa.make_url(url)
        except ArgumentError:
            raise StorageError(
                f"{hide_password(url)!r} is not a database URL (expected e.g. sqlite:///electives.db or "
                "postgresql+psycopg://user:password@host/dbname)"
            ) from None
        self._password = parsed.password
        self.url = parsed.render_as_string(hide_password=True)
        make_parent_dir(parsed)
        try:
            self._engine = sa.create_engine(parsed, **engine_options(parsed))
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise StorageError(f"cannot use database {self.url}: {self._clean(exc)}") from None
        if parsed.get_backend_name() == "sqlite":
            configure_sqlite(self._engine, in_memory=not parsed.database or parsed.database == ":memory:")
        with self._begin(write=True) as conn:
            metadata.create_all(conn)
            version = conn.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar_one_or_none()
            if version is None:
                conn.execute(meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif version != str(SCHEMA_VERSION):
                if not version.isdigit() or int(version) > SCHEMA_VERSION:
                    raise StorageError(
                        f"database {self.url} has schema version {version}; this version of electives reads "
                        f"version {SCHEMA_VERSION} and older"
                    )
                migrate(conn, int(version))
                conn.execute(
                    meta_table.update().where(meta_table.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
                )

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # ------------------------------------------------------------------ writes
    def save_import(self, result: ImportResult, catalog: Catalog | None = None) -> ImportSummary:
        """Store an import in one transaction: all of it or, on any error, nothing.

        A file already stored (same SHA-256) adds nothing (``already_imported``); rows identical in (student,
        course, term, mark) to stored rows, as in a cumulative export sent again, are skipped. Grades on a scale
        other than the database's raise :class:`StorageError`. Course names from the file only fill names still
        missing. ``catalog``, when given, is saved first, as :meth:`save_catalog` (also for a file imported
        before)."""
        frame = _prepare_frame(result.frame)
        report = result.report
        with self._begin(write=True) as conn:
            courses_added = upsert_catalog(conn, catalog).added if catalog is not None else 0
            prior = conn.execute(
                sa.select(imports_table.c.id, imports_table.c.imported_at, imports_table.c.file_name).where(
                    imports_table.c.file_sha256 == report.file_sha256
                )
            ).first()
            if prior is not None:
                return ImportSummary(
                    import_id=prior.id,
                    already_imported=True,
                    imported_at=_utc(prior.imported_at),
                    file_name=prior.file_name,
                    rows_added=0,
                    rows_skipped=0,
                    students_added=0,
                    courses_added=courses_added,
                )
            if not result.enrolment_only:
                _check_scale(conn, result.scale, report.file_name)

            imported_at = datetime.now(UTC)
            import_id = _insert_import(conn, result, imported_at=imported_at)
            student_ids, known_students = _ensure_students(conn, frame["student"].unique().tolist())
            course_ids, new_courses, names_filled = _ensure_courses(conn, frame)
            rows, skipped = _new_grade_rows(
                conn,
                frame,
                import_id=import_id,
                student_ids=student_ids,
                known_students=known_students,
                course_ids=course_ids,
            )
            with _foreign_keys_checked_at_end(conn, len(rows)):
                for start in range(0, len(rows), BATCH_ROWS):
                    write_rows(conn, grades_table, GRADE_INSERT, rows[start : start + BATCH_ROWS])
            conn.execute(imports_table.update().where(imports_table.c.id == import_id).values(rows_added=len(rows)))
            return ImportSummary(
                import_id=import_id,
                already_imported=False,
                imported_at=imported_at,
                file_name=report.file_name,
                rows_added=len(rows),
                rows_skipped=skipped,
                students_added=len(student_ids) - len(known_students),
                courses_added=courses_added + new_courses,
                course_names_filled=names_filled,
            )

    def save_catalog(self, catalog: Catalog) -> CatalogSummary:
        """Insert or update the catalogue's courses in one transaction; catalogue values replace stored ones
        (empty catalogue fields keep what is stored)."""
        with self._begin(write=True) as conn:
            return upsert_catalog(conn, catalog)

    # ------------------------------------------------------------------ reads
    def load_grades(
        self, retakes: RetakePolicy = "latest", *, after_import: int | None = None, through_import: int | None = None
    ) -> pd.DataFrame:
        """All stored rows, one per (student, course) unless ``retakes="all"``: ``latest`` keeps the attempt in
        the latest term, ``best`` the one with the most points. Either way a graded attempt wins over one
        without a grade (W, P, enrolment-only), and ties go to the later import / row. Columns GRADE_COLUMNS.
        ``after_import`` / ``through_import`` keep only the rows of imports numbered above / up to them (what a
        model trained through an import has not / has seen)."""
        if retakes not in RETAKE_POLICIES:
            raise DataError(f"retake policy {retakes!r} is unknown; expected one of {', '.join(RETAKE_POLICIES)}")
        with self._begin() as conn:
            frame = _read_grades(conn, None, after_import=after_import, through_import=through_import)
        if retakes != "all" and len(frame):
            graded = frame["points"].notna()
            order = ["student_id", "course_id", "_graded"]
            if retakes == "best":
                order.append("points")
            order += ["term_key", "import_id", "row"]
            frame = (
                frame.assign(_graded=graded)
                .sort_values(order, na_position="first", kind="stable")
                .drop_duplicates(["student_id", "course_id"], keep="last")
            )
        else:
            frame = frame.sort_values(["student_id", "course_id", "term_key", "import_id", "row"], na_position="first")
        return _public(frame)

    def student_history(self, pseudonym: str) -> pd.DataFrame:
        """Every stored row (all attempts) of one student, oldest first; empty when the pseudonym is unknown."""
        with self._begin() as conn:
            frame = _read_grades(conn, pseudonym)
        return _public(frame.sort_values(["term_key", "import_id", "row"], na_position="first"))

    def scale(self) -> GradeScale | None:
        """The database's grade scale (that of its first graded import); None before any graded import."""
        t = imports_table
        first_graded = sa.select(t.c.scale_toml).where(t.c.enrolment_only == sa.false()).order_by(t.c.id).limit(1)
        with self._begin() as conn:
            toml = conn.execute(first_graded).scalar_one_or_none()
        if toml is None:
            return None
        try:
            return GradeScale.from_toml(toml, source=f"scale stored in {self.url}")
        except ScaleError as exc:
            raise StorageError(str(exc)) from exc

    def courses(self) -> list[Course]:
        """All known courses (catalogue and grade files), by code."""
        with self._begin() as conn:
            return read_courses(conn)

    def save_plan(self, term: str, rows: Sequence[CourseSeats]) -> int:
        """Store a seat plan's per-course counts for ``term`` (a canonical term or season), replacing the term's
        earlier plan, in one transaction; the rows stored. Counts only: nothing about any student."""
        with self._begin(write=True) as conn:
            return replace_plan(conn, term, rows, planned_at=datetime.now(UTC))

    def plan(self, term: str) -> dict[str, CourseSeats]:
        """The per-course counts of ``term``'s stored plan, by course code (empty: no plan for the term)."""
        with self._begin() as conn:
            return read_plan(conn, term)

    def imports(self) -> list[ImportRecord]:
        """Stored imports, oldest first, with their cleaning reports."""
        t = imports_table
        with self._begin() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.id)).all()
        return [
            ImportRecord(
                id=r.id,
                file_sha256=r.file_sha256,
                file_name=r.file_name,
                imported_at=_utc(r.imported_at),
                scale_name=r.scale_name,
                enrolment_only=bool(r.enrolment_only),
                rows_kept=r.rows_kept,
                rows_added=r.rows_added,
                report=json.loads(r.report),
            )
            for r in rows
        ]

    def counts(self) -> dict[str, int]:
        """Number of students, courses, grade rows and imports."""
        tables = {
            "students": students_table,
            "courses": courses_table,
            "grades": grades_table,
            "imports": imports_table,
        }
        with self._begin() as conn:
            return {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for name, t in tables.items()
            }

    # ------------------------------------------------------------------ internals
    @contextmanager
    def _begin(self, write: bool = False) -> Iterator[Connection]:
        engine = self._engine.execution_options(**{WRITE_OPTION: True}) if write else self._engine
        try:
            with engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StorageError(f"database {self.url}: {self._clean(exc)}") from exc

    def _clean(self, exc: BaseException) -> str:
        """The driver's own message, on one line, never with the password in it."""
        orig = getattr(exc, "orig", None) or exc
        text = "; ".join(line.strip() for line in str(orig).strip().splitlines() if line.strip()) or type(orig).__name__
        if self._password:
            text = text.replace(str(self._password), "***")
        return text


# ---------------------------------------------------------------------- opening
def open_store(url: str) -> Store:
    """Open an existing database; an SQLite file that is not there is an error (recommending creates nothing)."""
    parsed = None
    with suppress(Exception):  # a malformed URL: Store says what is wrong with it
        parsed = sa.make_url(url)
    if parsed is not None and parsed.get_backend_name() == "sqlite":
        name = parsed.database
        if name and name != ":memory:" and not name.startswith("file:") and not Path(name).exists():
            raise StorageError(f"database {name} does not exist (import grades first)")
    return Store(url)


# ---------------------------------------------------------------------- writing
def _prepare_frame(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in FRAME_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"import frame lacks column(s) {', '.join(missing)}")
    out = frame.loc[:, list(FRAME_COLUMNS)].reset_index(drop=True)
    for column in ("student", "course", "row"):
        if out[column].isna().any():
            bad = out.loc[out[column].isna(), "row"].head(5).tolist()
            raise DataError(f"import frame has rows without {column} (rows {bad})")
    out["student"] = out["student"].astype(str)
    out["course"] = out["course"].astype(str)
    out["row"] = out["row"].astype(np.int64)
    try:
        out["term_key"] = pd.to_numeric(out["term_key"]).astype("Int64")
        out["points"] = pd.to_numeric(out["points"]).astype(float)
        out["grade"] = pd.to_numeric(out["grade"]).astype(float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"import frame: {exc}") from exc
    return out


def _pylist(series: pd.Series, kind: type | None = None) -> list[Any]:
    """Plain Python values with None for missing: DB drivers take neither numpy scalars nor NaN-as-NULL."""
    missing = series.isna().to_numpy()
    if kind is int:
        values = series.fillna(0).to_numpy(np.int64).tolist()
    elif kind is float:
        values = series.to_numpy(np.float64).tolist()
    else:
        values = series.tolist()
    for i in np.flatnonzero(missing):
        values[i] = None
    return values


def write_rows(conn: Connection, table: sa.Table, columns: Sequence[str], rows: list[tuple]) -> None:
    """Bulk insert plain tuples: COPY on psycopg, one executemany otherwise (far faster than ORM objects)."""
    if not rows:
        return
    quote = conn.dialect.identifier_preparer
    names = ", ".join(quote.quote(c) for c in columns)
    target = quote.format_table(table)
    if conn.dialect.driver == "psycopg":
        with conn.connection.driver_connection.cursor() as cur, cur.copy(f"COPY {target} ({names}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
        return
    placeholder = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
    if placeholder is None:
        conn.execute(table.insert(), [dict(zip(columns, r, strict=True)) for r in rows])
        return
    conn.exec_driver_sql(f"INSERT INTO {target} ({names}) VALUES ({', '.join([placeholder] * len(columns))})", rows)


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


def _insert_import(conn: Connection, result: ImportResult, *, imported_at: datetime) -> int:
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


def _new_grade_rows(
    conn: Connection,
    frame: pd.DataFrame,
    *,
    import_id: int,
    student_ids: dict[str, int],
    known_students: list[str],
    course_ids: dict[str, int],
) -> tuple[list[tuple], int]:
    """The frame's rows as GRADE_INSERT tuples, without those identical in (student, course, term, mark) to a
    stored row or an earlier row of the frame; and how many were skipped."""
    sid = frame["student"].map(student_ids).to_numpy(np.int64)
    cid = frame["course"].map(course_ids).to_numpy(np.int64)
    keys = pd.MultiIndex.from_arrays(
        [sid, cid, frame["term_key"].fillna(_NO_TERM).to_numpy(np.int64), frame["mark"].fillna("")]
    )
    skip = keys.duplicated()
    if known_students:
        skip |= keys.isin(_stored_keys(conn, [student_ids[p] for p in known_students]))
    keep = np.flatnonzero(~skip)
    # Insert in index order: appending to the (student, course) index is much cheaper than random inserts.
    keep = keep[np.lexsort((cid[keep], sid[keep]))]
    kept = frame.iloc[keep]
    columns = [
        sid[keep].tolist(),
        cid[keep].tolist(),
        _pylist(kept["term"]),
        _pylist(kept["term_key"], int),
        _pylist(kept["mark"]),
        _pylist(kept["points"], float),
        _pylist(kept["grade"], float),
        [import_id] * len(kept),
        kept["row"].tolist(),
    ]
    return list(zip(*columns, strict=True)), int(skip.sum())


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


def _ensure_courses(conn: Connection, frame: pd.DataFrame) -> tuple[dict[str, int], int, int]:
    """Ids of the frame's courses, inserting new ones; grade-file names only fill names still missing."""
    t = courses_table
    named = frame.dropna(subset=["course_name"])
    named = named[named["course_name"].astype(str).str.strip() != ""]
    file_names = dict(zip(named["course"], named["course_name"].astype(str).str.strip(), strict=True))
    stored = {r.code: (r.id, r.name) for r in conn.execute(sa.select(t.c.code, t.c.id, t.c.name))}
    codes = frame["course"].unique().tolist()
    new = [c for c in codes if c not in stored]
    if new:
        write_rows(conn, t, ("code", "name"), [(c, file_names.get(c)) for c in new])
    fill = [
        {"b_code": c, "b_name": file_names[c]}
        for c in codes
        if c in stored and stored[c][1] is None and c in file_names
    ]
    if fill:
        conn.execute(
            t.update().where(t.c.code == sa.bindparam("b_code")).values(name=sa.bindparam("b_name")),
            fill,
        )
    ids = {r.code: r.id for r in conn.execute(sa.select(t.c.code, t.c.id))}
    return {c: ids[c] for c in codes}, len(new), len(fill)


def _stored_keys(conn: Connection, student_ids: list[int]) -> pd.MultiIndex:
    """(student_id, course_id, term_key, mark) of the stored rows of these students."""
    g = grades_table
    stored = pd.concat(
        [
            fetch_frame(
                conn,
                sa.select(g.c.student_id, g.c.course_id, g.c.term_key, g.c.mark).where(
                    g.c.student_id.in_(student_ids[start : start + IN_CHUNK])
                ),
            )
            for start in range(0, len(student_ids), IN_CHUNK)
        ],
        ignore_index=True,
    )
    return pd.MultiIndex.from_arrays(
        [
            stored["student_id"].to_numpy(np.int64),
            stored["course_id"].to_numpy(np.int64),
            stored["term_key"].astype("Int64").fillna(_NO_TERM).to_numpy(np.int64),
            stored["mark"].fillna(""),
        ]
    )


def _check_scale(conn: Connection, scale: GradeScale, file_name: str) -> None:
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


# ---------------------------------------------------------------------- reading
def _read_grades(
    conn: Connection, pseudonym: str | None, *, after_import: int | None = None, through_import: int | None = None
) -> pd.DataFrame:
    g, s, c = grades_table, students_table, courses_table
    stmt = sa.select(
        g.c.student_id, g.c.course_id, g.c.term, g.c.term_key, g.c.mark, g.c.points, g.c.grade, g.c.import_id, g.c.row
    )
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
    for column in ("points", "grade"):
        frame[column] = frame[column].astype(float)
    for column in ("term", "mark"):
        frame[column] = frame[column].astype(object)
    return frame


def _public(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[:, list(GRADE_COLUMNS)].reset_index(drop=True)


def _utc(value: datetime) -> datetime:
    # SQLite has no time zones: it hands back the naive UTC time that was stored.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
