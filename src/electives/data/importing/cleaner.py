"""The row cleaner: every rule that drops a row, vectorised, and the pseudonyms of the rows kept.

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
every attempt. Blank lines (also ``,,,``) are skipped and noted, not counted as rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter

import numpy as np
import pandas as pd

from electives.data.importing.report import FRAME_COLUMNS, CleaningReport
from electives.data.pseudonyms import Pseudonymiser
from electives.data.scales import GradeScale, MarkError
from electives.data.terms import TermError, TermReader

# A term's rank is key * RANK_SCALE + sub: exact in a float64 (keys < 10^5, subs < 10^7).
RANK_SCALE = 10**7

# Reasons whose offending values may be shown (marks and terms, never ids or names).
_VALUE_REASONS = ("bad-term", "unknown-mark", "out-of-range")


class Cleaner:
    """Vectorised cleaning: every distinct id, term and mark is parsed once, rows are handled as arrays."""

    def __init__(
        self,
        *,
        records: list[list[str]],
        ends: np.ndarray,
        first_line: int,
        ncols: int,
        fields: dict[str, list[int]],
        scale: GradeScale,
        enrolment_only: bool,
        placeholders: tuple[str, ...],
        retakes: str,
        min_per_student: int,
        min_per_course: int,
        report: CleaningReport,
        terms: TermReader,
    ) -> None:
        self.report = report
        self.terms = terms
        self.scale = scale
        self.enrolment_only = enrolment_only
        self.placeholders = placeholders
        self.retakes = retakes
        self.min_per_student = min_per_student
        self.min_per_course = min_per_course
        self.fields = fields

        n = len(records)
        end = ends
        start = np.empty(n, dtype=np.int64)
        if n:
            start[0] = first_line
            start[1:] = end[:-1] + 1  # a quoted field may span lines: a row is numbered by its first line
        lengths = np.fromiter(map(len, records), dtype=np.int64, count=n)
        good = lengths == ncols
        blank = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(~good):
            blank[i] = not any(f.strip() for f in records[i])
        ragged = ~good & ~blank
        self._drop_lines("ragged-row", start[ragged])
        spans = np.flatnonzero(ragged & (end > start))
        if len(spans):
            i = spans[0]
            more = f" (and {len(spans) - 1:,} more)" if len(spans) > 1 else ""
            report.notes.append(f"row {start[i]} runs on to line {end[i]}{more}: a quote left open?")
        self.n_ragged = int(ragged.sum())

        good_idx = np.flatnonzero(good)
        rows = records if len(good_idx) == n else [records[i] for i in good_idx]
        # itemgetter + fromiter: far faster than zip(*rows) on a million short lists
        self.raw = [np.fromiter(map(itemgetter(j), rows), dtype=object, count=len(rows)) for j in range(ncols)]
        del rows
        self.lines = start[good_idx]
        # Each column is factorised once; rows whose every field is blank (",,,") are blank lines too.
        self._codes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        all_empty = np.ones(len(self.lines), dtype=bool)
        for i in range(ncols):
            codes, uniq = self._factorised(i)
            all_empty &= np.array([not str(u).strip() for u in uniq], dtype=bool)[codes]
            if not all_empty.any():
                break
        if all_empty.any():
            keep = ~all_empty
            self.raw = [col[keep] for col in self.raw]
            self.lines = self.lines[keep]
            self._codes = {}
        self.blank_lines = int(blank.sum() + all_empty.sum())
        self.rows_read = len(self.lines) + self.n_ragged

    def _factorised(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._codes:
            codes, uniq = pd.factorize(self.raw[i])
            self._codes[i] = (codes, np.asarray(uniq, dtype=object))
        return self._codes[i]

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
        parts = [self._factorised(i) for i in self.fields[name]]
        if len(parts) == 1:
            codes, uniq = parts[0]
            values = np.array([str(u).strip() for u in uniq], dtype=object)
        else:
            codes = _combine([c for c, _ in parts])
            _, first = np.unique(codes, return_index=True)  # codes are 0..k-1: first[k] is code k's first row
            strips = [np.array([str(u).strip() for u in uniq], dtype=object)[c[first]] for c, uniq in parts]
            values = np.array([" ".join(ps) if all(ps) else "" for ps in zip(*strips, strict=True)], dtype=object)
        # trimming may merge values (" A" and "A"): re-code on the trimmed values
        recode, canon = pd.factorize(values)
        return recode[codes], np.asarray(canon, dtype=object)

    # -- the rules, in order
    def run(self, pseudonymiser: Pseudonymiser) -> pd.DataFrame:
        report = self.report
        n = len(self.lines)
        self.alive = np.ones(n, dtype=bool)
        if n:
            whole_row = _combine([self._factorised(i)[0] for i in range(len(self.raw))])
            self._drop("duplicate", pd.Series(whole_row).duplicated(keep="first").to_numpy())

        s_codes, s_values = self._field("student")
        self._ids = set(s_values.tolist())
        self._drop("missing-student", (s_values == "")[s_codes])
        c_codes, c_values = self._field("course")
        self._drop("missing-course", (c_values == "")[c_codes])

        term_key, term_rank, term_label = self._terms(n)
        points = np.full(n, np.nan)
        marks = np.full(n, None, dtype=object)
        if not self.enrolment_only:
            g_codes, g_values = self._field("grade")
            points, marks = self._grades(g_codes, g_values)

        if self.retakes != "all":
            self._drop("retake", self._retakes(s_codes, c_codes, term_rank, points))
        self._minimum_counts(s_codes, c_codes)

        keep = np.flatnonzero(self.alive)
        report.terms = _rows_per_term(term_label[keep], term_rank[keep])
        report.rows_read = self.rows_read
        report.rows_kept = len(keep)
        if self.blank_lines:
            report.notes.append(f"{self.blank_lines:,} blank line(s) skipped")

        # Pseudonymise each distinct id once, and only those that are kept.
        s_keep = s_codes[keep]
        used = np.unique(s_keep)
        pseudonyms = np.full(len(s_values), None, dtype=object)
        pseudonyms[used] = [pseudonymiser.pseudonym(s_values[j]) for j in used]

        if "course_name" in self.fields:
            n_codes, n_values = self._field("course_name")
            n_values = np.where(n_values == "", None, n_values)
            names = n_values[n_codes[keep]]
        else:
            names = np.full(len(keep), None, dtype=object)
        pts = points[keep]
        grade = (pts - self.scale.low) / (self.scale.high - self.scale.low)
        return pd.DataFrame(
            {
                "row": self.lines[keep],
                "student": pd.Series(pseudonyms[s_keep], dtype=object),
                "course": pd.Series(c_values[c_codes[keep]], dtype=object),
                "course_name": pd.Series(names, dtype=object),
                "term": pd.Series(term_label[keep], dtype=object),
                "term_key": pd.array(term_key[keep], dtype="Float64").astype("Int64"),
                "mark": pd.Series(marks[keep], dtype=object),
                "points": pts,
                "grade": grade,
            },
            columns=list(FRAME_COLUMNS),
        )

    def _terms(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each row's stored key, full rank (key, then the order within it) and label. Empty terms are dropped as
        ``bad-term``; codes in no known form too, and are listed in ``report.unknown_terms`` so the reader can
        refuse the import (a graded row is never lost to a code the registrar can explain)."""
        term_key = np.full(n, np.nan)
        term_rank = np.full(n, np.nan)
        term_label = np.full(n, None, dtype=object)
        if "term" not in self.fields:
            return term_key, term_rank, term_label
        t_codes, t_values = self._field("term")
        keys, ranks = np.full(len(t_values), np.nan), np.full(len(t_values), np.nan)
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
        return keys[t_codes], ranks[t_codes], labels[t_codes]

    def _grades(self, codes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points per row, and the mark as written; each distinct mark is parsed once."""
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
        return pts[codes], values[codes]

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


def _combine(codes: list[np.ndarray]) -> np.ndarray:
    """One code per distinct tuple of codes, numbered 0..k-1 in order of first appearance."""
    combined = codes[0].astype(np.int64)
    for c in codes[1:]:
        combined, _ = pd.factorize(combined * (int(c.max(initial=0)) + 1) + c)
    if len(codes) == 1:
        combined, _ = pd.factorize(combined)
    return combined.astype(np.int64)


def _rows_per_term(labels: np.ndarray, ranks: np.ndarray) -> list[dict]:
    """Kept rows per term, oldest first (rows without a term column are not counted)."""
    frame = pd.DataFrame({"term": labels, "rank": ranks}).dropna(subset=["term"])
    counts = frame.groupby(["rank", "term"], sort=True).size()
    return [{"term": term, "rows": int(rows)} for (_, term), rows in counts.items()]


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
