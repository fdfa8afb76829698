"""Splitting the decoded text into records, a chunk at a time: the delimiter (detected or given), quoted fields that
span lines, the header line, and which line each record ends on — the row numbers of the cleaning report."""

from __future__ import annotations

import csv
import io
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
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


def check_column_count(names: list[str], records: list[list[str]], *, name: str) -> None:
    mode, share = _mode_share([len(r) for r in records[:1000] if r])
    if mode and mode != len(names) and share >= 0.5:
        raise DataError(
            f"{name}: --columns names {len(names)} column(s) ({', '.join(names)}) but the file's lines have "
            f"{mode} fields"
        )


class RecordChunks:
    """The file's data records in chunks of at most ``size``, each with the line every record ends on, streamed
    through the decoder: neither the text nor every record is ever held, only one chunk of split fields.

    With ``header``, the first record with a non-blank field is the header (``names``, ending on ``header_line``).
    Records of one line each are numbered by counting; a chunk spanning more lines than it has records holds a
    quoted field with a line break: the file is then read again from its start, noting where each record ends, and
    the records already handed out are skipped (so the records are the same whatever the chunk size)."""

    def __init__(self, source: Source, path: Path, *, delimiter: str, header: bool, size: int) -> None:
        if size < 1:
            raise ValueError(f"chunk size {size}: expected at least 1 record")
        self.source, self.path, self.delimiter, self.size = source, path, delimiter, size
        self.names: list[str] | None = None
        self.header_line = 0
        self._skip = 0  # records before the data: blank lines and the header
        if header:
            with self._records() as (reader, line_num):
                for i, record in enumerate(reader, start=1):
                    if any(f.strip() for f in record):
                        self.names = [h.strip().lstrip("\ufeff").strip() for h in record]
                        self.header_line, self._skip = line_num(), i
                        break

    def first(self, n: int) -> list[list[str]]:
        """The first ``n`` data records (what ``--columns`` is checked against, whatever the chunk size)."""
        with self._records() as (reader, _):
            return list(islice(reader, self._skip, self._skip + n))

    def __iter__(self) -> Iterator[tuple[list[list[str]], np.ndarray]]:
        done = 0  # records handed out
        counted = True  # every record so far was one line
        while True:
            with self._records() as (reader, line_num):
                deque(islice(reader, self._skip + done), maxlen=0)
                line = line_num()
                while True:
                    if counted:
                        records = list(islice(reader, self.size))
                        if line_num() - line != len(records):
                            counted = False  # a record spans lines: read again from the start, noting ends
                            break
                        ends = np.arange(line + 1, line + len(records) + 1, dtype=np.int64)
                    else:
                        records, ends = _tracked(reader, line_num, self.size)
                    if not records:
                        return
                    line = int(ends[-1])
                    done += len(records)
                    yield records, ends

    @contextmanager
    def _records(self) -> Iterator[tuple[Iterator[list[str]], Callable[[], int]]]:
        """The file's records and a function giving the line the last one read ends on; a CSV error raises
        naming that line."""
        with (
            open_binary(self.path, is_gzip=self.source.gzip) as raw,
            io.TextIOWrapper(raw, encoding=self.source.codec, newline="") as fh,
        ):
            if self.delimiter == "whitespace":
                count = [0]

                def split() -> Iterator[list[str]]:
                    for text in fh:
                        count[0] += 1
                        yield text.split()

                yield split(), lambda: count[0]
                return
            reader = csv.reader(fh, delimiter=self.delimiter)
            try:
                yield reader, lambda: reader.line_num
            except csv.Error as exc:
                raise DataError(f"{self.path.name}: line {reader.line_num}: {exc} (an unclosed quote?)") from None


def _tracked(reader: Iterator[list[str]], line_num: Callable[[], int], size: int) -> tuple[list[list[str]], np.ndarray]:
    """Up to ``size`` records and the line each ends on."""
    records: list[list[str]] = []
    ends: list[int] = []
    add, add_end = records.append, ends.append
    for record in islice(reader, size):
        add(record)
        add_end(line_num())
    return records, np.asarray(ends, dtype=np.int64)
