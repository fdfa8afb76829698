"""Storage contract tests, run on SQLite and (marked ``postgres``) on PostgreSQL."""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from electives.data.catalog import Catalog, Course
from electives.data.importing import FRAME_COLUMNS, CleaningReport, ImportResult
from electives.data.scales import GradeScale, load_scale
from electives.data.storage import GRADE_COLUMNS, SCHEMA_VERSION, CourseSeats, Store
from electives.data.storage import imports as storage
from electives.data.term_words import YEAR_LONG_SUB
from electives.data.terms import parse_term
from electives.errors import DataError, StorageError

PG_URL = os.environ.get(
    "ELECTIVES_TEST_POSTGRES_URL", "postgresql+psycopg://electives:electives@localhost/electives_test"
)


# ---------------------------------------------------------------------- helpers
def make_result(
    rows: list[tuple[str, str, str | None, str]],
    *,
    name: str = "grades.csv",
    scale: GradeScale | str = "percent",
    enrolment_only: bool = False,
    course_names: dict[str, str] | None = None,
) -> ImportResult:
    """An import of (student, course, term, mark) rows, as the reader would build it."""
    scale = load_scale(scale) if isinstance(scale, str) else scale
    records = []
    for line, (student, course, term, mark) in enumerate(rows, start=2):
        points = math.nan if enrolment_only else scale.parse(mark).points
        points = math.nan if points is None else points
        records.append(
            {
                "row": line,
                "student": student,
                "course": course,
                "course_name": (course_names or {}).get(course),
                "term": parse_term(term).label if term else None,
                "term_key": parse_term(term).key if term else None,
                "mark": mark,
                "points": points,
                "grade": points if math.isnan(points) else scale.normalise(points),
            }
        )
    frame = pd.DataFrame(records, columns=list(FRAME_COLUMNS))
    sha = hashlib.sha256(repr((name, rows)).encode()).hexdigest()
    report = CleaningReport(name, sha, "utf-8", ",", scale.name, rows_read=len(rows), rows_kept=len(rows))
    report.dropped["empty-grade"] = 1
    return ImportResult(frame=frame, report=report, scale=scale, enrolment_only=enrolment_only)


FALL = [
    ("s1", "MATH", "2020-Fall", "70"),
    ("s1", "ART", "2020-Fall", "85"),
    ("s2", "MATH", "2020-Fall", "55"),
]
SPRING = [
    ("s1", "MATH", "2021-Spring", "90"),  # s1 retakes MATH
    ("s3", "ART", "2021-Spring", "60"),
]


def as_records(frame: pd.DataFrame) -> list[tuple]:
    """Rows as plain tuples, in the frame's order."""
    return [
        (r.student, r.course, r.term, None if pd.isna(r.term_key) else int(r.term_key), r.mark, r.points)
        for r in frame.itertuples()
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'electives.db'}"
    else:
        with postgres_schema() as pg_url:
            yield pg_url


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with Store(url) as s:
        yield s


class postgres_schema:
    """A fresh schema on the test server, reached through the URL's search_path, dropped afterwards. Fails
    (never skips) when the server is unreachable: CI starts it, so its absence is a broken setup."""

    def __enter__(self) -> str:
        url = sa.make_url(PG_URL)
        self.name = f"t_{uuid.uuid4().hex[:16]}"
        self.admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        try:
            with self.admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{self.name}"')
        except sa.exc.OperationalError as exc:
            self.admin.dispose()
            pytest.fail(
                f"PostgreSQL at {url.render_as_string(hide_password=True)} is unreachable ({exc.orig}); "
                "start it or set ELECTIVES_TEST_POSTGRES_URL"
            )
        return url.update_query_dict({"options": f"-csearch_path={self.name}"}).render_as_string(hide_password=False)

    def __exit__(self, *exc: object) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{self.name}" CASCADE')
        self.admin.dispose()


# ---------------------------------------------------------------------- contract (both backends)
def test_terms_plans_and_the_latest_import(store: Store) -> None:
    """What the advisor page lists: the dated terms of the grades, the terms with a plan, the latest import."""
    assert store.terms() == [] and store.plans() == [] and store.last_import() is None
    store.save_import(make_result(SPRING, name="spring.csv"))
    store.save_import(make_result(FALL, name="fall.csv"))
    assert store.terms() == [("2020-Fall", 20206), ("2021-Spring", 20212)]  # oldest first, whatever the order in
    assert store.last_import() == max(r.id for r in store.imports())
    before = datetime.now(UTC)
    store.save_plan("2021-Fall", [CourseSeats("MATH", 2, 10, 5, 5), CourseSeats("ART", 2, 3, None, 3)])
    store.save_plan("Spring", [CourseSeats("ART", 1, 1, 5, 1)])
    plans = store.plans()
    assert [(p.term, p.k, p.courses) for p in plans] == [("2021-Fall", 2, 2), ("Spring", 1, 1)]
    assert all(p.planned_at.tzinfo is not None and p.planned_at >= before - timedelta(seconds=5) for p in plans)


def test_round_trip(store: Store) -> None:
    result = make_result(FALL, course_names={"MATH": "Calculus"})
    summary = store.save_import(result)
    assert (summary.already_imported, summary.rows_added, summary.rows_skipped) == (False, 3, 0)
    assert (summary.students_added, summary.courses_added, summary.course_names_filled) == (2, 2, 0)
    assert summary.imported_at.tzinfo is not None

    grades = store.load_grades("all").sort_values(["student", "course"])
    assert list(grades.columns) == ["student", "course", "term", "term_key", "mark", "points", "grade"]
    assert as_records(grades) == [
        ("s1", "ART", "2020-Fall", 20206, "85", 85.0),
        ("s1", "MATH", "2020-Fall", 20206, "70", 70.0),
        ("s2", "MATH", "2020-Fall", 20206, "55", 55.0),
    ]
    assert grades["grade"].tolist() == pytest.approx([0.85, 0.70, 0.55])
    assert store.counts() == {"students": 2, "courses": 2, "grades": 3, "imports": 1}
    assert store.scale() == load_scale("percent")
    assert {c.code: c.name for c in store.courses()} == {"ART": None, "MATH": "Calculus"}

    [record] = store.imports()
    assert (record.id, record.file_name, record.scale_name, record.enrolment_only) == (
        summary.import_id,
        "grades.csv",
        "percent",
        False,
    )
    assert (record.rows_kept, record.rows_added, record.imported_at) == (3, 3, summary.imported_at)
    assert record.report["dropped"] == {"empty-grade": 1}
    assert record.file_sha256 == result.report.file_sha256


def test_reimport_of_same_file_changes_nothing(store: Store) -> None:
    first = store.save_import(make_result(FALL))
    again = store.save_import(make_result(FALL))
    assert again.already_imported
    assert (again.import_id, again.imported_at, again.rows_added, again.students_added) == (
        first.import_id,
        first.imported_at,
        0,
        0,
    )
    assert store.counts() == {"students": 2, "courses": 2, "grades": 3, "imports": 1}


def test_next_term_appends_and_cumulative_rows_are_skipped(store: Store) -> None:
    store.save_import(make_result(FALL, name="fall.csv"))
    nxt = store.save_import(make_result(SPRING, name="spring.csv"))
    assert (nxt.rows_added, nxt.rows_skipped, nxt.students_added, nxt.courses_added) == (2, 0, 1, 0)
    # A cumulative export (both terms, one new row) re-sends what is stored already.
    cumulative = store.save_import(make_result([*FALL, *SPRING, ("s3", "MATH", "2021-Spring", "75")], name="all.csv"))
    assert (cumulative.already_imported, cumulative.rows_added, cumulative.rows_skipped) == (False, 1, 5)
    assert store.counts() == {"students": 3, "courses": 2, "grades": 6, "imports": 3}
    assert len(store.load_grades("all")) == 6


def test_same_row_twice_in_one_file_is_stored_once(store: Store) -> None:
    summary = store.save_import(make_result([FALL[0], FALL[0], FALL[1]]))
    assert (summary.rows_added, summary.rows_skipped) == (2, 1)


def test_failure_midway_leaves_database_unchanged(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.save_import(make_result(FALL, name="fall.csv"))
    before = store.counts()
    real = storage.write_rows
    calls = {"grades": 0}

    def failing(conn, table, columns, rows):
        if table is storage.grades_table:
            calls["grades"] += 1
            if calls["grades"] == 2:
                raise RuntimeError("disk on fire")
        return real(conn, table, columns, rows)

    monkeypatch.setattr(storage, "BATCH_ROWS", 1)
    monkeypatch.setattr(storage, "write_rows", failing)
    spring = make_result([*SPRING, ("s9", "NEW", "2021-Spring", "80")], name="spring.csv")
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.save_import(spring)
    assert calls["grades"] == 2  # the first batch was written before the failure
    assert store.counts() == before
    assert [i.file_name for i in store.imports()] == ["fall.csv"]
    assert "NEW" not in {c.code for c in store.courses()}

    monkeypatch.setattr(storage, "write_rows", real)
    summary = store.save_import(spring)  # not recorded as imported by the failed attempt
    assert (summary.already_imported, summary.rows_added) == (False, 3)


def test_failure_before_any_scale_leaves_no_scale(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(storage, "write_rows", failing)
    with pytest.raises(RuntimeError):
        store.save_import(make_result(FALL))
    assert store.scale() is None
    assert store.counts() == {"students": 0, "courses": 0, "grades": 0, "imports": 0}


def test_other_scale_is_refused_naming_both(store: Store) -> None:
    store.save_import(make_result(FALL, name="fall.csv", scale="percent"))
    gpa = make_result([("s1", "PHYS", "2021-Spring", "3.3")], name="gpa.csv", scale="gpa4")
    with pytest.raises(StorageError, match=r"gpa\.csv is on grade scale 'gpa4'.*scale 'percent'"):
        store.save_import(gpa)
    assert store.counts()["imports"] == 1


def test_same_scale_name_with_other_definition_is_refused(store: Store) -> None:
    store.save_import(make_result(FALL, scale="percent"))
    other = GradeScale.from_toml('name = "percent"\nlow = 0\nhigh = 200\nnumeric = true\n')
    with pytest.raises(StorageError, match="definition differs"):
        store.save_import(make_result([("s1", "PHYS", "2021-Spring", "150")], name="x.csv", scale=other))


def test_enrolment_only_imports_mix_with_any_scale(store: Store) -> None:
    store.save_import(make_result([("s5", "ART", None, "")], name="enrol.csv", scale="gpa4", enrolment_only=True))
    assert store.scale() is None  # enrolment-only data fixes no scale
    store.save_import(make_result(FALL, name="fall.csv", scale="percent"))
    store.save_import(make_result([("s6", "ART", None, "")], name="enrol2.csv", scale="gpa4", enrolment_only=True))
    assert store.scale().name == "percent"
    grades = store.load_grades()
    enrol = grades[grades["student"].isin(["s5", "s6"])]
    assert len(enrol) == 2 and enrol["grade"].isna().all() and enrol["term_key"].isna().all()


def test_retake_policies_across_imports(store: Store) -> None:
    store.save_import(make_result(FALL, name="fall.csv"))
    store.save_import(make_result([*SPRING, ("s2", "MATH", "2021-Fall", "W")], name="spring.csv"))
    latest = store.load_grades("latest")
    best = store.load_grades("best")
    everything = store.load_grades("all")

    def pick(frame: pd.DataFrame, student: str, course: str) -> list[str]:
        return frame.loc[(frame.student == student) & (frame.course == course), "mark"].tolist()

    assert len(everything) == 6 and pick(everything, "s1", "MATH") == ["70", "90"]
    assert pick(latest, "s1", "MATH") == ["90"] and pick(best, "s1", "MATH") == ["90"]
    # A later withdrawal does not hide the grade the student earned.
    assert pick(latest, "s2", "MATH") == ["55"] and pick(best, "s2", "MATH") == ["55"]
    assert len(latest) == len(best) == 4
    assert latest["term_key"].dtype == "Int64"


def test_grades_by_import_number(store: Store) -> None:
    """What a model trained through import 1 saw, and what came after it (electives monitor, train --challenge)."""
    first = store.save_import(make_result(FALL, name="fall.csv")).import_id
    store.save_import(make_result(SPRING, name="spring.csv"))
    seen = store.load_grades("latest", through_import=first)
    new = store.load_grades("all", after_import=first)
    assert sorted(seen["mark"]) == ["55", "70", "85"]  # s1's MATH as it stood before the retake
    assert sorted(zip(new["student"], new["course"], new["mark"], strict=True)) == [
        ("s1", "MATH", "90"),
        ("s3", "ART", "60"),
    ]
    assert store.load_grades("all", after_import=first + 1).empty


def test_latest_and_best_differ(store: Store) -> None:
    store.save_import(make_result([("s1", "MATH", "2020-Fall", "90")], name="a.csv"))
    store.save_import(make_result([("s1", "MATH", "2021-Fall", "60")], name="b.csv"))
    assert store.load_grades("latest")["mark"].tolist() == ["60"]
    assert store.load_grades("best")["mark"].tolist() == ["90"]


def test_same_term_tie_goes_to_later_import_then_row(store: Store) -> None:
    store.save_import(make_result([("s1", "MATH", "2020-Fall", "70")], name="a.csv"))
    store.save_import(make_result([("s1", "MATH", "2020-Fall", "65"), ("s1", "MATH", "2020-Fall", "66")], name="b.csv"))
    assert store.load_grades("latest")["mark"].tolist() == ["66"]
    assert store.load_grades("best")["mark"].tolist() == ["70"]


def test_terms_sharing_a_key_keep_their_order(store: Store) -> None:
    """Summer schools 2012 91 and 2012 95 share the year's last key: their sub orders them in storage too."""
    store.save_import(make_result([("s1", "X", "2012 95", "60"), ("s1", "Y", "2021-Fall", "70")], name="a.csv"))
    later = [("s1", "X", "2012 91", "40"), ("s2", "Z", "2012 91", "50"), ("s2", "Z", "2012 95", "50")]
    summary = store.save_import(make_result(later, name="b.csv"))
    assert summary.rows_added == 3  # the same mark in another summer school is another attempt, not a copy
    assert store.load_grades("latest").set_index(["student", "course"])["term"].to_dict() == {
        ("s1", "X"): "2012-95",  # the later summer school, though imported first
        ("s1", "Y"): "2021-Fall",
        ("s2", "Z"): "2012-95",
    }
    assert store.student_history("s1")["term"].tolist() == ["2012-91", "2012-95", "2021-Fall"]
    rows = store.load_grade_rows("latest").rows
    assert np.isclose(rows.grades, [0.6, 0.7, 0.5]).all()


def test_a_schema_1_database_is_migrated(url: str) -> None:
    """A database from before term_sub: opening it adds the column and reads each stored label's sub again."""
    rows = [("s1", "X", "2012 95", "60"), ("s1", "X", "2012 91", "40"), ("s1", "Y", "2020-21", "70"),
            ("s1", "W", "2021-Spring", "80"), ("s2", "X", None, "50")]  # fmt: skip
    with Store(url) as store:
        store.save_import(make_result(rows))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE grades DROP COLUMN term_sub")
        conn.exec_driver_sql("ALTER TABLE courses DROP COLUMN capacity")  # schema 3's, so not in a schema 1 file
        conn.exec_driver_sql("ALTER TABLE courses DROP COLUMN programmes")  # schema 4's
        conn.exec_driver_sql("DROP TABLE plan_courses")
        conn.exec_driver_sql("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with Store(url) as store:
        assert store.load_grades("latest").set_index(["student", "course"])["mark"].to_dict() == {
            ("s1", "W"): "80", ("s1", "X"): "60", ("s1", "Y"): "70", ("s2", "X"): "50",
        }  # fmt: skip
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema_version'").scalar() == str(
            SCHEMA_VERSION
        )
        subs = dict(conn.exec_driver_sql("SELECT term, term_sub FROM grades").all())
    engine.dispose()
    assert subs == {"2012-95": 95, "2012-91": 91, "2020-21 Year": YEAR_LONG_SUB, "2021-Spring": 0, None: None}


def test_empty_store_reads(store: Store) -> None:
    assert store.scale() is None and store.imports() == [] and store.courses() == []
    for policy in ("latest", "best", "all"):
        grades = store.load_grades(policy)
        assert grades.empty and list(grades.columns) == list(GRADE_COLUMNS)
        assert grades["term_key"].dtype == "Int64" and grades["grade"].dtype == float
    assert store.student_history("s1").empty


def test_unknown_retake_policy(store: Store) -> None:
    with pytest.raises(DataError, match="retake policy 'worst' is unknown"):
        store.load_grades("worst")  # type: ignore[arg-type]


def test_student_history(store: Store) -> None:
    store.save_import(make_result(SPRING, name="spring.csv"))
    store.save_import(make_result(FALL, name="fall.csv"))
    history = store.student_history("s1")
    assert as_records(history) == [
        ("s1", "MATH", "2020-Fall", 20206, "70", 70.0),
        ("s1", "ART", "2020-Fall", 20206, "85", 85.0),
        ("s1", "MATH", "2021-Spring", 20212, "90", 90.0),
    ]
    assert store.student_history("nobody").empty


def test_catalogue_names_win_over_grade_file_names(store: Store) -> None:
    catalog = Catalog(
        (
            Course("MATH", "Calculus I", elective=False, credits=6.0, terms_offered=("Fall",)),
            Course("STAT", "Statistics", elective=True, prerequisites=("MATH",)),
        )
    )
    result = make_result(FALL, course_names={"MATH": "calc 1 (registrar)", "ART": "Art History"})
    summary = store.save_import(result, catalog=catalog)
    assert (summary.courses_added, summary.course_names_filled) == (3, 0)  # STAT, MATH from catalogue + ART
    courses = {c.code: c for c in store.courses()}
    assert courses["MATH"].name == "Calculus I" and courses["ART"].name == "Art History"
    assert courses["STAT"].prerequisites == ("MATH",) and courses["STAT"].elective is True
    assert courses["MATH"].credits == 6.0 and courses["MATH"].terms_offered == ("Fall",)

    # A later catalogue names ART: the catalogue wins; its empty fields keep what is stored.
    update = store.save_catalog(Catalog((Course("ART", "Art History I", elective=True), Course("MATH", "Calc"))))
    assert (update.added, update.updated) == (0, 2)
    courses = {c.code: c for c in store.courses()}
    assert (courses["ART"].name, courses["ART"].elective) == ("Art History I", True)
    assert (courses["MATH"].name, courses["MATH"].credits, courses["MATH"].elective) == ("Calc", 6.0, False)


def test_grade_file_fills_missing_names_only(store: Store) -> None:
    store.save_import(make_result(FALL, name="fall.csv"))
    summary = store.save_import(make_result(SPRING, name="spring.csv", course_names={"MATH": "Calculus"}))
    assert summary.course_names_filled == 1
    store.save_import(make_result([("s1", "MATH", "2022-Fall", "50")], course_names={"MATH": "Other"}))
    assert {c.code: c.name for c in store.courses()}["MATH"] == "Calculus"


def test_bulk_rows_in_many_batches(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "BATCH_ROWS", 7)
    monkeypatch.setattr(storage, "IN_CHUNK", 3)
    rows = [(f"s{i % 13}", f"C{i % 11}", "2020-Fall", str(i % 101)) for i in range(143)]
    assert store.save_import(make_result(rows, name="a.csv")).rows_added == 143
    # The re-sent rows are found across several IN (...) chunks of students.
    again = store.save_import(make_result([*rows, ("s1", "C1", "2021-Fall", "1")], name="b.csv"))
    assert (again.rows_added, again.rows_skipped) == (1, 143)
    loaded = store.load_grades("all")
    assert len(loaded) == 144 and sorted(loaded["points"].tolist()) == sorted([*(i % 101 for i in range(143)), 1])


def test_frame_dtypes_as_the_reader_may_build_them(store: Store) -> None:
    result = make_result(FALL)
    result.frame["term_key"] = result.frame["term_key"].astype("Int64")
    result.frame["course_name"] = np.nan
    store.save_import(result)
    assert store.load_grades("all")["term_key"].tolist() == [20206] * 3


# ---------------------------------------------------------------------- SQLite specifics and errors
def test_sqlite_creates_parent_dirs_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "grades.db"
    with Store(f"sqlite:///{path}") as store, store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert path.exists()
    # The schema version is recorded for later migrations.
    version = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),)


def test_version_2_database_is_migrated(tmp_path: Path) -> None:
    """A database written before seats existed (schema 2: no courses.capacity, no plan_courses) opens as the
    current schema with its courses kept, and then stores capacities and plans."""
    path = tmp_path / "v1.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:  # back to what version 1 wrote
        db.execute("ALTER TABLE courses DROP COLUMN capacity")
        db.execute("ALTER TABLE courses DROP COLUMN programmes")
        db.execute("DROP TABLE plan_courses")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        db.execute("INSERT INTO courses (code, name, elective) VALUES ('CS210', 'Databases', 1)")
    with Store(f"sqlite:///{path}") as store:
        assert [(c.code, c.name, c.capacity) for c in store.courses()] == [("CS210", "Databases", None)]
        store.save_catalog(Catalog((Course("CS210", "Databases", elective=True, capacity=40),)))
        assert store.courses()[0].capacity == 40
        store.save_plan("2024-Fall", [CourseSeats("CS210", k=2, demand=55, seats=40, allocated=40)])
        assert store.plan("2024-Fall")["CS210"].likely_full
    version = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),)


def test_version_3_database_is_migrated(tmp_path: Path) -> None:
    """A database written before programmes were stored (schema 3) opens as the current schema, its courses kept,
    and then stores the programmes a catalogue names; a later catalogue that leaves them empty keeps them."""
    path = tmp_path / "v3.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE courses DROP COLUMN programmes")
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        db.execute("INSERT INTO courses (code, name, elective, capacity) VALUES ('MA101', 'Calculus', 0, 90)")
    with Store(f"sqlite:///{path}") as store:
        assert [(c.code, c.capacity, c.programmes) for c in store.courses()] == [("MA101", 90, ())]
        store.save_catalog(Catalog((Course("MA101", "Calculus", elective=False, programmes=("Maths", "Physics")),)))
        assert store.courses()[0].programmes == ("Maths", "Physics")
        store.save_catalog(Catalog((Course("MA101", "Calculus", elective=False),)))
        assert store.courses()[0].programmes == ("Maths", "Physics")
    version = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),)


def test_plan_counts_replace_the_terms_earlier_plan(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'p.db'}") as store:
        store.save_plan("2024-Fall", [CourseSeats("A", 2, 10, 5, 5), CourseSeats("B", 2, 3, None, 3)])
        store.save_plan("Spring", [CourseSeats("A", 1, 1, 5, 1)])
        store.save_plan("2024-Fall", [CourseSeats("B", 2, 4, 10, 4)])
        assert store.plan("2024-Fall") == {"B": CourseSeats("B", 2, 4, 10, 4)}
        assert not store.plan("2024-Fall")["B"].likely_full
        assert store.plan("Spring")["A"] == CourseSeats("A", 1, 1, 5, 1)
        assert store.plan("2025-Fall") == {}


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    Store(url).close()
    with sqlite3.connect(tmp_path / "x.db") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StorageError, match="schema version 99"):
        Store(url)


def test_unwritable_location(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="cannot create directory"):
        Store(f"sqlite:///{blocker / 'sub' / 'x.db'}")
    with pytest.raises(StorageError, match=r"database sqlite:///.*unable to open database file"):
        Store(f"sqlite:///{tmp_path}")  # a directory, not a file


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a database URL"),
        ("nosuchdb://user:s3cret@host/db", r"cannot use database nosuchdb://user:\*\*\*@host/db"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message) as info:
        Store(url)
    assert "s3cret" not in str(info.value)


def test_concurrent_sqlite_imports_wait_for_each_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    Store(url).close()
    real = storage.write_rows
    started = threading.Event()

    def slow(conn, table, columns, rows):
        if table is storage.grades_table:
            started.set()
            time.sleep(0.3)  # hold the write transaction while the other import starts
        return real(conn, table, columns, rows)

    monkeypatch.setattr(storage, "write_rows", slow)
    errors: list[BaseException] = []

    def run(rows: list[tuple], name: str) -> None:
        try:
            with Store(url) as s:
                s.save_import(make_result(rows, name=name))
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=run, args=(FALL, "fall.csv"))
    first.start()
    started.wait(5)
    run(SPRING, "spring.csv")
    first.join()
    assert errors == []
    with Store(url) as s:
        assert s.counts() == {"students": 3, "courses": 2, "grades": 5, "imports": 2}
