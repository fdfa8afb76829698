"""The grade store's tables: SQLAlchemy Core metadata for imports, courses, pseudonymous students and their
grades, the per-course counts of seat plans, and the schema version a database is checked against when it is
opened (:func:`migrate` brings an older database up to it).

Versions: 1 — imports, courses, students, grades; 2 — ``courses.capacity`` (seats per offering) and
``plan_courses`` (a plan's demand, seats and allocated count per course and term: counts only, no student).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 2

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
    sa.Column("capacity", sa.Integer),  # seats per offering; NULL: unlimited (version 2)
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
    sa.Column("mark", sa.Text),
    sa.Column("points", sa.Float),
    sa.Column("grade", sa.Float),
    sa.Column("import_id", sa.Integer, sa.ForeignKey("imports.id", name="fk_grades_import"), nullable=False),
    sa.Column("row", sa.Integer),
    sa.Index("ix_grades_student_course", "student_id", "course_id"),
)
# Columns of a grade row as inserted, in the order of the tuples written.
GRADE_INSERT = ("student_id", "course_id", "term", "term_key", "mark", "points", "grade", "import_id", "row")
# A seat plan's aggregate per (term, course): what recommendations read to say "likely full" (version 2).
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


def migrate(conn: Connection, version: int) -> None:
    """Bring a database at schema ``version`` (< SCHEMA_VERSION) up to SCHEMA_VERSION inside ``conn``'s
    transaction; tables that did not exist were already created (``metadata.create_all``)."""
    if version < 2:
        quote = conn.dialect.identifier_preparer
        conn.exec_driver_sql(f"ALTER TABLE {quote.format_table(courses_table)} ADD COLUMN capacity INTEGER")
