"""A student's grades as a request sees them: typed in as ``(course, mark)`` pairs, or read from the database.

:class:`GradeReader` turns either into the three things a request needs: eligibility rows ``(course, points,
term key)``, fold-in targets ``{course index: normalised grade}`` (1.0 for every taken course of an
enrolment-only model; the latest graded attempt of a course counts, like training's default retake policy) and the
courses the model has no data on (they still count for eligibility). Course codes are matched exactly, else
case-insensitively when that is unambiguous. A typed-in grade that cannot be used raises :class:`GradeEntryError`
naming its position and whether the course or the mark is at fault.

A course typed in twice is refused (naming both positions) unless it reads as a retake: every earlier entry of the
course is a graded fail. Registrars keep the later attempt, so the later entry then counts and the answer says so
(:attr:`Entered.retaken`); anything else (two passes, a pass then a fail, an enrolment-only model that reads no
marks) is ambiguous, and guessing which one the student meant would silently change their prediction.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Literal, NamedTuple

import pandas as pd

from electives.data.scales import GradeScale, MarkError
from electives.errors import DataError

__all__ = ["EligibilityRow", "Entered", "GradeEntryError", "GradeReader"]

EligibilityRow = tuple[str, float | None, int | None]  # course, points (None: no mark), term key (None: unknown)


class GradeEntryError(DataError):
    """An entered grade cannot be used; ``position`` is its index in the list given (for line numbers) and
    ``part`` says whether the course or the mark is at fault (for pointing at a form field); ``other``, for a
    course entered twice, is the position of its earlier entry (both rows are at fault) and ``hint`` what would be
    accepted, for callers that name the two rows in their own terms."""

    def __init__(
        self,
        message: str,
        position: int,
        course: str,
        part: Literal["course", "mark"] = "course",
        *,
        other: int | None = None,
        hint: str = "",
    ) -> None:
        super().__init__(message)
        self.position = position
        self.course = course
        self.part = part
        self.other = other
        self.hint = hint


class Entered(NamedTuple):
    """Typed-in grades as a request needs them: eligibility rows, fold-in targets, the courses the model has no
    data on, and the courses entered as a failed attempt followed by a retake (the later attempt counts)."""

    rows: list[EligibilityRow]
    entries: dict[int, float]
    ignored: tuple[str, ...]
    retaken: tuple[str, ...] = ()


class GradeReader:
    """Reads grades against one model's courses (``course_index``: code → model index) and the catalogue's
    (``catalog_codes``, None without a catalogue). ``scale``: the scale marks are read on (None: marks are not read, as for an
    enrolment-only model trained without one); ``explicit``: whether fold-in targets are grades or enrolments."""

    def __init__(
        self,
        *,
        course_index: Mapping[str, int],
        catalog_codes: Collection[str] | None,
        scale: GradeScale | None,
        explicit: bool,
    ) -> None:
        self.course_index = course_index
        self.has_catalog = catalog_codes is not None
        catalog_codes = catalog_codes or ()
        self.known = frozenset(course_index) | frozenset(catalog_codes)
        self.scale = scale
        self.explicit = explicit
        self._casefold: dict[str, str | None] = {}
        for code in (*course_index, *catalog_codes):
            key = code.casefold()
            self._casefold[key] = code if self._casefold.get(key, code) == code else None  # None: ambiguous

    def resolve(self, code: str) -> str | None:
        """The model's or catalogue's spelling of ``code``, or None when there is no (unambiguous) match."""
        code = code.strip()
        if code in self.known:
            return code
        return self._casefold.get(code.casefold())

    def read_entered(self, grades: Sequence[tuple[str, str | float]]) -> Entered:
        """Eligibility rows, fold-in targets (the later attempt of a retaken course), the entered courses the model
        has no data on and the retaken courses, from typed-in ``(course, mark)`` pairs."""
        rows: list[EligibilityRow] = []
        entries: dict[int, float] = {}
        ignored: dict[str, None] = {}
        seen: dict[str, tuple[int, float | None]] = {}  # course → position and points of its latest entry
        retaken: dict[str, None] = {}
        for position, item in enumerate(grades):
            try:
                raw_course, raw_mark = item
            except (TypeError, ValueError):
                raise GradeEntryError(
                    f"grade {position + 1}: expected a (course, mark) pair, got {item!r}", position, ""
                ) from None
            course = self.resolve(str(raw_course))
            if course is None:
                where = "the model's courses or the catalogue" if self.has_catalog else "the model's courses"
                raise GradeEntryError(
                    f"unknown course {str(raw_course).strip()!r}: not in {where}", position, str(raw_course)
                )
            points = self._read_mark(raw_mark, course, position)
            if course in seen:
                self._check_retake(course, seen[course], position, str(raw_course))
                retaken[course] = None
            seen[course] = (position, points)
            rows.append((course, points, None))
            index = self.course_index.get(course)
            if index is None:
                ignored[course] = None
                continue
            if self.explicit:
                if points is not None:
                    entries.pop(index, None)  # re-insert: the latest attempt counts, in entry order
                    entries[index] = self.scale.normalise(points)
            else:
                entries[index] = 1.0
        return Entered(rows, entries, tuple(ignored), tuple(retaken))

    def _check_retake(self, course: str, earlier: tuple[int, float | None], position: int, raw: str) -> None:
        """A second entry of ``course`` is a retake only after a graded fail; else both entries are at fault."""
        first, points = earlier
        scale = self.scale
        if scale is not None and points is not None and points < scale.pass_points:
            return
        rule = (
            "a retake is accepted only after a failed mark (enter the failed attempt first, then the later one)"
            if scale is not None
            else "enter each course once"
        )
        raise GradeEntryError(
            f"course {course!r} is entered twice (entries {first + 1} and {position + 1}); {rule}",
            position,
            raw,
            other=first,
            hint=rule,
        )

    def _read_mark(self, raw: str | float, course: str, position: int) -> float | None:
        if self.scale is None:
            return None  # enrolment-only: a course on record counts as taken, whatever the mark says
        text = raw if isinstance(raw, str) else (f"{raw:g}" if isinstance(raw, int | float) else str(raw))
        try:
            return self.scale.parse(text).points
        except MarkError as exc:
            raise GradeEntryError(f"course {course!r}: {exc}", position, course, "mark") from None

    def read_history(self, history: pd.DataFrame) -> tuple[list[EligibilityRow], dict[int, float], tuple[str, ...]]:
        """A stored history (all attempts, oldest first) as eligibility rows, fold-in targets (latest graded
        attempt per course) and the stored courses the model has no data on."""
        courses = history["course"].astype(str).tolist()
        points = [
            None if p is None or (isinstance(p, float) and math.isnan(p)) else float(p) for p in history["points"]
        ]
        grades = history["grade"].to_numpy(dtype=float)
        keys = [None if pd.isna(k) else int(k) for k in history["term_key"].astype(object)]
        rows = list(zip(courses, points, keys, strict=True))
        entries: dict[int, float] = {}
        ignored: dict[str, None] = {}
        for course, grade in zip(courses, grades, strict=True):
            index = self.course_index.get(course)
            if index is None:
                ignored[course] = None
            elif not self.explicit:
                entries[index] = 1.0
            elif not math.isnan(grade):
                entries.pop(index, None)
                entries[index] = float(grade)
        return rows, entries, tuple(ignored)
