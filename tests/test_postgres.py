"""PostgreSQL-only behaviour (the shared contract runs on PostgreSQL from test_storage.py).

Needs the server at ELECTIVES_TEST_POSTGRES_URL; these tests fail, never skip, when it is unreachable."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
import sqlalchemy as sa

from electives.data.importing import FRAME_COLUMNS, CleaningReport, ImportResult
from electives.data.scales import load_scale
from electives.data.storage import Store
from electives.data.storage import imports as storage
from electives.errors import StorageError

pytestmark = pytest.mark.postgres

PG_URL = os.environ.get(
    "ELECTIVES_TEST_POSTGRES_URL", "postgresql+psycopg://electives:electives@localhost/electives_test"
)
FOREIGN_KEYS = {"fk_grades_student", "fk_grades_course", "fk_grades_import"}


@pytest.fixture
def admin() -> Iterator[sa.Engine]:
    engine = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        pytest.fail(
            f"PostgreSQL at {engine.url!r} is unreachable ({exc.orig}); start it or set ELECTIVES_TEST_POSTGRES_URL"
        )
    yield engine
    engine.dispose()


@pytest.fixture
def schema(admin: sa.Engine) -> Iterator[str]:
    """A unique schema per test, so parallel and earlier runs never collide."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')


def schema_url(schema: str) -> str:
    url = sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def store(schema: str) -> Iterator[Store]:
    with Store(schema_url(schema)) as s:
        yield s


def result(rows: list[tuple[str, str, float]], name: str = "g.csv") -> ImportResult:
    frame = pd.DataFrame(
        [
            {
                "row": i + 2,
                "student": s,
                "course": c,
                "course_name": None,
                "term": "2020-Fall",
                "term_key": 20206,
                "mark": str(p),
                "points": p,
                "grade": p / 100,
            }
            for i, (s, c, p) in enumerate(rows)
        ],
        columns=list(FRAME_COLUMNS),
    )
    report = CleaningReport(name, uuid.uuid4().hex * 2, "utf-8", ",", "percent", len(rows), len(rows))
    return ImportResult(frame=frame, report=report, scale=load_scale("percent"), enrolment_only=False)


def constraints(admin: sa.Engine, schema: str) -> set[str]:
    with admin.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT conname FROM pg_constraint WHERE conrelid = %(t)s::regclass AND contype = 'f'",
            {"t": f'"{schema}".grades'},
        ).all()
    return {r[0] for r in rows}


def test_tables_live_in_the_tests_own_schema(admin: sa.Engine, schema: str, store: Store) -> None:
    store.save_import(result([("s1", "A", 80.0)]))
    with admin.connect() as conn:
        n = conn.exec_driver_sql(f'SELECT count(*) FROM "{schema}".grades').scalar()
    assert n == 1


def test_bulk_import_checks_foreign_keys_once_and_keeps_them(
    admin: sa.Engine, schema: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "PG_BULK_ROWS", 2)
    monkeypatch.setattr(storage, "BATCH_ROWS", 2)
    summary = store.save_import(result([("s1", "A", 80.0), ("s2", "A", 70.0), ("s2", "B", 60.0)]))
    assert summary.rows_added == 3
    assert constraints(admin, schema) == FOREIGN_KEYS
    with pytest.raises(sa.exc.IntegrityError), admin.connect() as conn:
        conn.exec_driver_sql(f'INSERT INTO "{schema}".grades (student_id, course_id, import_id) VALUES (999999, 1, 1)')


def test_failed_bulk_import_restores_foreign_keys(
    admin: sa.Engine, schema: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "PG_BULK_ROWS", 2)
    real = storage.write_rows

    def failing(conn, table, columns, rows):
        if table is storage.grades_table:
            real(conn, table, columns, rows)
            raise RuntimeError("interrupted")
        return real(conn, table, columns, rows)

    monkeypatch.setattr(storage, "write_rows", failing)
    with pytest.raises(RuntimeError):
        store.save_import(result([("s1", "A", 80.0), ("s2", "A", 70.0)]))
    assert constraints(admin, schema) == FOREIGN_KEYS
    assert store.counts() == {"students": 0, "courses": 0, "grades": 0, "imports": 0}


def test_unreachable_server_is_a_storage_error_without_password() -> None:
    url = sa.make_url(PG_URL).set(password="t0p-secret", port=1)
    with pytest.raises(StorageError, match=r"database postgresql\+psycopg://.*:\*\*\*@.*:1/.*refused") as info:
        Store(url.render_as_string(hide_password=False))
    assert "t0p-secret" not in str(info.value)


def test_wrong_password_is_a_storage_error_without_password() -> None:
    url = sa.make_url(PG_URL).set(password="wr0ng-pass")
    with pytest.raises(StorageError, match="password authentication failed") as info:
        Store(url.render_as_string(hide_password=False))
    assert "wr0ng-pass" not in str(info.value)


def test_missing_database_is_a_storage_error() -> None:
    url = sa.make_url(PG_URL).set(database=f"no_such_db_{uuid.uuid4().hex[:8]}")
    with pytest.raises(StorageError, match="does not exist"):
        Store(url.render_as_string(hide_password=False))


def test_repr_hides_password(store: Store) -> None:
    password = sa.make_url(PG_URL).password
    assert password and f":{password}@" not in repr(store) and ":***@" in repr(store)
