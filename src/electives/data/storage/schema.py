"""The grade store's tables: SQLAlchemy Core metadata for imports, courses, pseudonymous students and their
grades, the per-course counts of seat plans, the schema version a database is checked against when it is opened,
and the migrations that bring an older database up to it (:func:`migrate`, in the opening transaction).

Versions: 1 — imports, courses, students, grades; 2 — ``grades.term_sub`` (the order of terms that share a key);
3 — ``courses.capacity`` (seats per offering) and ``plan_courses`` (a plan's demand, seats and allocated count per
course and term: counts only, no student); 4 — ``courses.programmes`` (the programmes that require a course)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from electives.data.terms import stored_sub

# 3: courses.capacity and plan_courses (seat plans); 4: courses.programmes.
SCHEMA_VERSION = 4

metadata = sa.MetaData()
meta_table = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
courses_table = sa.Table(
    "courses",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("code", sa.String, nullable=False, unique=True),
    sa.Column("name", sa.Text),
    sa.Column("elective", sa.Boolean),
    sa.Column("credits", sa.Float),
    sa.Column("department", sa.Text),
    sa.Column("prerequisites", sa.Text),  # ';'-separated course codes
    sa.Column("terms_offered", sa.Text),  # ';'-separated seasons / term labels
    sa.Column("description", sa.Text),
    sa.Column("capacity", sa.Integer),  # seats per offering; NULL: unlimited (version 3)
    sa.Column("programmes", sa.Text),  # ';'-separated programmes requiring the course; NULL: not named (version 4)
)
students_table = sa.Table(
    "students",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("pseudonym", sa.String, nullable=False, unique=True),
)
imports_table = sa.Table(
    "imports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("file_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("scale_name", sa.Text, nullable=False),
    sa.Column("scale_toml", sa.Text, nullable=False),
    sa.Column("enrolment_only", sa.Boolean, nullable=False),
    sa.Column("rows_kept", sa.Integer, nullable=False),
    sa.Column("rows_added", sa.Integer, nullable=False),
    sa.Column("report", sa.Text, nullable=False),  # CleaningReport as JSON
)
grades_table = sa.Table(
    "grades",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id", name="fk_grades_student"), nullable=False),
    sa.Column("course_id", sa.Integer, sa.ForeignKey("courses.id", name="fk_grades_course"), nullable=False),
    sa.Column("term", sa.Text),
    sa.Column("term_key", sa.Integer),
    sa.Column("term_sub", sa.Integer),  # order among terms sharing term_key (Term.sub); NULL without a term key
    sa.Column("mark", sa.Text),
    sa.Column("points", sa.Float),
    sa.Column("grade", sa.Float),
    sa.Column("import_id", sa.Integer, sa.ForeignKey("imports.id", name="fk_grades_import"), nullable=False),
    sa.Column("row", sa.Integer),
    sa.Index("ix_grades_student_course", "student_id", "course_id"),
)
# Columns of a grade row as inserted, in the order of the tuples written.
GRADE_INSERT = (
    "student_id", "course_id", "term", "term_key", "term_sub", "mark", "points", "grade", "import_id", "row",
)  # fmt: skip

# A seat plan's aggregate per (term, course): what recommendations read to say "likely full" (version 3).
plan_courses_table = sa.Table(
    "plan_courses",
    metadata,
    sa.Column("term", sa.String(64), primary_key=True),  # canonical: "2024-Fall" or a season such as "Fall"
    sa.Column("course", sa.String, primary_key=True),  # course code
    sa.Column("k", sa.Integer, nullable=False),  # electives per student the plan asked for
    sa.Column("demand", sa.Integer, nullable=False),  # students with the course in their own top k
    sa.Column("seats", sa.Integer),  # NULL: unlimited
    sa.Column("allocated", sa.Integer, nullable=False),
    sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
)


def migrate(conn: Connection, version: str) -> bool:
    """Bring a database of schema ``version`` up to :data:`SCHEMA_VERSION` inside the caller's transaction (all
    of it or nothing; tables that did not exist were already created by ``metadata.create_all``); False when no
    migration starts from ``version`` (a newer or unknown schema)."""
    if version not in ("1", "2", "3"):
        return False
    if version == "1":
        _add_term_sub(conn)
    if version in ("1", "2"):
        _add_capacity(conn)
    _add_programmes(conn)
    return True


def _add_programmes(conn: Connection) -> None:
    """3 → 4: courses get ``programmes`` (NULL: the catalogue named none)."""
    quote = conn.dialect.identifier_preparer
    conn.exec_driver_sql(f"ALTER TABLE {quote.format_table(courses_table)} ADD COLUMN programmes TEXT")


def _add_capacity(conn: Connection) -> None:
    """2 → 3: courses get ``capacity`` (NULL: unlimited); ``plan_courses`` is a new table."""
    quote = conn.dialect.identifier_preparer
    conn.exec_driver_sql(f"ALTER TABLE {quote.format_table(courses_table)} ADD COLUMN capacity INTEGER")


def _add_term_sub(conn: Connection) -> None:
    """1 → 2: grades get ``term_sub``, each stored (label, key) read again (:func:`stored_sub`)."""
    quote = conn.dialect.identifier_preparer
    conn.exec_driver_sql(f"ALTER TABLE {quote.format_table(grades_table)} ADD COLUMN {quote.quote('term_sub')} INTEGER")
    g = grades_table
    stored = conn.execute(sa.select(g.c.term, g.c.term_key).where(g.c.term_key.is_not(None)).distinct()).all()
    subs = [{"b_label": label, "b_key": key, "b_sub": stored_sub(label, key)} for label, key in stored]
    conn.execute(sa.update(g).where(g.c.term_key.is_not(None)).values(term_sub=0))
    subs = [s for s in subs if s["b_sub"]]
    if subs:
        conn.execute(
            sa.update(g)
            .where(g.c.term == sa.bindparam("b_label"), g.c.term_key == sa.bindparam("b_key"))
            .values(term_sub=sa.bindparam("b_sub")),
            subs,
        )
