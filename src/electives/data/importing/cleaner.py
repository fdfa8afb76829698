"""The row cleaner: every rule that drops a row, vectorised over the whole file's codes
(:class:`~electives.data.importing.codes.FileCodes`), and the pseudonyms of the rows kept.

Row-level problems never stop an import: each rule below drops the row, counts it under its reason and keeps up
to five example row numbers (file line numbers, the header is line 1). A row is counted under the first rule
that drops it, in this order:

======================= =====================================================================================
``ragged-row``          too few or too many fields
``duplicate``           an exact copy (every field) of an earlier row
``missing-student``     empty student id
``missing-course``      empty course (or an empty part of a combined ``--map course=a+b``)
``bad-term``            empty term, or a code the :class:`~electives.data.terms.TermReader` cannot read (the
                        reader then refuses the whole import: see ``CleaningReport.unknown_terms``)
``placeholder``         a placeholder grade (777, 888, 999 by default; compared as text and as numbers)
``no-grade``            a mark that carries no grade (the scale's ``no_grade``: W, P, I, S, AU ...)
``missing-grade``       an empty grade cell
``unknown-mark``        a grade that is not a mark of the scale
``out-of-range``        a number outside the scale's [low, high]
``retake``              another attempt of the same (student, course) lost to the retake policy
``too-few-per-student`` a student with fewer rows than ``min_per_student``
``too-few-per-course``  a course with fewer rows than ``min_per_course``
======================= =====================================================================================

The two minimum-count filters run repeatedly until nothing changes (dropping a course can push a student below
the minimum), so every kept student and course meets them. Retakes: ``latest`` keeps the attempt in the latest
term (ties and files without a term: the later row), ``best`` the most points (ties: the latest), ``all`` keeps
every attempt. Blank lines (also ``,,,``) are skipped and noted, not counted as rows. Every rule sees the whole
file, so the chunk size the file was read in changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd

from electives.data.importing.codes import FileCodes
from electives.data.importing.report import CleaningReport
from electives.data.importing.rows import ImportedRows, first_appearance, object_array
from electives.data.pseudonyms import Pseudonymiser
from electives.data.scales import GradeScale, MarkError
from electives.data.terms import TermError, TermReader

# A term's rank is key * RANK_SCALE + sub: exact in a float64 (keys < 10^5, subs < 10^7).
RANK_SCALE = 10**7

# Reasons whose offending values may be shown (marks and terms, never ids or names).
_VALUE_REASONS = ("bad-term", "unknown-mark", "out-of-range")


class _TermCodes(NamedTuple):
    """Each row's term code, and per code: key, sub (NaN: no key), rank (the full order) and label."""

    codes: np.ndarray
    keys: np.ndarray
    subs: np.ndarray
    ranks: np.ndarray
    labels: np.ndarray


class Cleaner:
    """Vectorised cleaning: every distinct id, term and mark is parsed once; rows are arrays of codes."""

    def __init__(
        self,
        codes: FileCodes,
        *,
        scale: GradeScale,
        enrolment_only: bool,
        placeholders: tuple[str, ...],
        retakes: str,
        min_per_student: int,
        min_per_course: int,
        report: CleaningReport,
        terms: TermReader,
    ) -> None:
        self.codes = codes
        self.report = report
        self.terms = terms
        self.scale = scale
        self.enrolment_only = enrolment_only
        self.placeholders = placeholders
        self.retakes = retakes
        self.min_per_student = min_per_student
        self.min_per_course = min_per_course
        self.fields = codes.fields
        self.lines = codes.lines()
        self.rows_read = codes.rows_read
        self.blank_lines = codes.blank_lines

    # -- bookkeeping
    def _drop_lines(self, reason: str, lines: np.ndarray) -> None:
        if len(lines):
            self.report.dropped[reason] = self.report.dropped.get(reason, 0) + len(lines)
            merged = sorted(set(self.report.examples.get(reason, [])) | set(lines[:5].tolist()))[:5]
            self.report.examples[reason] = [int(x) for x in merged]

    def _drop(self, reason: str, mask: np.ndarray) -> None:
        mask = mask & self.alive
        if mask.any():
            self._drop_lines(reason, self.lines[mask])
            self.alive &= ~mask

    def _values(self, reason: str, values: Iterable[str]) -> None:
        # A column mapped by mistake could hold ids: never show a value that is also a student id.
        shown = [v if len(v) <= 24 else v[:21] + "..." for v in values if v not in self._ids][:5]
        if shown:
            self.report.values[reason] = shown

    def _field(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Row codes and distinct values (trimmed; parts of ``a+b`` joined by one space, empty if any part is)."""
        values = self.fields[name]
        return values.codes(), values.values()

    # -- the rules, in order
    def run(self, pseudonymiser: Pseudonymiser) -> ImportedRows:
        report = self.report
        n = len(self.lines)
        self.alive = np.ones(n, dtype=bool)
        if n:
            self._drop("duplicate", _later_copies(*self.codes.take_hashes()))

        s_codes, s_values = self._field("student")
        self._ids = set(s_values.tolist())
        self._drop("missing-student", (s_values == "")[s_codes])
        c_codes, c_values = self._field("course")
        self._drop("missing-course", (c_values == "")[c_codes])

        terms = self._terms()
        grades = None
        if not self.enrolment_only:
            g_codes, g_values = self._field("grade")
            grades = (g_codes, g_values, self._grades(g_codes, g_values))

        if self.retakes != "all":
            rank = np.full(n, np.nan) if terms is None else terms.ranks[terms.codes]
            points = np.full(n, np.nan) if grades is None else grades[2][grades[0]]
            self._drop("retake", self._retakes(s_codes, c_codes, rank, points))
            del rank, points
        self._minimum_counts(s_codes, c_codes)

        keep = np.flatnonzero(self.alive)
        report.terms = (
            [] if terms is None else _rows_per_term(terms.codes[keep], labels=terms.labels, ranks=terms.ranks)
        )
        report.rows_read = self.rows_read
        report.rows_kept = len(keep)
        if self.blank_lines:
            report.notes.append(f"{self.blank_lines:,} blank line(s) skipped")
        return self._kept(keep, pseudonymiser, terms=terms, grades=grades)

    def _kept(
        self,
        keep: np.ndarray,
        pseudonymiser: Pseudonymiser,
        *,
        terms: _TermCodes | None,
        grades: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> ImportedRows:
        """The kept rows as codes into tables of what they hold, each in order of first appearance."""
        s_codes, s_values = self._field("student")
        student, used_students = first_appearance(s_codes[keep])
        # Pseudonymise each distinct id once, and only those that are kept.
        students = object_array([pseudonymiser.pseudonym(s_values[j]) for j in used_students])
        c_codes, c_values = self._field("course")
        course, used_courses = first_appearance(c_codes[keep])
        name, names = np.full(len(keep), -1, dtype=np.int32), object_array([])
        if "course_name" in self.fields:
            n_codes, n_values = self._field("course_name")
            kept_names = n_codes[keep]
            named = n_values[kept_names] != ""  # an empty name is no name
            name[named], used_names = first_appearance(kept_names[named])
            names = n_values[used_names]
        term, term_labels, term_keys, term_subs = (np.full(len(keep), -1, dtype=np.int32), object_array([]),
                                                   np.zeros(0), np.zeros(0))  # fmt: skip
        if terms is not None:
            term, used_terms = first_appearance(terms.codes[keep])
            term_labels, term_keys, term_subs = terms.labels[used_terms], terms.keys[used_terms], terms.subs[used_terms]
        mark, marks, points = np.full(len(keep), -1, dtype=np.int32), object_array([]), np.zeros(0)
        if grades is not None:
            mark, used_marks = first_appearance(grades[0][keep])
            marks, points = grades[1][used_marks], grades[2][used_marks]
        return ImportedRows(
            row=self.lines[keep],
            student=student,
            course=course,
            course_name=name,
            term=term,
            mark=mark,
            students=students,
            courses=c_values[used_courses],
            course_names=names,
            term_labels=term_labels,
            term_keys=term_keys,
            term_subs=term_subs,
            marks=marks,
            points=points,
            grades=(points - self.scale.low) / (self.scale.high - self.scale.low),
        )

    def _terms(self) -> _TermCodes | None:
        """Each row's term code, and each code's stored key, full rank (key, then the order within it) and label;
        None without a term column. Empty terms are dropped as ``bad-term``; codes in no known form too, and are
        listed in ``report.unknown_terms`` so the reader can refuse the import (a graded row is never lost to a
        code the registrar can explain)."""
        if "term" not in self.fields:
            return None
        t_codes, t_values = self._field("term")
        keys, subs, ranks = (np.full(len(t_values), np.nan) for _ in range(3))
        labels = np.full(len(t_values), None, dtype=object)
        errors: dict[int, TermError] = {}
        for j, raw in enumerate(t_values):
            if not raw:
                continue
            try:
                term = self.terms.read(raw)
            except TermError as exc:
                errors[j] = exc
                continue
            labels[j] = term.label
            # The rank orders attempts exactly; -1 stands for no place (older than every dated row).
            keys[j] = np.nan if term.key is None else term.key
            subs[j] = np.nan if term.key is None else term.sub
            ranks[j] = -1.0 if term.key is None else term.key * RANK_SCALE + term.sub
        bad = (labels == None)[t_codes]  # noqa: E711 (elementwise)
        alive_codes = t_codes[bad & self.alive]
        self._values("bad-term", [t_values[j] for j in _seen_codes(alive_codes) if t_values[j]])
        unread = np.flatnonzero(np.isin(t_codes, list(errors)) & self.alive)  # one pass, not one per code
        for j, rows in pd.Series(self.lines[unread]).groupby(t_codes[unread], sort=True):
            exc = errors[int(j)]
            self.report.unknown_terms[str(t_values[j])] = {
                "rows": len(rows),
                "lines": [int(x) for x in rows.iloc[:5]],
                "why": exc.why,
                "words": list(exc.words),
            }
        self._drop("bad-term", bad)
        return _TermCodes(t_codes, keys, subs, ranks, labels)

    def _grades(self, codes: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Points of each distinct mark (NaN: dropped), each parsed once."""
        holders = set(self.placeholders)
        holder_numbers = {float(p) for p in self.placeholders if _is_number(p)}
        reason = np.full(len(values), "", dtype=object)
        pts = np.full(len(values), np.nan)
        for j, raw in enumerate(values):
            if raw in holders or (holder_numbers and _is_number(raw) and _to_float(raw) in holder_numbers):
                reason[j] = "placeholder"
                continue
            try:
                mark = self.scale.parse(raw)
            except MarkError as exc:
                reason[j] = "missing-grade" if exc.reason == "empty" else exc.reason
                continue
            if mark.points is None:
                reason[j] = "no-grade"
            else:
                pts[j] = mark.points
        row_reason = reason[codes]
        for r in ("placeholder", "no-grade", "missing-grade", "unknown-mark", "out-of-range"):
            mask = row_reason == r
            if r in _VALUE_REASONS:
                self._values(r, [values[j] for j in _seen_codes(codes[mask & self.alive])])
            self._drop(r, mask)
        return pts

    def _retakes(
        self, s_codes: np.ndarray, c_codes: np.ndarray, term_rank: np.ndarray, points: np.ndarray
    ) -> np.ndarray:
        """Rows that lose to another attempt of the same (student, course): ``latest`` keeps the latest term
        (ties and missing terms: the later row), ``best`` the most points (ties: the latest)."""
        idx = np.flatnonzero(self.alive)
        drop = np.zeros(len(self.alive), dtype=bool)
        if len(idx) < 2:
            return drop
        keys = [self.lines[idx], np.nan_to_num(term_rank[idx], nan=-np.inf)]
        if self.retakes == "best":
            keys.append(np.nan_to_num(points[idx], nan=-np.inf))
        keys += [c_codes[idx], s_codes[idx]]
        order = np.lexsort(keys)
        s, c = s_codes[idx][order], c_codes[idx][order]
        last = np.ones(len(idx), dtype=bool)
        last[:-1] = (s[1:] != s[:-1]) | (c[1:] != c[:-1])
        drop[idx[order[~last]]] = True
        return drop

    def _minimum_counts(self, s_codes: np.ndarray, c_codes: np.ndarray) -> None:
        """Drop students / courses with too few rows, repeatedly: dropping a course can push a student below
        the minimum again. Stops when nothing changes."""
        if self.min_per_student <= 1 and self.min_per_course <= 1:
            return
        rounds = 0
        while True:
            before = int(self.alive.sum())
            for reason, codes, minimum in (
                ("too-few-per-student", s_codes, self.min_per_student),
                ("too-few-per-course", c_codes, self.min_per_course),
            ):
                if minimum > 1:
                    counts = np.bincount(codes[self.alive], minlength=int(codes.max(initial=0)) + 1)
                    self._drop(reason, counts[codes] < minimum)
            rounds += 1
            if int(self.alive.sum()) == before:
                break
        self.report.notes.append(
            f"minimum rows per student {self.min_per_student}, per course {self.min_per_course}: "
            f"applied until stable ({rounds} round(s))"
        )


def _later_copies(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Rows whose 128-bit hash (two lanes) equals an earlier row's: exact copies of it."""
    order = np.lexsort((low, high))  # stable: equal rows stay in file order
    low, high = low[order], high[order]
    same = np.zeros(len(order), dtype=bool)
    same[1:] = (low[1:] == low[:-1]) & (high[1:] == high[:-1])
    out = np.zeros(len(order), dtype=bool)
    out[order[same]] = True
    return out


def _rows_per_term(codes: np.ndarray, *, labels: np.ndarray, ranks: np.ndarray) -> list[dict]:
    """Kept rows per term, oldest first, from each row's term code (codes of one label and rank are summed)."""
    counts = np.bincount(codes, minlength=len(labels))
    totals: dict[tuple[float, str], int] = {}
    for j in np.flatnonzero(counts):
        if labels[j] is not None:
            key = (float(ranks[j]), str(labels[j]))
            totals[key] = totals.get(key, 0) + int(counts[j])
    return [{"term": term, "rows": rows} for (_, term), rows in sorted(totals.items())]


def _seen_codes(codes: np.ndarray) -> list[int]:
    """Distinct codes in order of first appearance."""
    if not len(codes):
        return []
    _, first = np.unique(codes, return_index=True)
    return [int(codes[i]) for i in sorted(first)]


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "."))
    except ValueError:
        return False
    return True


def _to_float(text: str) -> float:
    return float(text.replace(",", "."))
