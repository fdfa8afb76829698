"""What the grade store hands back: the summary of an import or a catalogue save, and stored imports' records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ImportSummary:
    """What :meth:`Store.save_import` did. ``rows_skipped``: rows identical (student, course, term, mark) to a
    stored row or to an earlier row of the same file. When ``already_imported``, ``import_id`` and
    ``imported_at`` are those of the original import and no grade was added."""

    import_id: int
    already_imported: bool
    imported_at: datetime
    file_name: str
    rows_added: int
    rows_skipped: int
    students_added: int
    courses_added: int
    course_names_filled: int = 0


@dataclass(frozen=True)
class CatalogSummary:
    """What :meth:`Store.save_catalog` did: courses added and courses updated."""

    added: int
    updated: int


@dataclass(frozen=True)
class ImportRecord:
    """One stored import (metadata only)."""

    id: int
    file_sha256: str
    file_name: str
    imported_at: datetime
    scale_name: str
    enrolment_only: bool
    rows_kept: int
    rows_added: int
    report: dict[str, Any]
