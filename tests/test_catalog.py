import re
from pathlib import Path

import pytest

from electives.data.catalog import Catalog, Course, parse_catalog, read_catalog
from electives.errors import DataError

HEADER = "course_id,name,elective,prerequisites,credits,department,terms_offered,description\n"


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "catalog.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_reads_every_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\ufeff"
        + HEADER
        + "CS101,Intro to CS,no,,6,CS,Fall;Spring,Basics\n"
        + 'CS201,Data Structures,yes,CS101,7.5,CS,FA2024,"Lists, trees"\n'
        + "CS301,Compilers,Y,CS101; CS201,,CS,,\n",
    )
    catalog = read_catalog(path)
    assert [c.code for c in catalog] == ["CS101", "CS201", "CS301"]
    assert catalog["CS101"] == Course(
        code="CS101",
        name="Intro to CS",
        elective=False,
        prerequisites=(),
        credits=6.0,
        department="CS",
        terms_offered=("Fall", "Spring"),
        description="Basics",
    )
    cs201 = catalog["CS201"]
    assert (cs201.elective, cs201.credits, cs201.terms_offered, cs201.description) == (
        True,
        7.5,
        ("2024-Fall",),
        "Lists, trees",
    )
    cs301 = catalog["CS301"]
    assert (cs301.prerequisites, cs301.credits, cs301.terms_offered, cs301.description) == (
        ("CS101", "CS201"),
        None,
        (),
        None,
    )
    assert [c.code for c in catalog.electives] == ["CS201", "CS301"]
    assert "CS201" in catalog and "XX" not in catalog and catalog.get("XX") is None
    assert len(catalog) == 3 and catalog.codes == {"CS101", "CS201", "CS301"}


def test_only_required_columns_and_latin1(tmp_path: Path) -> None:
    catalog = read_catalog(write(tmp_path, "name,course_id\nÉthique,PHIL1\n", encoding="latin-1"))
    assert catalog.courses == (Course(code="PHIL1", name="Éthique"),)


def test_semicolon_delimited_and_case_insensitive_header() -> None:
    catalog = parse_catalog("Course_ID;Name;Elective\nM1;Analysis;true\nM2;Algebra;\n")
    assert [(c.code, c.elective) for c in catalog] == [("M1", True), ("M2", None)]


def test_multiline_description_keeps_line_numbers() -> None:
    text = HEADER + 'A,Alpha,yes,,3,,,"two\nlines"\nB,Beta,maybe,,3,,,\n'
    with pytest.raises(DataError, match=r"line 4, column elective"):
        parse_catalog(text)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "A,Alpha,yes,,3,,,\nA,Again,no,,3,,,\n",
            r"line 3, column course_id: duplicate course id 'A' \(first on line 2\)",
        ),
        (
            "A,Alpha,perhaps,,3,,,\n",
            r"line 2, column elective: expected yes/no/true/false/1/0/y/n or empty, got 'perhaps'",
        ),
        ("A,Alpha,yes,,three,,,\n", r"line 2, column credits: expected a non-negative number, got 'three'"),
        ("A,Alpha,yes,,-1,,,\n", r"line 2, column credits: expected a non-negative number"),
        (
            "A,Alpha,yes,,3,,,\nB,Beta,yes,A;Z,3,,,\n",
            r"line 3, column prerequisites: 'Z' .*not a course in the catalogue",
        ),
        ("A,Alpha,yes,,3,,Fallish,\n", r"line 2, column terms_offered: expected a season .* got 'Fallish'"),
        ("A,,yes,,3,,,\n", r"line 2, column name: expected a course name"),
        (",Alpha,yes,,3,,,\n", r"line 2, column course_id: expected a course id"),
    ],
)
def test_row_errors_name_line_column_and_expectation(body: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_catalog(HEADER + body)


def test_prerequisite_cycle_is_named() -> None:
    text = HEADER + "A,Alpha,no,,3,,,\nB,Beta,yes,A;D,3,,,\nC,Gamma,yes,B,3,,,\nD,Delta,yes,C,3,,,\n"
    with pytest.raises(DataError, match=r"line 3, column prerequisites: prerequisite cycle B → D → C → B"):
        parse_catalog(text)


def test_self_prerequisite_is_a_cycle() -> None:
    with pytest.raises(DataError, match=r"cycle A → A"):
        parse_catalog(HEADER + "A,Alpha,yes,A,3,,,\n")


def test_missing_required_column() -> None:
    with pytest.raises(DataError, match=r"line 1: missing required column\(s\) name"):
        parse_catalog("course_id,elective\nA,yes\n")


@pytest.mark.parametrize("text", ["", "\ufeff", "  \n\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(DataError, match="empty"):
        read_catalog(write(tmp_path, text))


def test_header_without_courses() -> None:
    with pytest.raises(DataError, match="no courses"):
        parse_catalog(HEADER + "\n")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such catalogue file"):
        read_catalog(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("offered", "when", "expected"),
    [
        ((), "Fall", None),
        (("Fall", "Spring"), "Fall", True),
        (("Fall", "Spring"), "autumn", True),
        (("Fall", "Spring"), "2025-Fall", True),
        (("Fall", "Spring"), "FA2025", True),
        (("Fall", "Spring"), "2025-Summer", False),
        (("Fall",), "Spring", False),
        (("2024-Fall",), "2024-Fall", True),
        (("2024-Fall",), "Fall", True),
        (("2024-Fall",), "2025-Fall", False),
        (("Fall",), "2025-1", None),  # numbered terms say nothing about seasons
        (("2025-1",), "2025-1", True),
        (("2025-1",), "2025-2", False),
    ],
)
def test_offered_in(offered: tuple[str, ...], when: str, expected: bool | None) -> None:
    assert Course("X", "x", terms_offered=offered).offered_in(when) is expected


def test_offered_in_rejects_nonsense() -> None:
    with pytest.raises(DataError, match="not a season"):
        Course("X", "x", terms_offered=("Fall",)).offered_in("someday")


def test_catalog_getitem_unknown_code() -> None:
    with pytest.raises(KeyError, match="not in the catalogue"):
        Catalog((Course("A", "a"),))["B"]


def test_capacity_is_seats_per_offering_and_empty_is_unlimited() -> None:
    text = "course_id,name,terms_offered,capacity\nA,Alpha,Fall;Spring,30\nB,Beta,,\nC,Gamma,,0\nD,Delta,, 25.0 \n"
    catalog = parse_catalog(text)
    assert [(c.code, c.capacity) for c in catalog] == [("A", 30), ("B", None), ("C", 0), ("D", 25)]


@pytest.mark.parametrize("raw", ["-5", "12.5", "thirty", "1e3", "1,000", "+4", "inf"])
def test_capacity_not_a_whole_number_names_line_and_column(raw: str) -> None:
    text = f'course_id,name,capacity\nA,Alpha,10\nB,Beta,"{raw}"\n'
    with pytest.raises(
        DataError,
        match=rf"line 3, column capacity: expected the seats per offering, a whole number ≥ 0 .*got '{re.escape(raw)}'",
    ):
        parse_catalog(text)


def test_programmes_are_the_named_programmes_of_a_course() -> None:
    text = (
        "course_id,name,elective,programmes\n"
        "MA101,Calculus,no,Maths; Physics;Maths\n"  # a repeat counts once; spaces around names do not matter
        "CS101,Programming,no,\n"
        "AR200,Drawing,yes,Arts\n"  # kept on an elective, where nothing uses it
    )
    catalog = parse_catalog(text)
    assert [(c.code, c.programmes) for c in catalog] == [
        ("MA101", ("Maths", "Physics")),
        ("CS101", ()),
        ("AR200", ("Arts",)),
    ]
