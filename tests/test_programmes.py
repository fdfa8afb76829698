"""`data.programmes`: each student's programme and its required courses, inferred from records (with the
catalogue's departments, and from co-enrolment alone), on hand-made records whose programmes are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from electives.data.programmes import infer_programmes

# Two programmes, A and B. Common core: A1 and B1 (each department's first course), taken by everyone in the first
# term. A's core A2 → A3 → A4, B's core B2 → B3 → B4, one a term after the common core. AN and BN: required courses
# nobody has taken yet.
DEPARTMENTS = {"A1": "Arts", "A2": "Arts", "A3": "Arts", "A4": "Arts", "AN": "Arts"}
DEPARTMENTS |= {c.replace("A", "B"): "Biology" for c in DEPARTMENTS}
REQUIRED = tuple(DEPARTMENTS)


def _records(seed: int = 0) -> pd.DataFrame:
    """30 students per programme with 1–4 terms on record; the first term takes the common core in a random
    order (so a one-term student has one or both common courses: nothing tells the programme), later terms the
    programme's core in order, and an elective E1 for everyone."""
    rng = np.random.default_rng(seed)
    rows = []
    for programme in "AB":
        for n in range(30):
            student, terms = f"{programme}{n:02d}", 1 + n % 4
            common = ["A1", "B1"] if rng.random() < 0.5 else ["B1", "A1"]
            rows += [(student, common[0], 1), (student, "E1", 1)]
            if n % 8:  # most take both common courses in the first term, some only one
                rows.append((student, common[1], 1))
            rows += [(student, f"{programme}{k}", k) for k in range(2, terms + 1)]
    rows.append(("A03", "B2", 3))  # two of A's take one of B's courses as an elective
    rows.append(("A07", "B2", 4))
    return pd.DataFrame(rows, columns=["student", "course", "term_key"])


@pytest.mark.parametrize("departments", [DEPARTMENTS, None], ids=["departments", "co-enrolment"])
def test_a_student_is_due_their_programme_and_the_common_core(departments) -> None:
    records = _records()
    programmes = infer_programmes(records, REQUIRED, departments=departments)
    assert programmes.source == ("departments" if departments else "co-enrolment")
    assert len(programmes.courses) == 2
    a, b = programmes.programme_of("A03"), programmes.programme_of("B03")
    assert a is not None and b is not None and a != b
    if departments:
        assert (a, b) == ("Arts", "Biology")
    # Programme A's students are due A's core and the common core, never B's core (two of them took B2 as an
    # elective: not enough to make it A's), and the other way round.
    assert programmes.due("A03") >= {"A1", "B1", "A2", "A3", "A4"}
    assert not programmes.due("A03") & {"B2", "B3", "B4"}
    assert programmes.due("B03") >= {"A1", "B1", "B2", "B3", "B4"}
    assert not programmes.due("B03") & {"A2", "A3", "A4"}
    assert programmes.programme_of("A07") == a  # one course of B's among A's does not move a student
    # Every student with a programme-specific course on record is placed in the right programme.
    for student, home in programmes.homes.items():
        specific = set(records.loc[records["student"] == student, "course"]) - {"A1", "B1", "E1"}
        if specific - {"B2"} or (student[0] == "B" and specific):
            assert home == ((a,) if student[0] == "A" else (b,)), student


@pytest.mark.parametrize("departments", [DEPARTMENTS, None], ids=["departments", "co-enrolment"])
def test_a_newcomer_with_only_common_courses_is_due_only_what_every_programme_requires(departments) -> None:
    programmes = infer_programmes(_records(), REQUIRED, departments=departments)
    assert programmes.programme_of("A00") is None and len(programmes.homes["A00"]) == 2  # one term: common only
    assert programmes.undecided > 0
    common = programmes.due("A00") - programmes.open
    assert common == {"A1", "B1"}
    assert programmes.due("never-seen") == programmes.due("A00")  # no record: undecided between all


def test_a_course_nobody_took_goes_to_its_department_else_to_everyone() -> None:
    with_departments = infer_programmes(_records(), REQUIRED, departments=DEPARTMENTS)
    assert "AN" in with_departments.courses["Arts"] and "AN" not in with_departments.courses["Biology"]
    assert not with_departments.open
    without = infer_programmes(_records(), REQUIRED)
    assert without.open == {"AN", "BN"}
    assert {"AN", "BN"} <= without.due("A03") and {"AN", "BN"} <= without.due("B03")


def test_records_without_programmes_leave_every_course_due() -> None:
    # Everyone takes everything: one programme, which the records cannot tell from none.
    rows = [(f"S{n}", c, 1) for n in range(20) for c in ("A1", "A2", "B1", "B2")]
    programmes = infer_programmes(pd.DataFrame(rows, columns=["student", "course", "term_key"]), REQUIRED)
    assert programmes.source == "none" and not programmes.courses
    assert programmes.due("S1") == set(REQUIRED) and programmes.programme_of("S1") is None


def test_courses_outside_the_required_list_are_ignored() -> None:
    records = _records()
    extra = pd.DataFrame([("A03", "ZZ9", 3)], columns=records.columns)
    a = infer_programmes(pd.concat([records, extra]), REQUIRED, departments=DEPARTMENTS)
    b = infer_programmes(records, REQUIRED, departments=DEPARTMENTS)
    assert a == b


def test_the_catalogues_programmes_override_what_the_records_suggest() -> None:
    """A registrar's word wins: here the catalogue says B2 is required by both programmes (the records alone would
    make it B's) and names only A's and B's cores; the common core, naming none, is due for everyone."""
    named = {"A2": ("Arts",), "A3": ("Arts",), "A4": ("Arts",), "AN": ("Arts",)}
    named |= {"B2": ("Arts", "Biology"), "B3": ("Biology",), "B4": ("Biology",), "BN": ("Biology",)}
    programmes = infer_programmes(_records(), REQUIRED, departments=DEPARTMENTS, named=named)
    assert programmes.source == "catalogue"
    assert programmes.courses == {
        "Arts": frozenset({"A2", "A3", "A4", "AN", "B2"}),
        "Biology": frozenset({"B2", "B3", "B4", "BN"}),
    }
    assert programmes.open == {"A1", "B1"}
    assert programmes.programme_of("A03") == "Arts" and programmes.programme_of("B03") == "Biology"
    assert programmes.due("A03") == {"A1", "B1", "A2", "A3", "A4", "AN", "B2"}
    # B2 alone (a first-year of B's, or A07 who took it as well as A2) leaves a student undecided: both name it.
    b_newcomer = next(
        s for s in programmes.homes if s.startswith("B") and set(programmes.homes[s]) == {"Arts", "Biology"}
    )
    assert programmes.due(b_newcomer) == {"A1", "B1", "B2"}
    # A student with no required course on record is due what every programme requires, and the common core.
    assert programmes.due("nobody") == {"A1", "B1", "B2"}


def test_programmes_named_only_outside_the_required_list_are_not_used() -> None:
    programmes = infer_programmes(_records(), REQUIRED, departments=DEPARTMENTS, named={"E1": ("Arts",)})
    assert programmes.source == "departments"
