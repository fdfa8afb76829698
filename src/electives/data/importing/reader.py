"""``read_export``: options checked, then the file's source, records, columns and rows, in that order.

Whole-file problems (missing, empty, header only, too big, binary, undecodable, a required column missing,
unknown scale, every row dropped) raise :class:`~electives.errors.DataError` or
:class:`~electives.errors.ScaleError` before anything is written."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from electives.data.importing.cleaner import Cleaner
from electives.data.importing.codes import FileCodes
from electives.data.importing.columns import resolve_fields
from electives.data.importing.options import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_MAX_SIZE,
    DEFAULT_PLACEHOLDERS,
    FIELDS,
    RETAKE_POLICIES,
    RetakePolicy,
    parse_delimiter,
)
from electives.data.importing.records import RecordChunks, check_column_count, detect_delimiter
from electives.data.importing.report import (
    ENROLMENT_ONLY_SCALE,
    CleaningReport,
    ImportResult,
    NothingToImport,
    UnknownTerms,
    ordered_reasons,
)
from electives.data.importing.source import Source, check_file, file_sha256, sniff
from electives.data.pseudonyms import Pseudonymiser
from electives.data.scales import BUILTIN_SCALES, GradeScale, load_scale
from electives.data.term_files import VOCABULARY_FORMAT
from electives.data.term_words import PLACES
from electives.data.terms import BUILTIN_READER, TermReader
from electives.errors import DataError


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
    terms: TermReader | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> ImportResult:
    """Read, map, clean and pseudonymise one grade export; the rules: :mod:`~electives.data.importing.cleaner`.

    ``scale`` (a GradeScale, a built-in name or a TOML path) is required unless the file has no grade column
    (enrolment-only). ``mapping`` maps fields to column expressions (``"dept+level"``); unmapped fields are
    guessed from the header. ``header=False`` needs ``columns``. ``pseudonymiser`` defaults to
    :meth:`Pseudonymiser.from_environment`. ``terms`` reads term codes (default: built-in; see :func:`_check_terms`).
    ``chunk_rows``: records read and coded at a time (memory only: the result is the same for any size)."""
    path = Path(path)
    name = path.name
    mapping = _checked_options(name, retakes=retakes, header=header, columns=columns, mapping=mapping)
    grade_scale = _resolve_scale(scale)
    delimiter = parse_delimiter(delimiter) if delimiter is not None else None

    check_file(path, max_size=max_size)
    sha256 = file_sha256(path)
    source = sniff(path, name=name, encoding=encoding)
    notes = list(source.notes)
    if delimiter is None:
        delimiter = detect_delimiter(source.head, name=name)
    chunks = _records(source, path, delimiter=delimiter, header=header, columns=columns, chunk_rows=chunk_rows)
    header_names = chunks.names or []

    fields = resolve_fields(header_names, mapping, name=name)
    report_columns = {f: "+".join(header_names[i] for i in fields[f]) for f in FIELDS if f in fields}
    grade_scale, enrolment_only = _grade_scale(grade_scale, columns=report_columns, name=name, notes=notes)
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
    codes = FileCodes(ncols=len(header_names), first_line=chunks.header_line + 1, fields=fields, report=report)
    for records, ends in chunks:
        codes.add(records, ends)
    codes.finish()
    if codes.rows_read == 0:
        raise DataError(
            f"{name} has a header line but no data rows" if header else f"{name} has no data rows (only blank lines)"
        )
    cleaner = Cleaner(
        codes,
        scale=grade_scale,
        enrolment_only=enrolment_only,
        placeholders=tuple(placeholders),
        retakes=retakes,
        min_per_student=min_per_student,
        min_per_course=min_per_course,
        report=report,
        terms=terms if terms is not None else BUILTIN_READER,
    )
    rows = cleaner.run(pseudonymiser if pseudonymiser is not None else Pseudonymiser.from_environment())
    report.notes = notes + report.notes
    _check_terms(report, ordered=terms is not None and terms.order is not None)
    _check_kept(report)
    return ImportResult(rows=rows, report=report, scale=grade_scale, enrolment_only=enrolment_only)


def _check_kept(report: CleaningReport) -> None:
    """Refuse an import that kept no row, naming every reason; the report travels with the error."""
    if report.rows_kept == 0:
        reasons = ", ".join(f"{r}: {report.dropped[r]:,}" for r in ordered_reasons(report.dropped))
        raise NothingToImport(
            f"{report.file_name}: all {report.rows_read:,} rows were dropped ({reasons}); nothing was imported",
            report,
        )


def _check_terms(report: CleaningReport, *, ordered: bool, most: int = 10) -> None:
    """``read_export(terms=)`` is a :class:`TermReader`, e.g. from :func:`electives.data.term_files.term_reader`.
    Refuse an import with term codes in no known form: name each (rows, lines, why), the words no vocabulary
    knows, and the two ways to explain them."""
    unknown = report.unknown_terms
    if not unknown:
        return
    rows = sum(u["rows"] for u in unknown.values())
    lines = [f"{report.file_name}: {len(unknown):,} term code(s) in no known form, in {rows:,} row(s); nothing was "
             "imported (storing the rest would lose those rows):"]  # fmt: skip
    for code, u in sorted(unknown.items(), key=lambda item: -item[1]["rows"])[:most]:
        at = ", ".join(map(str, u["lines"])) + (", ..." if u["rows"] > len(u["lines"]) else "")
        lines.append(f"  {code!r}: {u['rows']:,} row(s) (line(s) {at}){': ' + u['why'] if u['why'] else ''}")
    if len(unknown) > most:
        lines.append(f"  ... and {len(unknown) - most:,} more code(s) (all are in the report's unknown_terms)")
    words = list(dict.fromkeys(w for u in unknown.values() for w in u["words"]))
    if words:
        lines.append("unknown words: " + ", ".join(map(repr, words)))
        example = "\n".join(f'    "{w}" = "first-semester"' for w in words[:5])
        lines.append(
            "Say where each falls within the academic year in a TOML file given with --term-words FILE, e.g.:\n"
            f"    # word or phrase = place within the academic year\n{example}\n"
            f"  places: {', '.join(PLACES)}"
        )
    else:
        lines.append(
            "Words the built-in vocabulary lacks can be given in a TOML file with --term-words FILE:\n"
            + "\n".join("    " + line for line in VOCABULARY_FORMAT.splitlines())
        )
    if ordered:
        lines.append("Or add these codes to the --term-order file (every code of the export, oldest first).")
    else:
        lines.append("Or list every term code of the export, oldest first, one per line, in --term-order FILE.")
    raise UnknownTerms("\n".join(lines), report)


def _checked_options(
    name: str, *, retakes: str, header: bool, columns: Sequence[str] | None, mapping: Mapping[str, str] | None
) -> dict[str, str]:
    """Refuse contradictory options before the file is touched; the mapping, copied."""
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
    return mapping


def _records(
    source: Source, path: Path, *, delimiter: str, header: bool, columns: Sequence[str] | None, chunk_rows: int
) -> RecordChunks:
    """The data records in chunks, with the column names (the header's or ``columns``) and the header's line (0
    without one)."""
    chunks = RecordChunks(source, path, delimiter=delimiter, header=header, size=chunk_rows)
    if not header:
        chunks.names = [c.strip() for c in columns or ()]
        check_column_count(chunks.names, chunks.first(1000), name=path.name)
    elif not chunks.names:
        raise DataError(f"{path.name} is empty: expected a header line and grade rows")
    return chunks


def _grade_scale(
    scale: GradeScale | None, *, columns: Mapping[str, str], name: str, notes: list[str]
) -> tuple[GradeScale, bool]:
    """The scale to read grades on and whether the import is enrolment-only (no grade column); ``columns`` are
    the resolved field → column(s)."""
    if "grade" not in columns:
        notes.append("no grade column: enrolment-only (implicit) import; every kept row counts as taken")
        return (scale if scale is not None else ENROLMENT_ONLY_SCALE), True
    if scale is None:
        raise DataError(
            f"{name}: column {columns['grade']!r} holds the grades, so --scale is required: one of "
            f"{', '.join(BUILTIN_SCALES)}, or a .toml file describing the scale"
        )
    return scale, False


def ephemeral_pseudonymiser() -> Pseudonymiser:
    """A throw-away key, for dry runs: pseudonyms are not kept, and no key file gets created."""
    return Pseudonymiser(secrets.token_hex(32).encode("ascii"))


def _resolve_scale(scale: GradeScale | str | Path | None) -> GradeScale | None:
    if scale is None or isinstance(scale, GradeScale):
        return scale
    return load_scale(scale)
