"""The grade store: imports, courses, pseudonymous students and their grades in any SQLAlchemy database.

SQLite (the default, one file) and PostgreSQL are tested. Only pseudonyms are stored for students. A database
holds one grade scale; enrolment-only imports (no grades) mix with any scale. Every write is one transaction.

``schema`` holds the tables (and the migration of older databases), ``engine`` connecting to a URL, ``store`` the
`Store` and its reads and writes, ``courses`` the courses table's, ``plans`` the seat plans' per-course counts,
``results`` what a write hands back.
"""

from electives.data.storage.plans import CourseSeats, StoredPlan
from electives.data.storage.results import CatalogSummary, ImportRecord, ImportSummary
from electives.data.storage.schema import SCHEMA_VERSION
from electives.data.storage.store import GRADE_COLUMNS, Store, open_store

__all__ = [
    "GRADE_COLUMNS",
    "SCHEMA_VERSION",
    "CatalogSummary",
    "CourseSeats",
    "ImportRecord",
    "ImportSummary",
    "Store",
    "StoredPlan",
    "open_store",
]
