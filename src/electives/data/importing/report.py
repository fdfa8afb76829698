"""What an import hands back: the kept rows (:class:`~electives.data.importing.rows.ImportedRows`, shown as a frame
of :data:`~electives.data.importing.rows.FRAME_COLUMNS`), the :class:`CleaningReport` of every row dropped, and :class:`NothingToImport` when
every row was."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from electives.data.importing.options import DELIMITER_NAMES
from electives.data.importing.rows import ImportedRows
from electives.data.scales import GradeScale
from electives.errors import DataError

# Reasons in the order the rules run; the descriptions appear in the printed summary.
REASONS: dict[str, str] = {
    "ragged-row": "too few or too many fields",
    "duplicate": "exact copy of an earlier row",
    "missing-student": "empty student id",
    "missing-course": "empty course",
    "bad-term": "term empty or in no known form",
    "placeholder": "placeholder grade",
    "no-grade": "mark without a grade (W, P, I ...)",
    "missing-grade": "empty grade",
    "unknown-mark": "not a mark of the scale",
    "out-of-range": "outside the scale's range",
    "retake": "other attempt of a retaken course",
    "too-few-per-student": "student below --min-per-student",
    "too-few-per-course": "course below --min-per-course",
}

# Enrolment-only imports carry no grades; storage still wants a scale object for them.
ENROLMENT_ONLY_SCALE = GradeScale(
    name="enrolment-only", low=0.0, high=1.0, numeric=True, description="no grades: enrolment-only import"
)


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
    # Added beyond the storage contract: how the file was read.
    columns: dict[str, str] = field(default_factory=dict)  # field -> source column(s), e.g. "dept+level"
    enrolment_only: bool = False
    retakes: str = "latest"
    values: dict[str, list[str]] = field(default_factory=dict)  # reason -> up to 5 offending marks/terms
    terms: list[dict] = field(default_factory=list)  # [{"term": label, "rows": kept rows}], oldest first
    # term code in no known form -> {"rows": n, "lines": up to 5, "why": ..., "words": the unknown words}
    unknown_terms: dict[str, dict] = field(default_factory=dict)

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
            "columns": dict(self.columns),
            "enrolment_only": self.enrolment_only,
            "retakes": self.retakes,
            "values": {k: list(v) for k, v in self.values.items()},
            "terms": [dict(t) for t in self.terms],
            "unknown_terms": {k: dict(v) for k, v in self.unknown_terms.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    def reason_line(self, reason: str) -> str:
        """One line of the summary, e.g. ``duplicate  116  exact copy of an earlier row; rows 5, 9, 12, 40, 41, ...``."""
        count = self.dropped[reason]
        rows = ", ".join(str(r) for r in self.examples.get(reason, []))
        more = ", ..." if count > len(self.examples.get(reason, [])) else ""
        line = f"{reason:<20} {count:>9,}  {REASONS.get(reason, reason)}; rows {rows}{more}"
        if self.values.get(reason):
            line += " (values: " + ", ".join(repr(v) for v in self.values[reason]) + ")"
        return line

    def summary(self) -> str:
        """The report as readable text, as the CLI prints it."""
        delimiter = DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))
        kind = "enrolment-only (no grades)" if self.enrolment_only else f"scale {self.scale}"
        out = [
            f"{self.file_name}: {self.rows_read:,} rows read, {self.rows_kept:,} kept, {self.rows_dropped:,} dropped",
            f"  read as {self.encoding}, {delimiter}-separated; {kind}; retakes: {self.retakes}",
        ]
        if self.columns:
            out.append("  columns: " + ", ".join(f"{f} <- {c}" for f, c in self.columns.items()))
        if self.dropped:
            out.append("  dropped:")
            out.extend(f"    {self.reason_line(r)}" for r in ordered_reasons(self.dropped))
        if self.terms:
            out.append("  rows per term: " + _terms_line(self.terms))
        out.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(out)


class ImportResult:
    """The kept rows and the report. ``rows`` holds them as codes (what storage and training read); ``frame``
    shows them as strings (columns ``FRAME_COLUMNS``; `points`/`grade` NaN for enrolment-only data), built
    when first asked for. Either may be given: a frame is turned into rows when they are first read."""

    def __init__(
        self,
        frame: pd.DataFrame | None = None,
        report: CleaningReport | None = None,
        scale: GradeScale | None = None,
        enrolment_only: bool = False,
        *,
        rows: ImportedRows | None = None,
    ) -> None:
        if (frame is None) == (rows is None) or report is None or scale is None:
            raise TypeError("ImportResult needs a report, a scale and either rows or a frame")
        self.report = report
        self.scale = scale
        self.enrolment_only = enrolment_only
        self._frame = frame
        self._rows = rows

    @property
    def rows(self) -> ImportedRows:
        if self._rows is None:
            assert self._frame is not None
            self._rows = ImportedRows.from_frame(self._frame)
        return self._rows

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = self.rows.to_frame()
        return self._frame


class ImportRefused(DataError):
    """The file was read but nothing of it may be stored; ``report`` says why (so the CLI can still write it)."""

    def __init__(self, message: str, report: CleaningReport) -> None:
        super().__init__(message)
        self.report = report


class NothingToImport(ImportRefused):
    """Every row of the file was dropped."""


class UnknownTerms(ImportRefused):
    """Some term codes are in no known form: storing the rest would silently lose their graded rows."""


def _terms_line(terms: list[dict], most: int = 24) -> str:
    """``2019-Fall 120, 2020-Spring 98, ...``; a long list keeps its first and last dozen."""
    parts = [f"{t['term']} {t['rows']:,}" for t in terms]
    if len(parts) > most:
        parts = [*parts[: most // 2], f"... ({len(parts) - most} more)", *parts[-most // 2 :]]
    return ", ".join(parts)


def ordered_reasons(dropped: Mapping[str, int]) -> list[str]:
    """The reasons of ``dropped`` in the order the rules run; reasons this version does not know go last."""
    known = [r for r in REASONS if r in dropped]
    return known + sorted(r for r in dropped if r not in REASONS)
