"""Splitting the decoded text into records: the delimiter (detected or given), quoted fields that span lines,
the header line, and which line each record starts on — the row numbers of the cleaning report."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np

from electives.data.importing.source import SNIFF_BYTES, Source, open_binary
from electives.errors import DataError


def detect_delimiter(head: str, *, name: str) -> str:
    lines = head.splitlines()
    if len(head) >= SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line of the sample may be cut short
    lines = [ln for ln in lines if ln.strip()][:200]
    best: tuple[float, int, int] | None = None
    choice = None
    for rank, candidate in enumerate(("\t", ",", ";", "|")):
        counts = [len(r) for r in csv.reader(lines, delimiter=candidate) if r]
        mode, share = _mode_share(counts)
        if mode >= 2:
            score = (share, mode, -rank)
            if best is None or score > best:
                best, choice = score, candidate
    if choice is not None and best is not None and best[0] >= 0.5:
        return choice
    mode, share = _mode_share([len(ln.split()) for ln in lines])
    if mode >= 2 and share >= 0.5:
        return "whitespace"
    if choice is not None:
        return choice
    raise DataError(
        f"{name}: cannot tell how fields are separated (tried comma, semicolon, tab, pipe and whitespace); "
        "pass --delimiter"
    )


def _mode_share(counts: list[int]) -> tuple[int, float]:
    if not counts:
        return 0, 0.0
    mode, n = Counter(counts).most_common(1)[0]
    return mode, n / len(counts)


def read_records(
    source: Source, path: Path, *, delimiter: str, header: bool
) -> tuple[list[list[str]], np.ndarray, list[str] | None, int]:
    """All records (lists of fields), the line on which each ends, the header and its line number.

    Streams the file through the decoder: its text is never held whole, only the split fields."""
    records, ends = _split_records(source, path, delimiter, track_lines=False)
    if ends is None:  # a quoted field spans lines: read again, noting where each record ends
        records, ends = _split_records(source, path, delimiter, track_lines=True)
    header_names: list[str] | None = None
    header_line = 0
    if header:
        first = next((i for i, r in enumerate(records) if any(f.strip() for f in r)), None)
        if first is None:
            return [], ends[:0], None, 0
        header_names = [h.strip().lstrip("\ufeff").strip() for h in records[first]]
        header_line = int(ends[first])
        del records[: first + 1]
        ends = ends[first + 1 :]
    return records, ends, header_names, header_line


def _split_records(
    source: Source, path: Path, delimiter: str, track_lines: bool
) -> tuple[list[list[str]], np.ndarray | None]:
    """Records and their end lines; without ``track_lines`` the end lines are only returned (as 1..n) when
    every record is one line, else None."""
    with open_binary(path, is_gzip=source.gzip) as raw, io.TextIOWrapper(raw, encoding=source.codec, newline="") as fh:
        if delimiter == "whitespace":
            records = [line.split() for line in fh]
            return records, np.arange(1, len(records) + 1, dtype=np.int64)
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            if not track_lines:
                records = list(reader)
                if reader.line_num != len(records):
                    return records, None
                return records, np.arange(1, len(records) + 1, dtype=np.int64)
            records, ends = [], []
            add, add_end = records.append, ends.append
            for rec in reader:
                add(rec)
                add_end(reader.line_num)
            return records, np.asarray(ends, dtype=np.int64)
        except csv.Error as exc:
            raise DataError(f"{path.name}: line {reader.line_num}: {exc} (an unclosed quote?)") from None


def check_column_count(names: list[str], records: list[list[str]], *, name: str) -> None:
    mode, share = _mode_share([len(r) for r in records[:1000] if r])
    if mode and mode != len(names) and share >= 0.5:
        raise DataError(
            f"{name}: --columns names {len(names)} column(s) ({', '.join(names)}) but the file's lines have "
            f"{mode} fields"
        )
