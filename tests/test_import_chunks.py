"""Importing and training a chunk at a time: the chunk size changes memory only — never the report, the stored
rows or what training reads."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from support import TEST_KEY

from electives.data.importing import UnknownTerms, read_export
from electives.data.interactions import Interactions
from electives.data.pseudonyms import Pseudonymiser
from electives.data.storage import Store

KEY = Pseudonymiser(TEST_KEY.encode())
MAPPING = {"course": "dept+level"}
TERMS = ["2019-Fall", "2020 Spring", "Spring 2021", "2021 1", "2012 95", "2012 91", "", "Niet toegewezen", "2020-21"]
MARKS = ["55", "70.5", "W", "999", "777", "101", "abc", "", "88", "60", " 75 ", "40"]


def messy_export(path: Path, *, rows: int = 300, seed: int = 7) -> Path:
    """Every kind of row the cleaner drops, spread over the file: exact copies and retakes far apart (in other
    chunks), quoted names over two lines, ragged rows, blank lines and ``,,,`` lines, trimmed ids."""
    rng = random.Random(seed)
    lines = ["student,dept,level,term,grade,course_name,note"]
    for _ in range(rows):
        student = str(rng.randint(1, 30))
        if rng.random() < 0.1:
            student = f" {student} "
        name = rng.choice(["Intro", "", '"Two\nlines"', '"Calc, I"'])
        fields = [student, rng.choice(["CS", "MA", "PH", ""]), rng.choice(["101", "102", "201"]),
                  rng.choice(TERMS), rng.choice(MARKS), name, rng.choice("abc")]  # fmt: skip
        line = ",".join(fields)
        r = rng.random()
        if r < 0.04:
            line += ",extra"
        elif r < 0.07:
            line = ",".join(fields[:3])
        elif r < 0.09:
            line = ""
        elif r < 0.11:
            line = ",,,,,,"
        lines.append(line)
        if rng.random() < 0.08:
            lines.insert(rng.randint(1, len(lines)), line)  # an exact copy, before or after
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def database(path: Path) -> dict[str, list[tuple]]:
    """Every table's rows, in storage order, without the import's time."""
    with sqlite3.connect(path) as conn:
        tables = {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in ("students", "courses", "grades", "meta")}  # fmt: skip
        tables["imports"] = conn.execute(
            "SELECT id, file_sha256, file_name, scale_name, scale_toml, enrolment_only, rows_kept, rows_added, report "
            "FROM imports ORDER BY id"
        ).fetchall()
    return tables


@pytest.mark.parametrize(
    "options",
    [
        {"scale": "percent"},
        {"scale": "percent", "retakes": "best", "min_per_student": 3, "min_per_course": 2},
        {"mapping": {**MAPPING, "grade": ""}, "retakes": "all"},
        {"mapping": {**MAPPING, "term": ""}, "scale": "percent"},
    ],
)
def test_a_tiny_chunk_size_imports_exactly_what_the_default_does(tmp_path: Path, options: dict) -> None:
    export = messy_export(tmp_path / "grades.csv")
    stored = {}
    for name, chunks in (("default", {}), ("tiny", {"chunk_rows": 3})):
        result = read_export(export, **{"mapping": MAPPING, **options}, pseudonymiser=KEY, **chunks)
        db = tmp_path / f"{name}.db"
        with Store(f"sqlite:///{db}") as store:
            store.save_import(result, batch_rows=2 if chunks else None)
            stored[name] = (result.report.to_dict(), database(db), result.frame)
    (report, tables, frame), (tiny_report, tiny_tables, tiny_frame) = stored["default"], stored["tiny"]
    assert tiny_report == report
    assert tiny_tables == tables
    assert tiny_frame.equals(frame)
    # The file holds what each rule is about: the comparison is not vacuous.
    assert {"duplicate", "ragged-row"} <= set(report["dropped"]) and len(tables["grades"]) > 20
    assert any("runs on" in note for note in report["notes"]) or "course_name" not in report["columns"]


def test_an_unknown_term_in_the_last_chunk_refuses_the_whole_file(tmp_path: Path) -> None:
    rows = [f"{i},C{i % 4},2020-Fall,{50 + i}" for i in range(12)] + ["99,C1,2020-Autumnish,70"]
    export = tmp_path / "t.csv"
    export.write_text("student,course,term,grade\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(UnknownTerms) as tiny:
        read_export(export, scale="percent", pseudonymiser=KEY, chunk_rows=2)
    with pytest.raises(UnknownTerms) as whole:
        read_export(export, scale="percent", pseudonymiser=KEY)
    assert tiny.value.report.to_dict() == whole.value.report.to_dict()
    assert tiny.value.report.unknown_terms["2020-Autumnish"]["lines"] == [14]


def test_copies_and_retakes_are_found_across_chunks(tmp_path: Path) -> None:
    lines = ["1,A,2020-Fall,70", "2,A,2020-Fall,60", *(f"{i},B,2020-Fall,80" for i in range(3, 9))]
    lines += ["1,A,2020-Fall,70", "2,A,2021-Spring,65"]  # line 10: a copy of line 2; line 11: a retake of line 3
    export = tmp_path / "g.csv"
    export.write_text("student,course,term,grade\n" + "\n".join(lines) + "\n", encoding="utf-8")
    result = read_export(export, scale="percent", pseudonymiser=KEY, chunk_rows=2)
    assert result.report.dropped == {"duplicate": 1, "retake": 1}
    assert result.report.examples == {"duplicate": [10], "retake": [3]}
    assert 11 in result.frame["row"].tolist()


@pytest.mark.parametrize("retakes", ["latest", "best", "all"])
def test_training_reads_the_rows_load_grades_returns(tmp_path: Path, retakes: str) -> None:
    """`load_grade_rows` (index arrays, read a chunk at a time) gives the same Interactions as the frame of
    `load_grades`, in the same order, for both modes; rows without a term sort first."""
    export = messy_export(tmp_path / "grades.csv", rows=200)
    with Store(f"sqlite:///{tmp_path / 'g.db'}") as store:
        store.save_import(read_export(export, mapping=MAPPING, scale="percent", retakes="all", pseudonymiser=KEY))
        other = messy_export(tmp_path / "more.csv", rows=120, seed=8)
        store.save_import(read_export(other, mapping={**MAPPING, "grade": ""}, retakes="all", pseudonymiser=KEY))
        frame = store.load_grades(retakes)
        stored = store.load_grade_rows(retakes, chunk_rows=7)
    keys = frame["term_key"]
    latest = frame.loc[keys.idxmax()]  # the first row of the latest term
    assert stored.latest_term == (str(latest["term"]), int(latest["term_key"]))
    frame = frame.assign(term=keys.fillna(keys.min() - 1).astype("int64"))
    graded = frame[frame["grade"].notna()]
    expected = {
        "explicit": Interactions.from_frame(graded[["student", "course", "grade", "term"]]),
        "implicit": Interactions.from_frame(frame[["student", "course", "term"]]),
    }
    for mode, want in expected.items():
        got = stored.rows.interactions(mode)
        assert got.fingerprint() == want.fingerprint(), mode
    assert keys.isna().any() and len(graded) < len(frame)  # rows without a term, and without a grade
    assert np.isnan(stored.rows.grades).sum() == len(frame) - len(graded)
