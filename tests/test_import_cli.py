"""`electives import` and `electives synth` end to end, into a temporary SQLite database."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("secret_key")
Cli = Callable[..., tuple[int, str, str]]
AAST_ARGS = [
    "--map",
    "student=student serial",
    "--map",
    "term=Year+term",
    "--map",
    "course=Crs Code",
    "--map",
    "course_name=Course Name",
    "--map",
    "grade=total",
    "--scale",
    "percent",
]


RAW_IDS = ("20190001", "20190002", "20190003")  # the student serials in the aast_export fixture


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        out = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("grades", "students", "courses")}
    conn.close()
    return out


def test_import_prints_the_report_and_stores_the_rows(aast_export: Path, tmp_path: Path, cli: Cli) -> None:
    db = tmp_path / "e.db"
    report = tmp_path / "report.json"
    code, out, err = cli("import", aast_export, "--db", f"sqlite:///{db}", *AAST_ARGS, "--report", report)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "aast-grades.csv: 12 rows read, 5 kept, 7 dropped"
    assert "    retake                       1  other attempt of a retaken course; rows 9" in lines
    assert lines[-1] == (
        f"stored in sqlite:///{db} (import #1): 5 rows added, 0 already stored, 3 new students, 3 new courses"
    )
    assert json.loads(report.read_text())["dropped"] == {
        "duplicate": 1,
        "placeholder": 2,
        "no-grade": 2,
        "out-of-range": 1,
        "retake": 1,
    }
    assert counts(db) == {"grades": 5, "students": 3, "courses": 3}

    # The same file again is recognised by its checksum and adds nothing.
    code, out, _ = cli("import", aast_export, "--db", f"sqlite:///{db}", *AAST_ARGS)
    assert code == 0
    assert "was already imported on" in out.splitlines()[-1]
    assert counts(db) == {"grades": 5, "students": 3, "courses": 3}


def test_raw_ids_never_reach_the_database_or_the_output(aast_export: Path, tmp_path: Path, cli: Cli) -> None:
    db = tmp_path / "e.db"
    report = tmp_path / "report.json"
    code, out, err = cli("import", aast_export, "--db", f"sqlite:///{db}", *AAST_ARGS, "--report", report)
    assert code == 0
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("e.db*"))
    for raw in RAW_IDS:
        assert raw.encode() not in stored
        assert raw not in out + err + report.read_text()


@pytest.mark.parametrize(
    ("relative", "args", "kept"),
    [
        (
            "student-grades/college_grades/College_grades.csv",
            ["--map", "course=dept+level", "--map", "grade=grade", "--scale", "letter-us"],
            4355,
        ),
        (
            "student-grades/college_grades/College_grades.csv",
            ["--map", "course=dept+level", "--map", "grade=gradepoint", "--scale", "gpa4"],
            4368,
        ),
        (
            "student-grades/karypis_sample/sample.train",
            ["--no-header", "--columns", "student,course,term,grade", "--scale", "gpa4"],
            990,
        ),
    ],
    ids=["college-letters", "college-gradepoints", "karypis"],
)
def test_real_exports(data_dir: Path, tmp_path: Path, cli: Cli, relative: str, args: list[str], kept: int) -> None:
    db = tmp_path / "e.db"
    report = tmp_path / "r.json"
    code, _, err = cli("import", data_dir / relative, "--db", f"sqlite:///{db}", *args, "--report", report)
    assert (code, err) == (0, "")
    assert json.loads(report.read_text())["rows_kept"] == kept
    assert counts(db)["grades"] == kept


def test_dry_run_writes_nothing(aast_export: Path, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELECTIVES_SECRET_KEY")
    key_file = tmp_path / "secret.key"
    monkeypatch.setenv("ELECTIVES_KEY_FILE", str(key_file))
    db = tmp_path / "e.db"
    code, out, _ = cli("import", aast_export, "--db", f"sqlite:///{db}", *AAST_ARGS, "--dry-run")
    assert code == 0
    assert out.splitlines()[-1] == "dry run: nothing was written to the database"
    assert not db.exists()
    assert not key_file.exists()  # not even a pseudonym key


def test_database_from_the_environment_and_the_default(
    aast_export: Path, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_db = tmp_path / "env.db"
    monkeypatch.setenv("ELECTIVES_DB", f"sqlite:///{env_db}")
    assert cli("import", aast_export, *AAST_ARGS)[0] == 0
    assert counts(env_db)["grades"] == 5

    monkeypatch.delenv("ELECTIVES_DB")
    monkeypatch.chdir(tmp_path)
    assert cli("import", aast_export, *AAST_ARGS)[0] == 0
    assert counts(tmp_path / "electives.db")["grades"] == 5


def test_catalogue_only_and_with_grades(aast_export: Path, tmp_path: Path, cli: Cli) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("course_id,name,elective\nCS101,Intro to Computing,no\nCS201,Machine Learning,yes\n")
    db = tmp_path / "e.db"
    code, out, _ = cli("import", "--catalog", catalog, "--db", f"sqlite:///{db}")
    assert code == 0
    assert out.splitlines() == [
        "catalogue catalog.csv: 2 courses, 1 electives",
        f"stored in sqlite:///{db}: catalogue 2 courses added, 0 updated",
    ]
    code, out, _ = cli("import", aast_export, "--catalog", catalog, "--db", f"sqlite:///{db}", *AAST_ARGS)
    assert code == 0
    assert counts(db) == {"grades": 5, "students": 3, "courses": 4}  # CS201 from the catalogue, FR101/MA101 new


def test_enrolment_only_import(tmp_path: Path, cli: Cli) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("1\t10\n1\t11\n2\t10\n2\t10\n")
    db = tmp_path / "e.db"
    code, out, _ = cli("import", pairs, "--no-header", "--columns", "student,course", "--db", f"sqlite:///{db}")
    assert code == 0
    assert "  note: no grade column: enrolment-only (implicit) import; every kept row counts as taken" in out
    assert counts(db) == {"grades": 3, "students": 2, "courses": 2}


def test_help_lists_the_flags(cli: Cli) -> None:
    code, out, _ = cli("import", "--help")
    assert code == 0
    for flag in (
        "--db",
        "--map",
        "--scale",
        "--no-header",
        "--columns",
        "--delimiter",
        "--encoding",
        "--retakes",
        "--placeholders",
        "--min-per-student",
        "--min-per-course",
        "--catalog",
        "--report",
        "--dry-run",
        "--max-size",
    ):
        assert flag in out


def test_synth_writes_a_university_that_imports(tmp_path: Path, cli: Cli) -> None:
    out_dir = tmp_path / "uni"
    code, out, err = cli("synth", "--out", out_dir, "--students", "40", "--seed", "5")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"synthetic university (seed 5, 40 students) written to {out_dir}:"
    assert {Path(line.strip()).name for line in lines[1:]} == {
        "grades.csv",
        "grades-latin1.csv",
        "catalog.csv",
        "truth.csv",
        "README.txt",
    }
    db = tmp_path / "e.db"
    grades = out_dir / "grades.csv"
    code, out, err = cli("import", grades, "--catalog", out_dir / "catalog.csv", "--db", f"sqlite:///{db}", *AAST_ARGS)
    assert (code, err) == (0, "")
    assert counts(db)["students"] == 40


def test_synth_rejects_a_bad_size(tmp_path: Path, cli: Cli) -> None:
    code, _, err = cli("synth", "--out", tmp_path, "--students", "0")
    assert code == 2
    assert err == "electives synth: error: invalid synthetic university: n_students must be at least 1\n"


def test_a_second_grade_scale_is_refused_and_changes_nothing(aast_export: Path, tmp_path: Path, cli: Cli) -> None:
    db = tmp_path / "e.db"
    assert cli("import", aast_export, "--db", f"sqlite:///{db}", *AAST_ARGS)[0] == 0
    before = (db.read_bytes(), counts(db))
    letters = tmp_path / "letters.csv"
    letters.write_text("student,course,grade\nS1,CS101,A\n")
    code, out, err = cli("import", letters, "--db", f"sqlite:///{db}", "--scale", "letter-us")
    assert code == 2
    assert err.startswith("electives import: error: letters.csv is on grade scale 'letter-us', but this database")
    assert out.startswith("letters.csv: 1 rows read, 1 kept")  # the report is printed before storing fails
    assert (db.read_bytes(), counts(db)) == before
