"""The grade-export reader: real exports, column mapping, cleaning rules, privacy and the report."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from electives.data.importing import (
    FRAME_COLUMNS,
    REASONS,
    CleaningReport,
    NothingToImport,
    parse_delimiter,
    parse_mapping,
    parse_placeholders,
    parse_size,
    read_export,
)
from electives.data.pseudonyms import Pseudonymiser
from electives.data.terms import parse_term
from electives.errors import DataError

pytestmark = pytest.mark.usefixtures("secret_key")

AAST_MAP = {
    "student": "student serial",
    "term": "Year+term",
    "course": "Crs Code",
    "course_name": "Course Name",
    "grade": "total",
}
RAW_IDS = ("20190001", "20190002", "20190003")  # the student serials in the aast_export fixture


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# ---------------------------------------------------------------------- the AAST-shaped export
def test_aast_shaped_export(aast_export: Path) -> None:
    result = read_export(aast_export, mapping=AAST_MAP, scale="percent")
    report = result.report
    assert report.rows_read == 12
    assert report.rows_kept == 5
    assert report.dropped == {"duplicate": 1, "placeholder": 2, "no-grade": 2, "out-of-range": 1, "retake": 1}
    assert report.examples == {
        "duplicate": [7],
        "placeholder": [5, 11],
        "no-grade": [3, 10],
        "out-of-range": [12],
        "retake": [9],
    }
    assert report.values == {"out-of-range": ["104"]}
    assert report.encoding == "latin-1"
    assert report.delimiter == ","
    assert report.scale == "percent"
    assert report.notes == ["not valid UTF-8 (byte 0xe7 at line 6); read as latin-1"]
    assert not result.enrolment_only

    frame = result.frame
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert frame["row"].tolist() == [2, 4, 6, 8, 13]
    assert frame["course"].tolist() == ["CS101", "MA101", "FR101", "CS101", "CS101"]
    assert frame.loc[frame["course"] == "FR101", "course_name"].item() == "Français I"
    assert frame["term"].tolist() == ["2019-Fall", "2020-Spring", "2019-Fall", "2020-Fall", "2020-Spring"]
    assert frame["term_key"].tolist() == [20196, 20202, 20196, 20206, 20202]
    assert frame["mark"].tolist() == ["87.5", "64", "91", "55", "72.5"]
    assert frame["points"].tolist() == [87.5, 64.0, 91.0, 55.0, 72.5]
    assert frame["grade"].tolist() == pytest.approx([0.875, 0.64, 0.91, 0.55, 0.725])


def test_aast_summary_text(aast_export: Path) -> None:
    report = read_export(aast_export, mapping=AAST_MAP, scale="percent").report
    assert report.summary() == (
        "aast-grades.csv: 12 rows read, 5 kept, 7 dropped\n"
        "  read as latin-1, comma-separated; scale percent; retakes: latest\n"
        "  columns: student <- student serial, course <- Crs Code, term <- Year+term, grade <- total, "
        "course_name <- Course Name\n"
        "  dropped:\n"
        "    duplicate                    1  exact copy of an earlier row; rows 7\n"
        "    placeholder                  2  placeholder grade; rows 5, 11\n"
        "    no-grade                     2  mark without a grade (W, P, I ...); rows 3, 10\n"
        "    out-of-range                 1  outside the scale's range; rows 12 (values: '104')\n"
        "    retake                       1  other attempt of a retaken course; rows 9\n"
        "  rows per term: 2019-Fall 2, 2020-Spring 2, 2020-Fall 1\n"
        "  note: not valid UTF-8 (byte 0xe7 at line 6); read as latin-1"
    )


@pytest.mark.parametrize(
    ("policy", "rows", "dropped"),
    [
        ("latest", [2, 4, 6, 8, 13], 1),  # 2020-Fall (line 8) is later than 2020-Spring (line 9)
        ("best", [2, 4, 6, 9, 13], 1),  # 78 (line 9) beats 55 (line 8)
        ("all", [2, 4, 6, 8, 9, 13], 0),
    ],
)
def test_retake_policies(aast_export: Path, policy: str, rows: list[int], dropped: int) -> None:
    result = read_export(aast_export, mapping=AAST_MAP, scale="percent", retakes=policy)
    assert result.frame["row"].tolist() == rows
    assert result.report.dropped.get("retake", 0) == dropped
    assert result.report.retakes == policy


def test_placeholders_can_be_changed_or_turned_off(aast_export: Path) -> None:
    only_777 = read_export(aast_export, mapping=AAST_MAP, scale="percent", placeholders=["777"]).report
    assert only_777.dropped["placeholder"] == 1
    assert only_777.dropped["out-of-range"] == 2  # 999 is now just a number over 100
    assert only_777.values["out-of-range"] == ["999", "104"]
    off = read_export(aast_export, mapping=AAST_MAP, scale="percent", placeholders=parse_placeholders("")).report
    assert "placeholder" not in off.dropped
    assert off.dropped["out-of-range"] == 3


def test_numeric_placeholder_written_differently(tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", "student,course,grade\n1,A,999.0\n1,B,+999\n1,C,80\n")
    report = read_export(path, scale="percent").report
    assert report.dropped == {"placeholder": 2}


def test_privacy_no_raw_id_or_name_leaves_the_reader(aast_export: Path, tmp_path: Path, secret_key: str) -> None:
    text = aast_export.read_bytes().decode("latin-1").replace("student serial,", "Student Name,student serial,", 1)
    lines = text.splitlines()
    lines[1:] = [f"Alice Example {i},{line}" for i, line in enumerate(lines[1:])]
    path = write(tmp_path, "named.csv", "\n".join(lines) + "\n", "latin-1")
    result = read_export(path, mapping=AAST_MAP, scale="percent")
    dumped = result.frame.to_csv() + result.report.to_json() + result.report.summary()
    for secret in (*RAW_IDS, "Alice"):
        assert secret not in dumped
    key = Pseudonymiser(secret_key.encode())
    assert set(result.frame["student"]) == {key.pseudonym(i) for i in RAW_IDS}


def test_offending_values_never_show_an_id(tmp_path: Path) -> None:
    # grade mapped to the id column by mistake: the report names the reason but shows no value that is an id
    path = write(tmp_path, "g.csv", "student,course,grade\nS1,A,80\nS2,B,Q\n")
    with pytest.raises(NothingToImport) as err:
        read_export(path, mapping={"student": "student", "grade": "student"}, scale="percent")
    assert err.value.report.dropped == {"unknown-mark": 2}
    assert err.value.report.values == {}
    assert "S1" not in err.value.report.to_json() + str(err.value)


def test_each_distinct_id_is_pseudonymised_once(aast_export: Path, secret_key: str) -> None:
    calls: list[str] = []

    class Counting(Pseudonymiser):
        def pseudonym(self, raw_id: str) -> str:
            calls.append(raw_id)
            return super().pseudonym(raw_id)

    read_export(aast_export, mapping=AAST_MAP, scale="percent", pseudonymiser=Counting(secret_key.encode()))
    assert sorted(calls) == sorted(RAW_IDS)


# ---------------------------------------------------------------------- the real exports
def test_college_grades_letter_scale(data_dir: Path) -> None:
    path = data_dir / "student-grades" / "college_grades" / "College_grades.csv"
    result = read_export(path, mapping={"course": "dept+level", "grade": "grade"}, scale="letter-us")
    report = result.report
    assert report.rows_read == 6124
    # S, AU and NC carry no grade; the 116 exact duplicates go first, so 8 of the 452 S/AU/NC rows count there.
    assert report.dropped == {"duplicate": 116, "no-grade": 444, "retake": 1209}
    assert report.rows_kept == 4355
    assert report.columns == {"student": "sid", "course": "dept+level", "term": "sem", "grade": "grade"}
    frame = result.frame
    assert frame["student"].nunique() == 443
    assert frame["course"].nunique() == 137
    assert "P 200" in set(frame["course"]) and "p 100" in set(frame["course"])  # codes keep their case
    assert {"2002-Fall", "2003-Spring", "2003-Summer2", "1994-Winter"} <= set(frame["term"])
    assert not frame.duplicated(["student", "course"]).any()


def test_college_grades_latest_attempt_is_kept(data_dir: Path, secret_key: str) -> None:
    path = data_dir / "student-grades" / "college_grades" / "College_grades.csv"
    frame = read_export(path, mapping={"course": "dept+level", "grade": "grade"}, scale="letter-us").frame
    # Independent reference: graded rows, latest term (then latest line) per (student, course).
    raw = pd.read_csv(path, dtype=str, keep_default_na=False).drop_duplicates()
    raw = raw[~raw["grade"].isin(["S", "AU", "NC"])].assign(line=lambda d: d.index + 2)
    raw["key"] = raw["sem"].map(lambda t: parse_term(t).key)
    raw["course"] = raw["dept"] + " " + raw["level"]
    latest = raw.sort_values(["key", "line"]).drop_duplicates(["sid", "course"], keep="last")
    assert sorted(frame["row"]) == sorted(latest["line"])
    key = Pseudonymiser(secret_key.encode())
    expected = {
        (key.pseudonym(s), c, g) for s, c, g in zip(latest["sid"], latest["course"], latest["grade"], strict=True)
    }
    assert set(zip(frame["student"], frame["course"], frame["mark"], strict=True)) == expected


def test_college_grades_gradepoints(data_dir: Path) -> None:
    path = data_dir / "student-grades" / "college_grades" / "College_grades.csv"
    result = read_export(path, mapping={"course": "dept+level", "grade": "gradepoint"}, scale="gpa4")
    report = result.report
    # S and AU have an empty gradepoint; NC rows carry 0.0 there, so they count as graded (F-like) rows.
    assert report.dropped == {"duplicate": 116, "missing-grade": 426, "retake": 1214}
    assert report.rows_kept == 4368
    assert result.frame["points"].between(0, 4).all()
    assert result.frame["grade"].max() == 1.0


def test_college_grades_needs_a_choice_of_grade_column(data_dir: Path) -> None:
    path = data_dir / "student-grades" / "college_grades" / "College_grades.csv"
    with pytest.raises(DataError) as err:
        read_export(path, mapping={"course": "dept+level"}, scale="letter-us")
    assert str(err.value) == (
        "College_grades.csv: cannot tell which column holds the grade: 'grade' and 'gradepoint'; "
        "choose one with --map grade=COLUMN"
    )


def test_karypis_whitespace_without_header(data_dir: Path) -> None:
    path = data_dir / "student-grades" / "karypis_sample" / "sample.train"
    result = read_export(path, header=False, columns=["student", "course", "term", "grade"], scale="gpa4")
    report = result.report
    assert report.delimiter == "whitespace"
    assert report.rows_read == 1000
    assert report.dropped == {"retake": 10}
    assert report.rows_kept == 990
    assert report.examples["retake"] == [14, 21, 58, 59, 68]  # no header: the first row is line 1
    frame = result.frame
    assert frame["student"].nunique() == 34
    assert frame["term_key"].between(1, 12).all()
    assert frame["points"].between(0, 4).all()


@pytest.mark.slow
def test_ml1m_pairs_enrolment_only(data_dir: Path) -> None:
    result = read_export(data_dir / "ml-1m" / "loo" / "train.tsv.gz", header=False, columns=["student", "course"])
    assert result.enrolment_only
    assert result.report.rows_read == result.report.rows_kept == 994_169
    assert result.report.delimiter == "\t"
    assert result.frame["student"].nunique() == 6040
    assert result.frame["points"].isna().all() and result.frame["mark"].isna().all()


# ---------------------------------------------------------------------- reading
def test_gzip_is_told_by_content_not_name(tmp_path: Path) -> None:
    text = "student,course,grade\n1,A,80\n2,B,70\n"
    zipped = tmp_path / "grades.csv"
    zipped.write_bytes(gzip.compress(text.encode()))
    plain = write(tmp_path, "grades.csv.gz", text)
    for path in (zipped, plain):
        assert read_export(path, scale="percent").report.rows_kept == 2
    assert "gzip-compressed" in read_export(zipped, scale="percent").report.notes


@pytest.mark.parametrize(
    ("delimiter", "label"), [(",", ","), (";", ";"), ("\t", "\t"), ("|", "|"), ("  ", "whitespace")]
)
def test_delimiter_detection(tmp_path: Path, delimiter: str, label: str) -> None:
    rows = [["student", "course", "term", "grade"], ["s1", "CS101", "2021-Fall", "A"], ["s2", "CS102", "FA2021", "B+"]]
    path = write(tmp_path, "g.txt", "\n".join(delimiter.join(r) for r in rows) + "\n")
    report = read_export(path, scale="letter-us").report
    assert (report.delimiter, report.rows_kept) == (label, 2)


def test_delimiter_can_be_forced(tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", "student;course;grade\n1;A,x;80\n2;B,y;70\n")
    result = read_export(path, scale="percent", delimiter="semicolon")
    assert result.frame["course"].tolist() == ["A,x", "B,y"]
    assert parse_delimiter("tab") == "\t" and parse_delimiter("\\t") == "\t" and parse_delimiter(" ") == "whitespace"
    with pytest.raises(DataError, match="expected one character"):
        parse_delimiter("::")


def test_quoted_fields_and_multiline_rows_keep_line_numbers(tmp_path: Path) -> None:
    text = 'student,course,course_name,grade\n1,A,"Intro, part 1",80\n2,B,"Two\nlines",70\n3,C,Plain,X\n'
    result = read_export(write(tmp_path, "q.csv", text), scale="percent")
    assert result.frame["course_name"].tolist() == ["Intro, part 1", "Two\nlines"]
    assert result.report.examples == {"unknown-mark": [5]}  # the quoted newline makes row 3 start on line 5


def test_blank_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    text = "student,course,grade\n\n1,A,80\n,,\n   \n2,B,999\n"
    report = read_export(write(tmp_path, "b.csv", text), scale="percent").report
    assert report.rows_read == 2
    assert report.examples == {"placeholder": [6]}
    assert "3 blank line(s) skipped" in report.notes


def test_utf8_bom_and_utf16_bom(tmp_path: Path) -> None:
    text = "student,course,course name,grade\n1,FR1,Français,80\n"
    bom = write(tmp_path, "bom.csv", "\ufeff" + text)
    r = read_export(bom, scale="percent")
    assert r.report.encoding == "utf-8 (BOM)"
    assert r.report.columns["student"] == "student"
    utf16 = write(tmp_path, "u16.csv", text, "utf-16")
    r = read_export(utf16, scale="percent")
    assert r.report.encoding == "utf-16"
    assert r.frame["course_name"].tolist() == ["Français"]


def test_encoding_can_be_forced(tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", "student,course,course_name,grade\n1,A,Ã©tude,80\n")
    # Valid UTF-8 that was meant as latin-1 mojibake: forcing latin-1 reads the bytes one by one.
    assert read_export(path, scale="percent", encoding="latin-1").frame["course_name"].item() == "Ã\x83Â©tude"
    assert read_export(path, scale="percent").frame["course_name"].item() == "Ã©tude"


# ---------------------------------------------------------------------- columns
def test_map_matches_case_insensitively_with_spaces(aast_export: Path) -> None:
    mapping = {**AAST_MAP, "student": "STUDENT   Serial", "course": "crs code"}
    assert read_export(aast_export, mapping=mapping, scale="percent").report.rows_kept == 5


def test_map_joins_columns_with_one_space(tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", "sid,dept,level,Year,term,mark\n1,P,200,2019,Fall,80\n1,Q,,2019,Fall,70\n")
    result = read_export(path, mapping={"course": "dept+level", "term": "Year+term"}, scale="percent")
    assert result.frame["course"].tolist() == ["P 200"]
    assert result.frame["term"].tolist() == ["2019-Fall"]
    assert result.report.dropped == {"missing-course": 1}  # an empty part empties the whole value


def test_a_column_name_containing_plus(tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", "sid,course,C+D\n1,A,80\n")
    assert read_export(path, mapping={"grade": "C+D"}, scale="percent").frame["points"].tolist() == [80.0]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Student_ID,Course Code,Semester,Mark", ["Student_ID", "Course Code", "Semester", "Mark"]),
        ("SID,CRS CODE,Sem,Total,Title", ["SID", "CRS CODE", "Sem", "Total", "Title"]),
        ("user_id,item_id,term,score", ["user_id", "item_id", "term", "score"]),
    ],
)
def test_fields_are_guessed_from_common_headers(tmp_path: Path, header: str, expected: list[str]) -> None:
    values = "1,CS1,FA2020,80,Intro" if header.count(",") == 4 else "1,CS1,FA2020,80"
    report = read_export(write(tmp_path, "g.csv", f"{header}\n{values}\n"), scale="percent").report
    assert list(report.columns.values()) == expected
    assert report.rows_kept == 1


def test_no_grade_column_is_enrolment_only(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "student,course\n1,A\n1,A\n1,B\n2,A\n")
    result = read_export(path)
    assert result.enrolment_only
    assert result.report.enrolment_only
    assert result.scale.name == "enrolment-only"
    assert result.report.dropped == {"duplicate": 1}
    assert "no grade column: enrolment-only (implicit) import; every kept row counts as taken" in result.report.notes
    assert result.frame["grade"].isna().all()


def test_empty_map_ignores_a_guessed_column(aast_export: Path) -> None:
    result = read_export(aast_export, mapping={**AAST_MAP, "grade": ""})
    assert result.enrolment_only
    assert result.report.dropped == {"duplicate": 1, "retake": 5}


def test_without_term_the_later_row_is_the_later_attempt(tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", "student,course,grade\n1,A,90\n1,A,60\n")
    result = read_export(path, scale="percent")
    assert result.frame["points"].tolist() == [60.0]
    assert result.report.examples == {"retake": [2]}
    assert read_export(path, scale="percent", retakes="best").frame["points"].tolist() == [90.0]


def test_minimum_counts_are_applied_until_stable(tmp_path: Path) -> None:
    # Course C has one student; once it goes, student 3 is left with one course and goes in the next round.
    rows = ["1,A", "1,B", "2,A", "2,B", "3,A", "3,C"]
    path = write(tmp_path, "g.csv", "student,course\n" + "\n".join(rows) + "\n")
    report = read_export(path, min_per_student=2, min_per_course=2).report
    assert report.dropped == {"too-few-per-course": 1, "too-few-per-student": 1}
    assert report.examples == {"too-few-per-course": [7], "too-few-per-student": [6]}
    assert report.rows_kept == 4
    assert report.notes[-1] == "minimum rows per student 2, per course 2: applied until stable (3 round(s))"


# ---------------------------------------------------------------------- report and helpers
def test_report_json_round_trip(aast_export: Path) -> None:
    report = read_export(aast_export, mapping=AAST_MAP, scale="percent").report
    data = json.loads(report.to_json())
    assert data["dropped"] == report.dropped
    assert data["examples"] == report.examples
    assert data["rows_read"] == 12 and data["rows_kept"] == 5
    assert len(data["file_sha256"]) == 64
    assert set(data) == set(CleaningReport("", "", "", "", "").to_dict())


def test_every_reason_has_a_description() -> None:
    assert all(REASONS.values())
    assert list(REASONS)[:2] == ["ragged-row", "duplicate"]


@pytest.mark.parametrize(
    ("text", "size"),
    [("100M", 100 * 2**20), ("1.5G", int(1.5 * 2**30)), ("512k", 512 * 1024), ("2048", 2048), ("10MiB", 10 * 2**20)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_none_and_errors() -> None:
    assert parse_size("none") is None
    with pytest.raises(ValueError, match="is not a size"):
        parse_size("lots")


def test_parse_mapping() -> None:
    assert parse_mapping(["course=dept+level", "Student=student serial", "grade="]) == {
        "course": "dept+level",
        "student": "student serial",
        "grade": "",
    }
    with pytest.raises(DataError, match="expected FIELD=COLUMN"):
        parse_mapping(["course"])
    with pytest.raises(DataError, match="the student field is required"):
        parse_mapping(["student="])
    with pytest.raises(DataError, match="mapped twice"):
        parse_mapping(["course=a", "course=b"])


def test_frame_contract_types(aast_export: Path) -> None:
    frame = read_export(aast_export, mapping=AAST_MAP, scale="percent").frame
    assert frame["row"].dtype == np.int64
    assert str(frame["term_key"].dtype) == "Int64"
    assert frame["points"].dtype == np.float64 and frame["grade"].dtype == np.float64
    assert frame["student"].str.fullmatch(r"[0-9a-f]{32}").all()
