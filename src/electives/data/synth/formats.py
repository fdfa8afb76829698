"""The shape of the generated files: the export's, catalogue's and truth's columns, how the importer reads the
export (:data:`EXPORT_MAPPING`, :func:`import_flags`), term labels and the letter bands of the Grade column."""

from __future__ import annotations

import numpy as np

from electives.data.catalog import COLUMNS as CATALOG_FILE_COLUMNS

EXPORT_COLUMNS = ("student serial", "Year", "term", "Crs Code", "Course Name", "total", "Grade")
# The catalogue file's own columns, in its order — but programmes: like most registrars' catalogues, the synthetic
# one does not name them, so at-risk infers them (the tests name them from the truth where they need to).
CATALOG_COLUMNS = tuple(c for c in CATALOG_FILE_COLUMNS if c != "programmes")
TRUTH_COLUMNS = ("student serial", "Crs Code", "expected_total")
# How the importer reads grades.csv: importer field -> export column(s), on the percent scale.
EXPORT_MAPPING = {
    "student": "student serial",
    "term": "Year+term",
    "course": "Crs Code",
    "course_name": "Course Name",
    "grade": "total",
}
EXPORT_SCALE = "percent"


def import_flags() -> list[str]:
    """The `electives import` flags that read grades.csv (`--map FIELD=EXPR ... --scale percent`)."""
    return [a for field, expr in EXPORT_MAPPING.items() for a in ("--map", f"{field}={expr}")] + [
        "--scale",
        EXPORT_SCALE,
    ]


SEASONS = ("Fall", "Spring")

# AAST-like letter bands: lower bounds, ascending, and the letter for each band (F below the first bound).
GRADE_BOUNDS = np.array([60.0, 64.0, 67.0, 70.0, 73.0, 76.0, 80.0, 84.0, 89.0, 93.0, 97.0])
GRADE_LETTERS = np.array(["F", "D", "D+", "C-", "C", "C+", "B-", "B", "B+", "A-", "A", "A+"])


def letter_grade(total: np.ndarray) -> np.ndarray:
    """Letter for each percent total (AAST-like bands)."""
    return GRADE_LETTERS[np.searchsorted(GRADE_BOUNDS, np.asarray(total, dtype=float), side="right")]


def term_label(term_index: int, start_year: int) -> tuple[int, str]:
    """(calendar year, season) of a term: 0 → (start, Fall), 1 → (start+1, Spring), 2 → (start+1, Fall)..."""
    return start_year + (term_index + 1) // 2, SEASONS[term_index % 2]
