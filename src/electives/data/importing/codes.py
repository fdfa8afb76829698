"""The whole file as compact per-row state, built a chunk of records at a time: each field's distinct values once
and an int32 code per row, the row's line, and a 128-bit hash of its fields for exact copies.

Nothing here drops a row for its values: that is the cleaner's work, on the whole file at once (duplicates,
retakes and minimum counts need every row). Only what one record shows alone is settled here: a record with too
few or too many fields (``ragged-row``) and blank lines (also ``,,,``), which are counted, not read as rows. The
state is a few dozen bytes a row whatever the chunk size, and the same for every chunk size.
"""

from __future__ import annotations

from operator import itemgetter

import numpy as np
import pandas as pd

from electives.data.importing.report import CleaningReport

# Two independent SipHash keys: a row's two 64-bit lanes. Two different rows get the same 128 bits with
# probability about 2^-128 per pair (about 10^-23 for 100 M rows), so `duplicate` is exact in practice.
_HASH_KEYS = ("electives-dup-a1", "electives-dup-b2")
_LANE_FACTORS = (np.uint64(0x100000001B3), np.uint64(0x9E3779B97F4A7C15))  # odd: the mix is invertible per column


def combine_codes(codes: list[np.ndarray]) -> np.ndarray:
    """One code per distinct tuple of codes, numbered 0..k-1 in order of first appearance."""
    combined = codes[0].astype(np.int64)
    for c in codes[1:]:
        combined, _ = pd.factorize(combined * (int(c.max(initial=0)) + 1) + c)
    if len(codes) == 1:
        combined, _ = pd.factorize(combined)
    return combined.astype(np.int64)


class FieldValues:
    """One field's distinct values — trimmed; the parts of ``a+b`` joined by one space, empty if any part is — in
    order of first appearance in the file, and each row's int32 code into them."""

    def __init__(self, columns: list[int]) -> None:
        self.columns = columns
        self._index: dict[str, int] = {}
        self._parts: list[np.ndarray] = []

    def add(self, factorised: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Code a chunk's rows, given every column of the chunk factorised (codes, distinct values)."""
        parts = [factorised[i] for i in self.columns]
        if len(parts) == 1:
            codes, uniq = parts[0]
            values = [str(u).strip() for u in uniq]
        else:
            codes = combine_codes([c for c, _ in parts])
            _, first = np.unique(codes, return_index=True)  # codes are 0..k-1: first[k] is code k's first row
            strips = [[str(uniq[j]).strip() for j in c[first]] for c, uniq in parts]
            values = [" ".join(ps) if all(ps) else "" for ps in zip(*strips, strict=True)]
        index = self._index
        to_file = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int32, count=len(values))
        self._parts.append(to_file[codes])

    def codes(self) -> np.ndarray:
        """Every row's code (int32), the chunks joined."""
        if len(self._parts) != 1:
            self._parts = [np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=np.int32)]
        return self._parts[0]

    def values(self) -> np.ndarray:
        """The distinct values, code order (object array)."""
        out = np.empty(len(self._index), dtype=object)
        out[:] = list(self._index)
        return out


class FileCodes:
    """The rows of a file with the right number of fields, as codes: filled by :meth:`add`, one chunk of records
    at a time (``ends``: the line each record ends on), then read by the cleaner."""

    def __init__(self, *, ncols: int, first_line: int, fields: dict[str, list[int]], report: CleaningReport) -> None:
        self.ncols = ncols
        self.report = report
        self.fields = {name: FieldValues(columns) for name, columns in fields.items()}
        self.n_ragged = 0
        self.blank_lines = 0
        self._next_start = first_line
        self._lines: list[np.ndarray] = []
        self._hashes: list[tuple[np.ndarray, np.ndarray]] = []
        self._spans: list[int] = []  # first (row, end line) of a ragged row that runs on, and how many do
        self._n_spans = 0

    @property
    def rows_read(self) -> int:
        return sum(len(x) for x in self._lines) + self.n_ragged

    def add(self, records: list[list[str]], ends: np.ndarray) -> None:
        n = len(records)
        if not n:
            return
        # A quoted field may span lines: a row is numbered by its first line.
        start = np.empty(n, dtype=np.int64)
        start[0] = self._next_start
        start[1:] = ends[:-1] + 1
        self._next_start = int(ends[-1]) + 1
        good = np.fromiter(map(len, records), dtype=np.int64, count=n) == self.ncols
        blank = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(~good):
            blank[i] = not any(f.strip() for f in records[i])
        self._ragged(start, ends, ~good & ~blank)
        self.blank_lines += int(blank.sum())

        good_idx = np.flatnonzero(good)
        rows = records if len(good_idx) == n else [records[i] for i in good_idx]
        # itemgetter + fromiter: far faster than zip(*rows) on many short lists
        raw = [np.fromiter(map(itemgetter(j), rows), dtype=object, count=len(rows)) for j in range(self.ncols)]
        del rows
        lines = start[good_idx]
        factorised = [_factorize(col) for col in raw]
        all_empty = np.ones(len(lines), dtype=bool)  # every field blank (",,,"): a blank line too
        for codes, uniq in factorised:
            all_empty &= np.array([not u.strip() for u in uniq], dtype=bool)[codes]
            if not all_empty.any():
                break
        if all_empty.any():
            self.blank_lines += int(all_empty.sum())
            keep = ~all_empty
            factorised = [_factorize(col[keep]) for col in raw]
            lines = lines[keep]
        del raw
        if not len(lines):
            return
        self._lines.append(lines)
        self._hashes.append(_row_hashes(factorised))
        for values in self.fields.values():
            values.add(factorised)

    def _ragged(self, start: np.ndarray, ends: np.ndarray, ragged: np.ndarray) -> None:
        lines = start[ragged]
        if not len(lines):
            return
        self.n_ragged += len(lines)
        report = self.report
        report.dropped["ragged-row"] = report.dropped.get("ragged-row", 0) + len(lines)
        report.examples["ragged-row"] = sorted({*report.examples.get("ragged-row", []), *lines[:5].tolist()})[:5]
        spans = np.flatnonzero(ragged & (ends > start))
        if len(spans) and not self._spans:
            self._spans = [int(start[spans[0]]), int(ends[spans[0]])]
        self._n_spans += len(spans)

    def finish(self) -> None:
        """The note on ragged rows that run on over lines (a quote left open?), once every chunk is in."""
        if self._spans:
            row, end = self._spans
            more = f" (and {self._n_spans - 1:,} more)" if self._n_spans > 1 else ""
            self.report.notes.append(f"row {row} runs on to line {end}{more}: a quote left open?")

    def lines(self) -> np.ndarray:
        """Each row's line number (int64)."""
        return np.concatenate(self._lines) if self._lines else np.zeros(0, dtype=np.int64)

    def take_hashes(self) -> tuple[np.ndarray, np.ndarray]:
        """Each row's two hash lanes (uint64), handed over once: the cleaner frees them after the duplicate rule."""
        parts, self._hashes = self._hashes, []
        if not parts:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64)
        return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])


def _factorize(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, uniq = pd.factorize(column)
    return codes, np.asarray(uniq, dtype=object)


def _row_hashes(factorised: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Two 64-bit lanes per row over every field as written (not trimmed): each distinct value hashed once."""
    lanes = []
    for key, factor in zip(_HASH_KEYS, _LANE_FACTORS, strict=True):
        h = np.zeros(len(factorised[0][0]), dtype=np.uint64)
        for codes, uniq in factorised:
            h *= factor
            h += pd.util.hash_array(uniq, hash_key=key, categorize=False)[codes]
        lanes.append(h)
    return lanes[0], lanes[1]
