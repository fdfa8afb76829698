"""Data sub-commands: `import` (grade exports and catalogues into the database) and `synth` (a demo university)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from electives.data.importing import (
    DEFAULT_PLACEHOLDERS,
    FIELDS,
    RETAKE_POLICIES,
    CleaningReport,
    ImportRefused,
    ImportResult,
    ephemeral_pseudonymiser,
    parse_mapping,
    parse_placeholders,
    parse_size,
    read_export,
)
from electives.data.pseudonyms import Pseudonymiser
from electives.data.scales import BUILTIN_SCALES
from electives.data.term_files import term_reader
from electives.defaults import DB_ENV, DEFAULT_DB_URL
from electives.errors import DataError, ElectivesError
from electives.models.config import count


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_import(subparsers)
    _register_synth(subparsers)


# ---------------------------------------------------------------------- import
def _register_import(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import",
        help="import a registrar's grade export (and/or a course catalogue) into the database",
        description=(
            "Read a grade export (CSV/TSV/whitespace-separated, plain or gzip), map its columns, clean it, replace "
            "student ids by keyed pseudonyms and store it. Rows that cannot be used are dropped and counted in the "
            "cleaning report; a file that cannot be used at all changes nothing and exits with status 2."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            '  electives import grades.csv --map student="student serial" --map term=Year+term \\\n'
            '      --map course="Crs Code" --map course_name="Course Name" --map grade=total --scale percent\n'
            "  electives import sample.train --no-header --columns student,course,term,grade --scale gpa4\n"
            "  electives import pairs.tsv.gz --no-header --columns student,course     # enrolment-only\n"
            "  electives import --catalog catalog.csv                                  # catalogue only"
        ),
    )
    p.add_argument("file", nargs="?", metavar="FILE", help="the grade export (may be omitted with --catalog)")
    p.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help=f"database URL (default: ${DB_ENV}, else {DEFAULT_DB_URL}); e.g. postgresql+psycopg://user:pw@host/db",
    )
    add_export_arguments(p)
    p.add_argument("--catalog", metavar="FILE", help="course catalogue CSV to store (before the grades)")
    p.add_argument("--report", metavar="OUT.json", help="also write the cleaning report as JSON")
    p.add_argument("--dry-run", action="store_true", help="read, clean and report, but write nothing")
    p.set_defaults(func=run_import)


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that say how to read a grade export (shared by `import` and `train --data`)."""
    p.add_argument(
        "--map",
        dest="maps",
        action="append",
        default=[],
        metavar="FIELD=EXPR",
        help=(
            f"which column(s) hold FIELD ({', '.join(FIELDS)}); EXPR is a column name, or names joined with + "
            "(values joined by a space: --map course=dept+level). Names match case-insensitively. An empty "
            "EXPR (--map grade=) ignores that field. Unmapped fields are guessed from the header. Repeatable."
        ),
    )
    p.add_argument(
        "--scale",
        metavar="NAME|FILE.toml",
        help=(
            f"grade scale: {', '.join(BUILTIN_SCALES)} or a TOML file; required when the file has a grade "
            "column (no default: a wrong guess would silently mis-read every grade)"
        ),
    )
    p.add_argument("--no-header", action="store_true", help="the file has no header line (give --columns)")
    p.add_argument(
        "--columns", metavar="a,b,c", help="names of the columns of a file without header, in order (--no-header)"
    )
    p.add_argument(
        "--delimiter",
        metavar="D",
        help="field separator: one character, or comma, semicolon, tab, pipe, whitespace (default: detected)",
    )
    p.add_argument(
        "--encoding", metavar="E", help="text encoding, e.g. utf-8, latin-1, utf-16 (default: UTF-8, else latin-1)"
    )
    p.add_argument(
        "--retakes",
        choices=RETAKE_POLICIES,
        default="latest",
        help="which attempt of a retaken course to keep: the latest term (default), the best grade, or all",
    )
    p.add_argument(
        "--placeholders",
        metavar="777,888,999",
        default=",".join(DEFAULT_PLACEHOLDERS),
        help="grade values that mean 'no real grade' and drop the row (default: %(default)s; '' for none)",
    )
    p.add_argument(
        "--min-per-student",
        type=count,
        default=0,
        metavar="N",
        help="drop students with fewer than N kept rows (applied with --min-per-course until stable)",
    )
    p.add_argument(
        "--min-per-course", type=count, default=0, metavar="N", help="drop courses with fewer than N kept rows"
    )
    p.add_argument(
        "--term-words",
        metavar="FILE.toml",
        help=(
            'the registrar\'s term words, a TOML file of lines such as  "herfstblok" = "first-semester"  (word '
            "= place within the academic year); adds to and overrides the built-in vocabulary"
        ),
    )
    p.add_argument(
        "--term-order",
        metavar="FILE",
        help="every term code of the export, one per line, oldest first: for codes only the registrar can order",
    )
    p.add_argument(
        "--max-size",
        type=_size,
        default="100M",
        metavar="SIZE",
        help="refuse files larger than this on disk (default: %(default)s; K/M/G are binary units; none: no limit)",
    )


def read_export_from_args(
    args: argparse.Namespace, path: str, pseudonymiser: Pseudonymiser | None = None
) -> ImportResult:
    """Run the reader with the flags added by :func:`add_export_arguments`."""
    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    if columns is not None and (not all(columns) or len(set(columns)) != len(columns)):
        raise DataError(f"--columns {args.columns!r}: expected distinct, non-empty names such as a,b,c")
    return read_export(
        path,
        scale=args.scale,
        mapping=parse_mapping(args.maps),
        header=not args.no_header,
        columns=columns,
        delimiter=args.delimiter,
        encoding=args.encoding,
        retakes=args.retakes,
        placeholders=parse_placeholders(args.placeholders),
        min_per_student=args.min_per_student,
        min_per_course=args.min_per_course,
        max_size=args.max_size,
        pseudonymiser=pseudonymiser,
        terms=term_reader(args.term_words, args.term_order),
    )


def _size(text: str) -> int | None:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_import(args: argparse.Namespace) -> int:
    if args.file is None and args.catalog is None:
        raise DataError("nothing to import: give a grade FILE, a --catalog FILE, or both")
    db = args.db or os.environ.get(DB_ENV) or DEFAULT_DB_URL

    result = None
    if args.file is not None:
        try:
            # A dry run stores no pseudonym, so it needs no key (and must not create a key file).
            result = read_export_from_args(args, args.file, ephemeral_pseudonymiser() if args.dry_run else None)
        except ImportRefused as exc:
            print(exc.report.summary())
            _write_report(args.report, exc.report)
            raise
        print(result.report.summary())
        _write_report(args.report, result.report)

    catalog = None
    if args.catalog is not None:
        from electives.data.catalog import read_catalog

        catalog = read_catalog(args.catalog)
        print(f"catalogue {Path(args.catalog).name}: {len(catalog):,} courses, {len(catalog.electives):,} electives")

    if args.dry_run:
        print("dry run: nothing was written to the database")
        return 0

    from electives.data.storage import Store

    with Store(db) as store:
        if result is None:
            assert catalog is not None
            done = store.save_catalog(catalog)
            print(f"stored in {store.url}: catalogue {done.added:,} courses added, {done.updated:,} updated")
            return 0
        summary = store.save_import(result, catalog)
        if summary.already_imported:
            print(
                f"{summary.file_name} was already imported on {summary.imported_at:%Y-%m-%d %H:%M} UTC "
                f"(import #{summary.import_id}) into {store.url}: nothing added"
            )
        else:
            print(
                f"stored in {store.url} (import #{summary.import_id}): {summary.rows_added:,} rows added, "
                f"{summary.rows_skipped:,} already stored, {summary.students_added:,} new students, "
                f"{summary.courses_added:,} new courses"
            )
    return 0


def _write_report(path: str | None, report: CleaningReport) -> None:
    if path is None:
        return
    try:
        Path(path).write_text(report.to_json() + "\n", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot write the report to {path}: {exc.strerror or exc}") from None
    print(f"report written to {path}")


# ---------------------------------------------------------------------- synth
def _register_synth(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic university (grade export, catalogue, ground truth) for demos and tests",
        description="Generate a deterministic synthetic university shaped like a registrar's export.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write the files into")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="random seed (default: the generator's)")
    p.add_argument("--students", type=int, default=None, metavar="N", help="number of students (default: 2000)")
    p.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from electives.data.synth import SynthConfig, generate, write

    options = {}
    if args.seed is not None:
        options["seed"] = args.seed
    if args.students is not None:
        options["n_students"] = args.students
    try:
        university = generate(SynthConfig(**options))
    except ValueError as exc:
        raise ElectivesError(f"invalid synthetic university: {exc}") from None
    out = Path(args.out)
    try:
        paths = write(university, out)
    except OSError as exc:
        raise DataError(f"cannot write to {out}: {exc.strerror or exc}") from None
    cfg = university.config
    print(f"synthetic university (seed {cfg.seed}, {cfg.n_students:,} students) written to {out}:")
    for path in paths.values():
        print(f"  {path}")
    return 0
