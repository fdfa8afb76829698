"""Connecting the grade store to a database: URL handling (never showing the password), engine options per
backend, SQLite's pragmas and locking, and the driver-level bulk paths: a select read into a frame or streamed in
chunks, and plain tuples inserted in bulk."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import ArgumentError

from electives.errors import StorageError

WRITE_OPTION = "electives_write"  # execution option marking write transactions


def hide_password(url: str) -> str:
    """A URL as it may be shown: without its password (best effort for a URL that does not parse)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1] if "@" in url else url


def as_utc(value: datetime) -> datetime:
    """A stored time as an aware UTC time (SQLite has no time zones: it hands back the naive UTC time stored)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def make_parent_dir(url: URL) -> None:
    """Create the directory of an SQLite file, so that a first import can name a new folder."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    if url.database.startswith("file:"):
        return  # SQLite URI filenames: left to SQLite
    parent = Path(url.database).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create directory {parent} for database {url.database}: {exc.strerror}") from None


def engine_options(url: URL) -> dict[str, Any]:
    """Connection timeouts per backend: wait for SQLite's lock, give up on an unreachable server."""
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 30}}
    if url.get_driver_name() in ("psycopg", "psycopg2") and "connect_timeout" not in url.query:
        return {"connect_args": {"connect_timeout": 10}}
    return {}


def configure_sqlite(engine: sa.Engine, *, in_memory: bool) -> None:
    """SQLite pragmas on every connection, and transactions that take the write lock up front for writes."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below open the transaction, so reads and writes of one call are atomic.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys = ON")
        if not in_memory:
            cur.execute("PRAGMA journal_mode = WAL")  # readers do not block the writer
            cur.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; safe with WAL
        cur.execute("PRAGMA cache_size = -65536")
        cur.execute("PRAGMA temp_store = MEMORY")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: upgrading a read transaction later can fail at once with
        # "database is locked" instead of waiting for the other writer.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")


def fetch_frame(conn: Connection, stmt: sa.Select) -> pd.DataFrame:
    """A select as a frame via the driver's own cursor: SQLAlchemy Row objects cost seconds per million rows."""
    names = list(stmt.selected_columns.keys())
    (rows,) = stream_rows(conn, stmt, size=None)
    return (
        pd.DataFrame.from_records(rows, columns=names, coerce_float=False)
        if rows
        else pd.DataFrame({n: pd.Series(dtype=object) for n in names})
    )


def stream_rows(conn: Connection, stmt: sa.Select, *, size: int | None) -> Iterator[list[tuple]]:
    """A select's rows as lists of plain tuples, ``size`` at a time (None: all at once), through the driver's
    cursor in the connection's open transaction. In chunks, PostgreSQL reads through a server-side cursor, so
    that neither the driver nor Python holds the whole result."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    args: Any = tuple(params[k] for k in compiled.positiontup) if compiled.positiontup else params
    dbapi = conn.connection.dbapi_connection
    server_side = size is not None and conn.dialect.driver in ("psycopg", "psycopg2")
    cursor = dbapi.cursor(name="electives_stream") if server_side else dbapi.cursor()
    try:
        cursor.execute(compiled.string, args)
        if size is None:
            yield cursor.fetchall()
            return
        while rows := cursor.fetchmany(size):
            yield rows
    finally:
        cursor.close()


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
