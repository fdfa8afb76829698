"""The courses table: the catalogue's courses inserted or updated, a grade file's courses added with the names the
file gives them (which only fill names still missing), and the stored courses read back as
:class:`~electives.data.catalog.Course` objects."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from electives.data.catalog import Catalog, Course
from electives.data.storage.engine import write_rows
from electives.data.storage.results import CatalogSummary
from electives.data.storage.schema import courses_table

# Catalogue fields as stored; a field the catalogue leaves empty keeps the stored value.
_FIELDS = (
    "name",
    "elective",
    "credits",
    "department",
    "prerequisites",
    "terms_offered",
    "description",
    "capacity",
    "programmes",
)


def ensure_courses(conn: Connection, codes: list[str], file_names: dict[str, str]) -> tuple[dict[str, int], int, int]:
    """Ids of ``codes`` (inserting new ones, in order), how many were new, and how many stored courses without a
    name got the file's (``file_names``: code → name)."""
    t = courses_table
    stored = {r.code: (r.id, r.name) for r in conn.execute(sa.select(t.c.code, t.c.id, t.c.name))}
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


def upsert_catalog(conn: Connection, catalog: Catalog) -> CatalogSummary:
    """Insert the catalogue's new courses and update the stored ones, inside ``conn``'s transaction."""
    t = courses_table
    stored = {code for (code,) in conn.execute(sa.select(t.c.code))}
    values = [
        {
            "b_code": c.code,
            "b_name": c.name,
            "b_elective": c.elective,
            "b_credits": c.credits,
            "b_department": c.department,
            "b_prerequisites": ";".join(c.prerequisites) or None,
            "b_terms_offered": ";".join(c.terms_offered) or None,
            "b_description": c.description,
            "b_capacity": c.capacity,
            "b_programmes": ";".join(c.programmes) or None,
        }
        for c in catalog.courses
    ]
    new = [v for v in values if v["b_code"] not in stored]
    old = [v for v in values if v["b_code"] in stored]
    if new:
        conn.execute(
            t.insert().values(code=sa.bindparam("b_code"), **{f: sa.bindparam(f"b_{f}") for f in _FIELDS}), new
        )
    if old:
        # COALESCE: a field the catalogue leaves empty keeps the stored value.
        conn.execute(
            t.update()
            .where(t.c.code == sa.bindparam("b_code"))
            .values(**{f: sa.func.coalesce(sa.bindparam(f"b_{f}", type_=t.c[f].type), t.c[f]) for f in _FIELDS}),
            old,
        )
    return CatalogSummary(added=len(new), updated=len(old))


def read_courses(conn: Connection) -> list[Course]:
    """Every stored course (catalogue and grade files), by code."""
    t = courses_table
    rows = conn.execute(sa.select(t).order_by(t.c.code)).all()
    return [
        Course(
            code=r.code,
            name=r.name,
            elective=r.elective,
            prerequisites=_split(r.prerequisites),
            credits=r.credits,
            department=r.department,
            terms_offered=_split(r.terms_offered),
            description=r.description,
            capacity=r.capacity,
            programmes=_split(r.programmes),
        )
        for r in rows
    ]


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(p for p in (text or "").split(";") if p)
