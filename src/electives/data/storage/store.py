"""Store: the grade database's reads and writes, each write one transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from electives.data.catalog import Catalog, Course
from electives.data.importing import RETAKE_POLICIES, ImportResult, RetakePolicy
from electives.data.scales import GradeScale
from electives.data.storage.courses import read_courses, upsert_catalog
from electives.data.storage.engine import (
    WRITE_OPTION,
    as_utc,
    configure_sqlite,
    engine_options,
    hide_password,
    make_parent_dir,
)
from electives.data.storage.imports import check_scale, insert_import, write_grades
from electives.data.storage.plans import CourseSeats, StoredPlan, read_plan, read_plans, replace_plan
from electives.data.storage.reading import READ_CHUNK, StoredGrades, read_grade_rows, read_grades
from electives.data.storage.results import CatalogSummary, ImportRecord, ImportSummary
from electives.data.storage.schema import (
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
                if not migrate(conn, version):
                    raise StorageError(
                        f"database {self.url} has schema version {version}; this version of electives reads "
                        f"version {SCHEMA_VERSION}"
                    )
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
    def save_import(
        self, result: ImportResult, catalog: Catalog | None = None, *, batch_rows: int | None = None
    ) -> ImportSummary:
        """Store an import in one transaction: all of it or, on any error, nothing.

        A file already stored (same SHA-256) adds nothing (``already_imported``); rows identical in (student,
        course, term, mark) to stored rows, as in a cumulative export sent again, are skipped. Grades on a scale
        other than the database's raise :class:`StorageError`. Course names from the file only fill names still
        missing. ``catalog``, when given, is saved first, as :meth:`save_catalog` (also for a file imported
        before). Grade rows are inserted ``batch_rows`` at a time (default ``imports.BATCH_ROWS``; memory only: the
        stored rows are the same)."""
        rows = result.rows
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
                    imported_at=as_utc(prior.imported_at),
                    file_name=prior.file_name,
                    rows_added=0,
                    rows_skipped=0,
                    students_added=0,
                    courses_added=courses_added,
                )
            if not result.enrolment_only:
                check_scale(conn, result.scale, report.file_name)

            imported_at = datetime.now(UTC)
            import_id = insert_import(conn, result, imported_at=imported_at)
            written = write_grades(conn, rows, import_id=import_id, batch_rows=batch_rows)
            conn.execute(imports_table.update().where(imports_table.c.id == import_id).values(rows_added=written.added))
            return ImportSummary(
                import_id=import_id,
                already_imported=False,
                imported_at=imported_at,
                file_name=report.file_name,
                rows_added=written.added,
                rows_skipped=written.skipped,
                students_added=written.students_added,
                courses_added=courses_added + written.courses_added,
                course_names_filled=written.course_names_filled,
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
            frame = read_grades(conn, None, after_import=after_import, through_import=through_import)
        if retakes != "all" and len(frame):
            graded = frame["points"].notna()
            order = ["student_id", "course_id", "_graded"]
            if retakes == "best":
                order.append("points")
            order += ["term_key", "term_sub", "import_id", "row"]
            frame = (
                frame.assign(_graded=graded)
                .sort_values(order, na_position="first", kind="stable")
                .drop_duplicates(["student_id", "course_id"], keep="last")
            )
        else:
            order = ["student_id", "course_id", "term_key", "term_sub", "import_id", "row"]
            frame = frame.sort_values(order, na_position="first")
        return _public(frame)

    def load_grade_rows(
        self, retakes: RetakePolicy = "latest", *, through_import: int | None = None, chunk_rows: int = READ_CHUNK
    ) -> StoredGrades:
        """What :meth:`load_grades` returns (the same rows, in the same order), as the index arrays training reads:
        the database is read ``chunk_rows`` rows at a time and no string per row is made."""
        if retakes not in RETAKE_POLICIES:
            raise DataError(f"retake policy {retakes!r} is unknown; expected one of {', '.join(RETAKE_POLICIES)}")
        with self._begin() as conn:
            return read_grade_rows(conn, retakes=retakes, through_import=through_import, chunk_rows=chunk_rows)

    def student_history(self, pseudonym: str) -> pd.DataFrame:
        """Every stored row (all attempts) of one student, oldest first; empty when the pseudonym is unknown."""
        with self._begin() as conn:
            frame = read_grades(conn, pseudonym)
        return _public(frame.sort_values(["term_key", "term_sub", "import_id", "row"], na_position="first"))

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

    def plans(self) -> list[StoredPlan]:
        """Every term with a stored plan (its k, its number of courses, when it was made), by term."""
        with self._begin() as conn:
            return read_plans(conn)

    def terms(self) -> list[tuple[str, int]]:
        """The dated terms of the stored grades: (label, order key) pairs, oldest first."""
        g = grades_table
        stmt = sa.select(g.c.term, g.c.term_key).where(g.c.term_key.is_not(None)).distinct()
        with self._begin() as conn:
            pairs = {(str(term), int(key)) for term, key in conn.execute(stmt).all()}
        return sorted(pairs, key=lambda pair: (pair[1], pair[0]))

    def last_import(self) -> int | None:
        """The number of the latest import (None before any): what the stored grades are as of."""
        with self._begin() as conn:
            return conn.execute(sa.select(sa.func.max(imports_table.c.id))).scalar_one_or_none()

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
                imported_at=as_utc(r.imported_at),
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


# ---------------------------------------------------------------------- reading
def _public(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[:, list(GRADE_COLUMNS)].reset_index(drop=True)
