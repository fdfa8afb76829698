"""Import a registrar's grade export: read, map columns, clean, pseudonymise — with a report of every row dropped.

(Skeleton: the data types below are the contract with storage.py; the reader is being written.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from electives.grades import GradeScale

RetakePolicy = Literal["latest", "best", "all"]
FIELDS = ("student", "course", "term", "grade", "course_name")

# Columns of ImportResult.frame, in order. `student` is already the keyed pseudonym: raw ids never leave the reader.
FRAME_COLUMNS = ("row", "student", "course", "course_name", "term", "term_key", "mark", "points", "grade")


@dataclass
class CleaningReport:
    """What happened to every row: counts per reason and up to five example row numbers per reason."""

    file_name: str
    file_sha256: str
    encoding: str
    delimiter: str
    scale: str
    rows_read: int = 0
    rows_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows dropped
    examples: dict[str, list[int]] = field(default_factory=dict)  # reason -> up to 5 row numbers
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "file_name": self.file_name,
            "file_sha256": self.file_sha256,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "scale": self.scale,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "dropped": dict(self.dropped),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@dataclass
class ImportResult:
    """The cleaned rows (columns FRAME_COLUMNS; `points`/`grade` NaN for enrolment-only data) and the report."""

    frame: pd.DataFrame
    report: CleaningReport
    scale: GradeScale
    enrolment_only: bool
