"""Import a registrar's grade export: read, map columns, clean, pseudonymise — with a report of every row dropped.

:func:`read_export` reads CSV/TSV/whitespace-separated text, plain or gzip-compressed (told by magic bytes, not
by the file name), in UTF-8 (with or without BOM), UTF-16 with a BOM, or else latin-1. Student ids are replaced
by keyed pseudonyms inside the reader: raw ids never reach the :class:`ImportResult`, the report or an error
message.

Row-level problems never stop an import: each rule below drops the row, counts it under its reason and keeps up
to five example row numbers (file line numbers, the header is line 1). A row is counted under the first rule
that drops it, in this order:

======================= =====================================================================================
``ragged-row``          too few or too many fields
``duplicate``           an exact copy (every field) of an earlier row
``missing-student``     empty student id
``missing-course``      empty course (or an empty part of a combined ``--map course=a+b``)
``bad-term``            empty term or one :func:`electives.data.terms.parse_term` cannot read
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

Whole-file problems (missing, empty, header only, too big, binary, undecodable, a required column missing,
unknown scale, every row dropped) raise :class:`~electives.errors.DataError` or
:class:`~electives.errors.ScaleError` before anything is written.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import re
import secrets
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import pandas as pd

from electives.data.pseudonyms import Pseudonymiser
from electives.data.scales import BUILTIN_SCALES, GradeScale, MarkError, load_scale
from electives.data.terms import TermError, parse_term
from electives.errors import DataError

RetakePolicy = Literal["latest", "best", "all"]
RETAKE_POLICIES = ("latest", "best", "all")
FIELDS = ("student", "course", "term", "grade", "course_name")
REQUIRED_FIELDS = ("student", "course")

# Columns of ImportResult.frame, in order. `student` is already the keyed pseudonym: raw ids never leave the reader.
FRAME_COLUMNS = ("row", "student", "course", "course_name", "term", "term_key", "mark", "points", "grade")

DEFAULT_PLACEHOLDERS = ("777", "888", "999")
DEFAULT_MAX_SIZE = 100 * 2**20  # bytes on disk (compressed size for gzip files)

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
# Reasons whose offending values may be shown (marks and terms, never ids or names).
_VALUE_REASONS = ("bad-term", "unknown-mark", "out-of-range")

# Header names tried for each unmapped field, compared after _loose() normalisation.
GUESSES: dict[str, tuple[str, ...]] = {
    "student": (
        "student", "student id", "studentid", "student no", "student number", "student serial", "student code",
        "sid", "stu id", "user", "user id", "userid",
    ),
    "course": (
        "course", "course id", "courseid", "course code", "coursecode", "course no", "course number", "crs",
        "crs code", "crs id", "subject code", "item", "item id",
    ),
    "term": ("term", "semester", "sem", "term code", "academic term"),
    "grade": (
        "grade", "mark", "marks", "total", "score", "final grade", "final mark", "grade point", "gradepoint",
        "grade points", "gpa", "points", "result",
    ),
    "course_name": ("course name", "coursename", "course title", "title", "crs name"),
}  # fmt: skip

# Enrolment-only imports carry no grades; storage still wants a scale object for them.
ENROLMENT_ONLY_SCALE = GradeScale(
    name="enrolment-only", low=0.0, high=1.0, numeric=True, description="no grades: enrolment-only import"
)

_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe", "whitespace": "whitespace"}
_DELIMITER_ALIASES = {
    "comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|", "whitespace": "whitespace",
    "space": "whitespace", " ": "whitespace", "ws": "whitespace",
}  # fmt: skip
_SNIFF_BYTES = 64 * 1024
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx or .ods workbook?)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an OLE document (an old .xls workbook?)"),
    (b"%PDF-", "a PDF document"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"BZh91AY&SY", "a bzip2 archive"),
    (b"\x7fELF", "an executable"),
    (b"PAR1", "a Parquet file"),
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


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
        delimiter = _DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))
        kind = "enrolment-only (no grades)" if self.enrolment_only else f"scale {self.scale}"
        out = [
            f"{self.file_name}: {self.rows_read:,} rows read, {self.rows_kept:,} kept, {self.rows_dropped:,} dropped",
            f"  read as {self.encoding}, {delimiter}-separated; {kind}; retakes: {self.retakes}",
        ]
        if self.columns:
            out.append("  columns: " + ", ".join(f"{f} <- {c}" for f, c in self.columns.items()))
        if self.dropped:
            out.append("  dropped:")
            out.extend(f"    {self.reason_line(r)}" for r in _ordered(self.dropped))
        out.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(out)


@dataclass
class ImportResult:
    """The cleaned rows (columns FRAME_COLUMNS; `points`/`grade` NaN for enrolment-only data) and the report."""

    frame: pd.DataFrame
    report: CleaningReport
    scale: GradeScale
    enrolment_only: bool


class NothingToImport(DataError):
    """Every row of the file was dropped; ``report`` says why (so the CLI can still write it)."""

    def __init__(self, message: str, report: CleaningReport) -> None:
        super().__init__(message)
        self.report = report


# ---------------------------------------------------------------------- small public helpers
def parse_size(text: str) -> int | None:
    """``100M`` → 104857600 (binary units K, M, G, T; an optional B/iB); ``none`` → None (no limit)."""
    if text.strip().lower() in ("none", "off", "unlimited"):
        return None
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size (expected e.g. 500K, 100M, 2G or none)")
    factor = 1024 ** " kmgt".index((m[2] or " ").lower())
    return int(float(m[1]) * factor)


def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """``["course=dept+level", "student=student serial"]`` → ``{"course": "dept+level", ...}``.

    An empty EXPR (``--map grade=``) means the file has no such column: e.g. import a graded file as
    enrolment-only. Only term, grade and course_name may be emptied."""
    mapping: dict[str, str] = {}
    for item in items:
        name, sep, expr = item.partition("=")
        name = name.strip().lower()
        if not sep:
            raise DataError(f"--map {item!r}: expected FIELD=COLUMN, e.g. --map course=dept+level")
        if name not in FIELDS:
            raise DataError(f"--map {item!r}: unknown field {name!r}; expected one of {', '.join(FIELDS)}")
        if name in mapping:
            raise DataError(f"--map: field {name!r} is mapped twice")
        if not expr.strip() and name in REQUIRED_FIELDS:
            raise DataError(f"--map {item!r}: the {name} field is required and needs a column")
        mapping[name] = expr.strip()
    return mapping


def parse_placeholders(text: str) -> tuple[str, ...]:
    """``"777,888,999"`` → ``("777", "888", "999")``; an empty string turns the rule off."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def parse_delimiter(text: str) -> str:
    """A delimiter as given on the command line: one character, or comma/semicolon/tab/pipe/whitespace."""
    if text in _DELIMITER_ALIASES:
        return _DELIMITER_ALIASES[text]
    if text.lower() in _DELIMITER_ALIASES:
        return _DELIMITER_ALIASES[text.lower()]
    if len(text) == 1 and text not in '\r\n"':
        return text
    raise DataError(f"--delimiter {text!r}: expected one character or one of comma, semicolon, tab, pipe, whitespace")


# ---------------------------------------------------------------------- the reader
def read_export(
    path: str | Path,
    *,
    scale: GradeScale | str | Path | None = None,
    mapping: Mapping[str, str] | None = None,
    header: bool = True,
    columns: Sequence[str] | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    retakes: RetakePolicy = "latest",
    placeholders: Iterable[str] = DEFAULT_PLACEHOLDERS,
    min_per_student: int = 0,
    min_per_course: int = 0,
    max_size: int | None = DEFAULT_MAX_SIZE,
    pseudonymiser: Pseudonymiser | None = None,
) -> ImportResult:
    """Read, map, clean and pseudonymise one grade export; see the module docstring for the rules.

    ``scale`` (a GradeScale, a built-in name or a TOML path) is required unless the file has no grade column
    (enrolment-only). ``mapping`` maps fields to column expressions (``"dept+level"``); unmapped fields are
    guessed from the header. ``header=False`` needs ``columns``. ``pseudonymiser`` defaults to
    :meth:`Pseudonymiser.from_environment`."""
    path = Path(path)
    name = path.name
    if retakes not in RETAKE_POLICIES:
        raise DataError(f"retake policy {retakes!r} is unknown; expected one of {', '.join(RETAKE_POLICIES)}")
    if header and columns:
        raise DataError("--columns names the columns of a file without a header: use it with --no-header")
    if not header and not columns:
        raise DataError(
            f"{name}: --no-header needs --columns naming the file's columns, e.g. student,course,term,grade"
        )
    mapping = dict(mapping or {})
    for key in mapping:
        if key not in FIELDS:
            raise DataError(f"--map: unknown field {key!r}; expected one of {', '.join(FIELDS)}")
    grade_scale = _resolve_scale(scale)
    if delimiter is not None:
        delimiter = parse_delimiter(delimiter)

    _check_file(path, max_size)
    sha256 = _sha256(path)
    source = _sniff(path, name, encoding)
    notes = list(source.notes)

    text_head = source.head
    if delimiter is None:
        delimiter = _detect_delimiter(text_head, name)
    records, ends, header_names, header_line = _read_records(source, path, delimiter, header)
    if not header:
        header_names = [c.strip() for c in columns or ()]
        _check_column_count(header_names, records, name)
    elif not header_names:
        raise DataError(f"{name} is empty: expected a header line and grade rows")

    fields = _resolve_fields(header_names, mapping, name)
    report_columns = {f: "+".join(header_names[i] for i in fields[f]) for f in FIELDS if f in fields}
    enrolment_only = "grade" not in fields
    if enrolment_only:
        notes.append("no grade column: enrolment-only (implicit) import; every kept row counts as taken")
        if grade_scale is None:
            grade_scale = ENROLMENT_ONLY_SCALE
    elif grade_scale is None:
        raise DataError(
            f"{name}: column {report_columns['grade']!r} holds the grades, so --scale is required: one of "
            f"{', '.join(BUILTIN_SCALES)}, or a .toml file describing the scale"
        )
    if "term" not in fields:
        notes.append("no term column: retakes are resolved by row order (the later row is the later attempt)")

    report = CleaningReport(
        file_name=name,
        file_sha256=sha256,
        encoding=source.encoding_label,
        delimiter=delimiter,
        scale=grade_scale.name,
        columns=report_columns,
        enrolment_only=enrolment_only,
        retakes=retakes,
    )
    cleaner = _Cleaner(
        records=records,
        ends=ends,
        first_line=header_line + 1,
        ncols=len(header_names),
        fields=fields,
        scale=grade_scale,
        enrolment_only=enrolment_only,
        placeholders=tuple(placeholders),
        retakes=retakes,
        min_per_student=min_per_student,
        min_per_course=min_per_course,
        report=report,
    )
    del records, ends
    if cleaner.rows_read == 0:
        raise DataError(
            f"{name} has a header line but no data rows" if header else f"{name} has no data rows (only blank lines)"
        )
    if pseudonymiser is None:
        pseudonymiser = Pseudonymiser.from_environment()
    frame = cleaner.run(pseudonymiser)
    report.notes = notes + report.notes
    if report.rows_kept == 0:
        reasons = ", ".join(f"{r}: {report.dropped[r]:,}" for r in _ordered(report.dropped))
        raise NothingToImport(
            f"{name}: all {report.rows_read:,} rows were dropped ({reasons}); nothing was imported", report
        )
    return ImportResult(frame=frame, report=report, scale=grade_scale, enrolment_only=enrolment_only)


def ephemeral_pseudonymiser() -> Pseudonymiser:
    """A throw-away key, for dry runs: pseudonyms are not kept, and no key file gets created."""
    return Pseudonymiser(secrets.token_hex(32).encode("ascii"))


# ---------------------------------------------------------------------- file-level checks
@dataclass
class _Source:
    gzip: bool
    codec: str
    encoding_label: str
    head: str
    notes: list[str]


def _resolve_scale(scale: GradeScale | str | Path | None) -> GradeScale | None:
    if scale is None or isinstance(scale, GradeScale):
        return scale
    return load_scale(scale)


def _check_file(path: Path, max_size: int | None) -> int:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: file does not exist") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    size = st.st_size
    if size == 0:
        raise DataError(f"{path.name} is empty: expected a header line and grade rows")
    if max_size is not None and size > max_size:
        suggestion = f"{-(-size // 2**20)}M"
        raise DataError(
            f"{path.name} is {_human(size)}{f' ({size:,} bytes)' if size >= 1024 else ''}, over the import limit "
            f"of {_human(max_size)}; "
            f"if the file is right, raise the limit with --max-size (e.g. --max-size {suggestion})"
        )
    return size


def _human(n: int) -> str:
    """1536 → '1.5 KiB'; 209715200 → '200 MiB'."""
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
    except OSError as exc:
        raise DataError(f"{path.name} cannot be read: {exc.strerror or exc}") from None
    return h.hexdigest()


def _open_binary(path: Path, is_gzip: bool) -> BinaryIO:
    raw = path.open("rb")
    return gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip else raw  # type: ignore[return-value]


def _gzip_error(name: str, exc: BaseException) -> DataError:
    detail = "it ends early (truncated)" if isinstance(exc, EOFError) else f"it is corrupt ({exc})"
    return DataError(f"{name} is gzip-compressed but {detail}; copy the file again or export it uncompressed")


def _sniff(path: Path, name: str, encoding: str | None) -> _Source:
    """Decide compression and encoding, refuse binaries, and check the whole file decodes (one streaming pass,
    so a bad byte near the end is found before any row is cleaned)."""
    with path.open("rb") as fh:
        magic = fh.read(2)
    is_gzip = magic == _GZIP_MAGIC
    try:
        with _open_binary(path, is_gzip) as fh:
            head = fh.read(_SNIFF_BYTES)
    except (EOFError, OSError, zlib.error) as exc:
        if is_gzip:
            raise _gzip_error(name, exc) from None
        raise DataError(f"{name} cannot be read: {exc}") from None
    if not head.strip():
        raise DataError(f"{name} is empty: expected a header line and grade rows")
    for sig, what in _MAGIC:
        if head.startswith(sig):
            raise DataError(f"{name} is {what}, not a CSV/TSV export; export the grades as CSV first")

    notes: list[str] = []
    if encoding is not None:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            raise DataError(f"--encoding {encoding!r} is not an encoding Python knows (try utf-8 or latin-1)") from None
        if codec == "utf-8" and head.startswith(codecs.BOM_UTF8):
            codec = "utf-8-sig"
        label, fallback = codec, None
    else:
        codec = next((c for bom, c in _BOMS if head.startswith(bom)), "utf-8")
        label, fallback = codec, ("latin-1" if codec == "utf-8" else None)

    if not codec.startswith(("utf-16", "utf-32")) and b"\x00" in head:
        hint = ""
        if head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4:
            hint = " (it looks like UTF-16 without a byte-order mark: pass --encoding utf-16-le or utf-16-be)"
        line = head.count(b"\n", 0, head.index(b"\x00")) + 1
        raise DataError(f"{name} contains NUL bytes (line {line}): it is not a text CSV/TSV export{hint}")
    bad = _first_decode_error(path, is_gzip, codec, name)
    if bad is not None:
        offset, line, byte = bad
        if fallback is None:
            raise DataError(
                f"{name} is not valid {codec}: byte 0x{byte:02x} at line {line} (byte {offset:,}) cannot be "
                "decoded; pass the right --encoding (e.g. latin-1) or re-save the file as UTF-8"
            )
        codec = label = fallback
        notes.append(f"not valid UTF-8 (byte 0x{byte:02x} at line {line}); read as latin-1")
        _first_decode_error(path, is_gzip, codec, name)  # latin-1 always decodes; this looks for NUL bytes
    if codec == "utf-8-sig":
        label = "utf-8 (BOM)"

    decoder = codecs.getincrementaldecoder(codec)(errors="replace")
    text = decoder.decode(head, final=False)
    if len(_CONTROL.findall(text)) > max(8, len(text) // 50):
        raise DataError(f"{name} is a binary file, not a CSV/TSV export (too many control characters)")
    if is_gzip:
        notes.append("gzip-compressed")
    return _Source(gzip=is_gzip, codec=codec, encoding_label=label, head=text, notes=notes)


def _first_decode_error(path: Path, is_gzip: bool, codec: str, name: str) -> tuple[int, int, int] | None:
    """(byte offset, line, byte) of the first byte that does not decode, or None; also refuses NUL bytes and
    truncated gzip streams anywhere in the file."""
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    offset = 0
    lines = 0
    try:
        with _open_binary(path, is_gzip) as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    start = max(exc.start, 0)
                    return offset + start, lines + chunk[:start].count(b"\n") + 1, exc.object[exc.start]
                if "\x00" in text:
                    line = lines + text.count("\n", 0, text.index("\x00")) + 1
                    raise DataError(f"{name} contains NUL bytes (line {line}): it is not a text CSV/TSV export")
                lines += text.count("\n")
                offset += len(chunk)
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                return offset, lines + 1, exc.object[exc.start]
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _gzip_error(name, exc) from None
    return None


# ---------------------------------------------------------------------- splitting lines into fields
def _detect_delimiter(head: str, name: str) -> str:
    lines = head.splitlines()
    if len(head) >= _SNIFF_BYTES and len(lines) > 1:
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


def _read_records(
    source: _Source, path: Path, delimiter: str, header: bool
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
    source: _Source, path: Path, delimiter: str, track_lines: bool
) -> tuple[list[list[str]], np.ndarray | None]:
    """Records and their end lines; without ``track_lines`` the end lines are only returned (as 1..n) when
    every record is one line, else None."""
    with _open_binary(path, source.gzip) as raw, io.TextIOWrapper(raw, encoding=source.codec, newline="") as fh:
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


def _check_column_count(names: list[str], records: list[list[str]], name: str) -> None:
    mode, share = _mode_share([len(r) for r in records[:1000] if r])
    if mode and mode != len(names) and share >= 0.5:
        raise DataError(
            f"{name}: --columns names {len(names)} column(s) ({', '.join(names)}) but the file's lines have "
            f"{mode} fields"
        )


# ---------------------------------------------------------------------- columns → fields
def _norm(name: str) -> str:
    return " ".join(name.lower().split())


def _loose(name: str) -> str:
    return " ".join(re.sub(r"[_\-.]+", " ", name.lower()).split())


def _find_column(header: list[str], name: str) -> list[int]:
    for norm in (_norm, _loose):
        hits = [i for i, h in enumerate(header) if norm(h) == norm(name)]
        if hits:
            return hits
    return []


def _resolve_fields(header: list[str], mapping: Mapping[str, str], name: str) -> dict[str, list[int]]:
    """field → indexes of its column(s) (several for ``dept+level``). Raises naming the missing column and
    listing the file's columns."""
    listing = ", ".join(repr(h) for h in header)
    fields: dict[str, list[int]] = {}
    used: set[int] = set()
    for fname, expr in mapping.items():
        if not expr:
            continue  # --map grade= : the file has no such column
        idx = _expr_columns(header, expr)
        if idx is None:
            part, hits = _missing_part(header, expr)
            problem = f"column {part!r} appears {hits} times" if hits else f"no column {part!r}"
            raise DataError(f"{name}: --map {fname}={expr}: {problem}; the file's columns are {listing}")
        fields[fname] = idx
        used.update(idx)
    for fname in FIELDS:
        if fname in mapping:
            continue
        hits = sorted({i for guess in GUESSES[fname] for i in range(len(header)) if _loose(header[i]) == guess} - used)
        if len(hits) > 1:
            cols = " and ".join(repr(header[i]) for i in hits)
            raise DataError(
                f"{name}: cannot tell which column holds the {fname.replace('_', ' ')}: {cols}; "
                f"choose one with --map {fname}=COLUMN"
            )
        if hits:
            fields[fname] = hits[:1]
            used.add(hits[0])
    for fname in REQUIRED_FIELDS:
        if fname not in fields:
            raise DataError(
                f"{name}: no {fname} column (looked for {', '.join(GUESSES[fname][:6])} ...); the file's columns "
                f"are {listing}; name it with --map {fname}=COLUMN"
            )
    return fields


def _expr_columns(header: list[str], expr: str) -> list[int] | None:
    """Column indexes of ``a+b`` (a whole name containing '+' wins over splitting it)."""
    whole = _find_column(header, expr)
    if len(whole) == 1:
        return whole
    parts = [p.strip() for p in expr.split("+")]
    out = []
    for part in parts:
        hits = _find_column(header, part)
        if len(hits) != 1:
            return None
        out.append(hits[0])
    return out


def _missing_part(header: list[str], expr: str) -> tuple[str, int]:
    """The first part of ``expr`` that names no single column, and how many columns it names."""
    for part in (p.strip() for p in expr.split("+")):
        hits = len(_find_column(header, part))
        if hits != 1:
            return part, hits
    return expr, 0  # pragma: no cover


# ---------------------------------------------------------------------- cleaning
class _Cleaner:
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
    ) -> None:
        self.report = report
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

        term_key = np.full(n, np.nan)
        term_label = np.full(n, None, dtype=object)
        if "term" in self.fields:
            t_codes, t_values = self._field("term")
            keys = np.full(len(t_values), np.nan)
            labels = np.full(len(t_values), None, dtype=object)
            for j, raw in enumerate(t_values):
                try:
                    term = parse_term(raw) if raw else None
                except TermError:
                    term = None
                if term is not None:
                    keys[j], labels[j] = term.key, term.label
            bad = np.isnan(keys)[t_codes]
            self._values("bad-term", [t_values[j] for j in _seen_codes(t_codes[bad & self.alive]) if t_values[j]])
            self._drop("bad-term", bad)
            term_key, term_label = keys[t_codes], labels[t_codes]

        points = np.full(n, np.nan)
        marks = np.full(n, None, dtype=object)
        if not self.enrolment_only:
            g_codes, g_values = self._field("grade")
            points, marks = self._grades(g_codes, g_values)

        if self.retakes != "all":
            self._drop("retake", self._retakes(s_codes, c_codes, term_key, points))
        self._minimum_counts(s_codes, c_codes)

        keep = np.flatnonzero(self.alive)
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
        self, s_codes: np.ndarray, c_codes: np.ndarray, term_key: np.ndarray, points: np.ndarray
    ) -> np.ndarray:
        """Rows that lose to another attempt of the same (student, course): ``latest`` keeps the latest term
        (ties and missing terms: the later row), ``best`` the most points (ties: the latest)."""
        idx = np.flatnonzero(self.alive)
        drop = np.zeros(len(self.alive), dtype=bool)
        if len(idx) < 2:
            return drop
        keys = [self.lines[idx], np.nan_to_num(term_key[idx], nan=-np.inf)]
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


def _ordered(dropped: Mapping[str, int]) -> list[str]:
    known = [r for r in REASONS if r in dropped]
    return known + sorted(r for r in dropped if r not in REASONS)
