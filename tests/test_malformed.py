"""Malformed inputs: each gives an exact message, whole-file problems exit 2 and leave the database untouched.

The corpus lives in tests/malformed/ (see its README); the cases that need big or variable files are made here.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from electives.data.importing import read_export

M = Path(__file__).parent / "malformed"
KEY = "malformed-test-key-0123456789abcdef"
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A database that already holds one good import: failed imports must leave it byte for byte as it was."""
    from electives.cli import main

    folder = tmp_path_factory.mktemp("db")
    good = folder / "good.csv"
    good.write_text("student,course,term,grade\nS1,CS101,FA2020,A\nS2,CS101,FA2020,B\n")
    path = folder / "grades.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ELECTIVES_SECRET_KEY", KEY)
        assert main(["import", str(good), "--db", f"sqlite:///{path}", "--scale", "letter-us"]) == 0
    return path, f"sqlite:///{path}"


def snapshot(path: Path) -> tuple[str, dict[str, int], list[str]]:
    """Checksum of the database file, row counts (read-only) and the files beside it."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        counts = {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("grades", "students", "courses", "imports")
        }
    conn.close()
    return digest, counts, sorted(p.name for p in path.parent.iterdir())


def sparse(tmp: Path) -> Path:
    path = tmp / "big.csv"
    with path.open("wb") as fh:
        fh.truncate(200 * 2**20)  # sparse: instant, takes no disk
    return path


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def late_nul(tmp: Path) -> Path:
    rows = "".join(f"S{i},CS{i % 9},FA2020,A\n" for i in range(5000))
    return write(tmp, "late_nul.csv", f"student,course,term,grade\n{rows}S9,CS1\x00,FA2020,B\n".encode())


def karypis_like(tmp: Path) -> Path:
    return write(tmp, "sample.train", b"1 11 1 3.333\n1 12 1 4.000\n2 11 2 2.667\n")


try:  # tomllib's own wording, which may change between Python versions
    tomllib.loads((M / "bad_scale.toml").read_text())
except tomllib.TOMLDecodeError as exc:
    TOML_ERROR = str(exc)
LATIN1_BYTE = (M / "latin1.csv").read_bytes().index(b"\xe7")

# (id, files made in tmp -> argv after "import", expected message after "electives import: error: ")
WHOLE_FILE: list[tuple[str, Callable[[Path], list], str]] = [
    (
        "empty",
        lambda t: [M / "empty.csv", "--scale", "letter-us"],
        "empty.csv is empty: expected a header line and grade rows",
    ),
    (
        "whitespace-only",
        lambda t: [M / "whitespace_only.csv", "--scale", "letter-us"],
        "whitespace_only.csv is empty: expected a header line and grade rows",
    ),
    (
        "empty-gzip",
        lambda t: [write(t, "empty.csv.gz", gzip.compress(b"")), "--scale", "letter-us"],
        "empty.csv.gz is empty: expected a header line and grade rows",
    ),
    (
        "header-only",
        lambda t: [M / "header_only.csv", "--scale", "letter-us"],
        "header_only.csv has a header line but no data rows",
    ),
    (
        "missing-column",
        lambda t: [M / "missing_course.csv", "--scale", "letter-us"],
        "missing_course.csv: no course column (looked for course, course id, courseid, course code, coursecode, "
        "course no ...); the file's columns are 'student', 'term', 'grade'; name it with --map course=COLUMN",
    ),
    (
        "ambiguous-guess",
        lambda t: [M / "ambiguous_grade.csv", "--scale", "letter-us"],
        "ambiguous_grade.csv: cannot tell which column holds the grade: 'grade' and 'gradepoint'; "
        "choose one with --map grade=COLUMN",
    ),
    (
        "no-delimiter",
        lambda t: [M / "one_column.csv"],
        "one_column.csv: cannot tell how fields are separated (tried comma, semicolon, tab, pipe and whitespace); "
        "pass --delimiter",
    ),
    (
        "png",
        lambda t: [M / "image.png", "--scale", "letter-us"],
        "image.png is a PNG image, not a CSV/TSV export; export the grades as CSV first",
    ),
    (
        "gzipped-png",
        lambda t: [write(t, "grades.gz", gzip.compress((M / "image.png").read_bytes())), "--scale", "letter-us"],
        "grades.gz is a PNG image, not a CSV/TSV export; export the grades as CSV first",
    ),
    (
        "zip",
        lambda t: [M / "workbook.xlsx", "--scale", "letter-us"],
        "workbook.xlsx is a ZIP archive (an .xlsx or .ods workbook?), not a CSV/TSV export; export the grades as CSV first",
    ),
    (
        "binary",
        lambda t: [M / "control_chars.bin", "--scale", "letter-us"],
        "control_chars.bin is a binary file, not a CSV/TSV export (too many control characters)",
    ),
    (
        "truncated-gzip",
        lambda t: [M / "truncated.csv.gz", "--scale", "letter-us"],
        "truncated.csv.gz is gzip-compressed but it ends early (truncated); copy the file again or export it uncompressed",
    ),
    (
        "nul-bytes",
        lambda t: [M / "nul_bytes.csv", "--scale", "letter-us"],
        "nul_bytes.csv contains NUL bytes (line 3): it is not a text CSV/TSV export",
    ),
    (
        "nul-bytes-past-the-sample",
        lambda t: [late_nul(t), "--scale", "letter-us"],
        "late_nul.csv contains NUL bytes (line 5002): it is not a text CSV/TSV export",
    ),
    (
        "utf16-without-bom",
        lambda t: [M / "utf16_no_bom.csv", "--scale", "letter-us"],
        "utf16_no_bom.csv contains NUL bytes (line 1): it is not a text CSV/TSV export (it looks like UTF-16 "
        "without a byte-order mark: pass --encoding utf-16-le or utf-16-be)",
    ),
    (
        "forced-encoding-fails",
        lambda t: [M / "latin1.csv", "--scale", "letter-us", "--encoding", "utf-8"],
        f"latin1.csv is not valid utf-8: byte 0xe7 at line 2 (byte {LATIN1_BYTE}) cannot be decoded; pass the right "
        "--encoding (e.g. latin-1) or re-save the file as UTF-8",
    ),
    (
        "unknown-encoding",
        lambda t: [M / "latin1.csv", "--scale", "letter-us", "--encoding", "klingon"],
        "--encoding 'klingon' is not an encoding Python knows (try utf-8 or latin-1)",
    ),
    (
        "too-big",
        lambda t: [sparse(t), "--scale", "letter-us"],
        "big.csv is 200 MiB (209,715,200 bytes), over the import limit of 100 MiB; if the file is right, raise the "
        "limit with --max-size (e.g. --max-size 200M)",
    ),
    (
        "too-big-for-a-lower-limit",
        lambda t: [M / "ragged.csv", "--scale", "letter-us", "--max-size", "100"],
        "ragged.csv is 111 bytes, over the import limit of 100 bytes; if the file is right, raise the "
        "limit with --max-size (e.g. --max-size 1M)",
    ),
    ("missing-file", lambda t: [t / "nope.csv", "--scale", "letter-us"], "{tmp}/nope.csv: file does not exist"),
    ("directory", lambda t: [t, "--scale", "letter-us"], "{tmp} is not a file"),
    (
        "unknown-map-field",
        lambda t: [M / "unknown_marks.csv", "--scale", "letter-us", "--map", "studnet=student"],
        "--map 'studnet=student': unknown field 'studnet'; expected one of student, course, term, grade, course_name",
    ),
    (
        "map-without-equals",
        lambda t: [M / "unknown_marks.csv", "--scale", "letter-us", "--map", "course"],
        "--map 'course': expected FIELD=COLUMN, e.g. --map course=dept+level",
    ),
    (
        "map-to-missing-column",
        lambda t: [M / "unknown_marks.csv", "--scale", "letter-us", "--map", "course=crs code"],
        "unknown_marks.csv: --map course=crs code: no column 'crs code'; the file's columns are 'student', 'course', "
        "'term', 'grade'",
    ),
    (
        "map-join-with-missing-part",
        lambda t: [M / "unknown_marks.csv", "--scale", "letter-us", "--map", "term=Year+term"],
        "unknown_marks.csv: --map term=Year+term: no column 'Year'; the file's columns are 'student', 'course', "
        "'term', 'grade'",
    ),
    (
        "map-to-a-repeated-column",
        lambda t: [
            write(t, "g.csv", b"student,course,grade,grade\n1,A,80,90\n"),
            "--scale",
            "percent",
            "--map",
            "grade=grade",
        ],
        "g.csv: --map grade=grade: column 'grade' appears 2 times; the file's columns are 'student', 'course', "
        "'grade', 'grade'",
    ),
    (
        "bad-columns-count",
        lambda t: [karypis_like(t), "--scale", "gpa4", "--no-header", "--columns", "student,course,term"],
        "sample.train: --columns names 3 column(s) (student, course, term) but the file's lines have 4 fields",
    ),
    (
        "no-header-without-columns",
        lambda t: [karypis_like(t), "--scale", "gpa4", "--no-header"],
        "sample.train: --no-header needs --columns naming the file's columns, e.g. student,course,term,grade",
    ),
    (
        "columns-with-header",
        lambda t: [M / "unknown_marks.csv", "--scale", "gpa4", "--columns", "a,b,c,d"],
        "--columns names the columns of a file without a header: use it with --no-header",
    ),
    (
        "bad-delimiter",
        lambda t: [M / "unknown_marks.csv", "--scale", "letter-us", "--delimiter", "::"],
        "--delimiter '::': expected one character or one of comma, semicolon, tab, pipe, whitespace",
    ),
    (
        "unknown-scale",
        lambda t: [M / "unknown_marks.csv", "--scale", "percentage"],
        "unknown scale 'percentage': expected one of percent, gpa4, letter-us, letter-plus or a .toml file",
    ),
    (
        "missing-scale-file",
        lambda t: [M / "unknown_marks.csv", "--scale", t / "mine.toml"],
        "scale file '{tmp}/mine.toml' does not exist",
    ),
    (
        "scale-not-toml",
        lambda t: [M / "unknown_marks.csv", "--scale", M / "bad_scale.toml"],
        f"scale file '{M}/bad_scale.toml': not valid TOML: {TOML_ERROR}",
    ),
    (
        "scale-inverted",
        lambda t: [M / "unknown_marks.csv", "--scale", M / "inverted_scale.toml"],
        "scale 'inverted': 'high' (0.0) must be greater than 'low' (100.0)",
    ),
    (
        "grades-without-scale",
        lambda t: [M / "unknown_marks.csv"],
        "unknown_marks.csv: column 'grade' holds the grades, so --scale is required: one of percent, gpa4, "
        "letter-us, letter-plus, or a .toml file describing the scale",
    ),
    (
        "every-row-dropped",
        lambda t: [M / "all_dropped.csv", "--scale", "letter-us"],
        "all_dropped.csv: all 3 rows were dropped (placeholder: 1, no-grade: 2); nothing was imported",
    ),
    (
        "every-row-ragged",
        lambda t: [write(t, "r.csv", b"student,course,grade\n1,A\n2,B\n"), "--scale", "letter-us"],
        "r.csv: all 2 rows were dropped (ragged-row: 2); nothing was imported",
    ),
    ("nothing-to-import", lambda t: [], "nothing to import: give a grade FILE, a --catalog FILE, or both"),
]


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in WHOLE_FILE], ids=[c[0] for c in WHOLE_FILE])
def test_whole_file_problems_exit_2_and_change_nothing(
    make: Callable[[Path], list], message: str, db: tuple[Path, str], cli: Cli, tmp_path: Path, secret_key: str
) -> None:
    path, url = db
    before = snapshot(path)
    code, _, err = cli("import", *make(tmp_path), "--db", url)
    assert code == 2
    assert err == f"electives import: error: {message.replace('{tmp}', str(tmp_path))}\n"
    assert snapshot(path) == before


def test_the_corpus_has_enough_cases() -> None:
    assert len(WHOLE_FILE) + len(ROW_LEVEL) >= 20
    assert len(list(M.iterdir())) >= 20


def test_every_row_dropped_still_writes_the_report(
    db: tuple[Path, str], cli: Cli, tmp_path: Path, secret_key: str
) -> None:
    path, url = db
    before = snapshot(path)
    out_json = tmp_path / "report.json"
    code, out, _ = cli("import", M / "all_dropped.csv", "--scale", "letter-us", "--db", url, "--report", out_json)
    assert code == 2
    report = json.loads(out_json.read_text())
    assert report["dropped"] == {"placeholder": 1, "no-grade": 2}
    assert report["examples"] == {"placeholder": [3], "no-grade": [2, 4]}
    assert report["rows_kept"] == 0
    assert "    no-grade                     2  mark without a grade (W, P, I ...); rows 2, 4" in out.splitlines()
    assert snapshot(path) == before


def test_bad_max_size_is_a_usage_error(cli: Cli) -> None:
    code, _, err = cli("import", M / "ragged.csv", "--max-size", "lots")
    assert code == 2
    assert "argument --max-size: 'lots' is not a size (expected e.g. 500K, 100M, 2G or none)" in err


# ---------------------------------------------------------------------- row-level problems: counted, not fatal
# (file, extra args, reason, count, example rows, printed report line)
ROW_LEVEL = [
    (
        "unknown_marks.csv",
        ["--scale", "letter-us"],
        "unknown-mark",
        4,
        [3, 5, 6, 7],
        "unknown-mark                 4  not a mark of the scale; rows 3, 5, 6, 7 (values: 'X', 'A*', 'Z')",
    ),
    (
        "out_of_range.csv",
        ["--scale", "percent"],
        "out-of-range",
        4,
        [3, 4, 5, 6],
        "out-of-range                 4  outside the scale's range; rows 3, 4, 5, 6 (values: '-5', '100.5', '150', '-0.1')",
    ),
    (
        "ragged.csv",
        ["--scale", "letter-us"],
        "ragged-row",
        3,
        [3, 4, 5],
        "ragged-row                   3  too few or too many fields; rows 3, 4, 5",
    ),
    (
        "unclosed_quote.csv",
        ["--scale", "letter-us"],
        "ragged-row",
        1,
        [3],
        "ragged-row                   1  too few or too many fields; rows 3",
    ),
]


@pytest.mark.parametrize(("name", "args", "reason", "count", "rows", "line"), ROW_LEVEL, ids=[r[0] for r in ROW_LEVEL])
def test_row_level_problems_are_counted(
    name: str, args: list[str], reason: str, count: int, rows: list[int], line: str, cli: Cli, secret_key: str
) -> None:
    code, out, err = cli("import", M / name, *args, "--dry-run")
    assert (code, err) == (0, "")
    assert f"    {line}" in out.splitlines()
    scale = args[args.index("--scale") + 1]
    report = read_export(M / name, scale=scale).report
    assert report.dropped[reason] == count
    assert report.examples[reason] == rows
    assert report.reason_line(reason) == line


def test_unclosed_quote_is_pointed_out(secret_key: str) -> None:
    report = read_export(M / "unclosed_quote.csv", scale="letter-us").report
    assert report.rows_read == 2  # the open quote swallowed lines 4 and 5
    assert "row 3 runs on to line 5: a quote left open?" in report.notes


def test_latin1_is_read_with_a_note(secret_key: str) -> None:
    result = read_export(M / "latin1.csv", scale="letter-us")
    assert result.report.encoding == "latin-1"
    assert result.report.notes[0] == "not valid UTF-8 (byte 0xe7 at line 2); read as latin-1"
    assert sorted(set(result.frame["course_name"])) == ["Français I", "Übersetzung"]


def test_utf16_with_bom_is_read(secret_key: str) -> None:
    result = read_export(M / "utf16_bom.csv", scale="letter-us")
    assert result.report.encoding == "utf-16"
    assert result.frame["course_name"].tolist() == ["Français I", "Français I"]


def test_utf8_bom_does_not_stick_to_the_first_column(secret_key: str) -> None:
    result = read_export(M / "utf8_bom.csv", scale="letter-us")
    assert result.report.encoding == "utf-8 (BOM)"
    assert result.report.columns["student"] == "student"
    assert result.report.rows_kept == 2
