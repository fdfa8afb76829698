"""Import a registrar's grade export: read, map columns, clean, pseudonymise — with a report of every row dropped.

:func:`read_export` reads CSV/TSV/whitespace-separated text, plain or gzip-compressed (told by magic bytes, not
by the file name), in UTF-8 (with or without BOM), UTF-16 with a BOM, or else latin-1. Student ids are replaced
by keyed pseudonyms inside the reader: raw ids never reach the :class:`ImportResult`, the report or an error
message.

Row-level problems never stop an import: each is dropped and counted in the :class:`CleaningReport` (the rules
and their order: :mod:`~electives.data.importing.cleaner`). The one exception is a term code in no known form: it
refuses the import (:class:`UnknownTerms`), since the registrar can explain it (``--term-words``, ``--term-order``)
and dropping its rows would lose real grades. Whole-file problems raise before anything is
written (:mod:`~electives.data.importing.reader`).

The modules, in the order a file goes through them: :mod:`.options` (the flags' parsers), :mod:`.source` (size,
gzip, encoding), :mod:`.records` (delimiter, fields, header), :mod:`.columns` (fields from ``--map`` or the
header), :mod:`.codes` (each chunk of records as codes of distinct values), :mod:`.cleaner` (the row rules, on the
whole file), :mod:`.rows` (the kept rows as codes), :mod:`.report` (what comes back) and :mod:`.reader` (all of
it). Memory grows with the distinct values and a few dozen bytes per row, never with a string per field.
"""

from electives.data.importing.columns import GUESSES
from electives.data.importing.options import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_MAX_SIZE,
    DEFAULT_PLACEHOLDERS,
    FIELDS,
    REQUIRED_FIELDS,
    RETAKE_POLICIES,
    RetakePolicy,
    parse_delimiter,
    parse_mapping,
    parse_placeholders,
    parse_size,
)
from electives.data.importing.reader import ephemeral_pseudonymiser, read_export
from electives.data.importing.report import (
    ENROLMENT_ONLY_SCALE,
    REASONS,
    CleaningReport,
    ImportRefused,
    ImportResult,
    NothingToImport,
    UnknownTerms,
)
from electives.data.importing.rows import FRAME_COLUMNS, ImportedRows

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_PLACEHOLDERS",
    "ENROLMENT_ONLY_SCALE",
    "FIELDS",
    "FRAME_COLUMNS",
    "GUESSES",
    "REASONS",
    "REQUIRED_FIELDS",
    "RETAKE_POLICIES",
    "CleaningReport",
    "ImportRefused",
    "ImportResult",
    "ImportedRows",
    "NothingToImport",
    "RetakePolicy",
    "UnknownTerms",
    "ephemeral_pseudonymiser",
    "parse_delimiter",
    "parse_mapping",
    "parse_placeholders",
    "parse_size",
    "read_export",
]
