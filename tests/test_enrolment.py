"""`data.enrolment`: who is still enrolled — and `at-risk --all` and `plan` leaving out the students who left.

Known answers by construction: students who stop after their first terms, one who sits out a year and comes back,
a summer school too small to count as a term anyone was away from, rows without a term.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import TEST_KEY, bias_world, run_cli, secret_key_set

from electives.data.enrolment import current_students
from electives.data.pseudonyms import Pseudonymiser

TERMS = ["2020-Fall", "2021-Spring", "2021-Fall", "2022-Spring", "2022-Fall"]  # keys in this order


def _rows(records: dict[str, list[float]]) -> pd.DataFrame:
    students = [s for s, keys in records.items() for _ in keys]
    keys = [k for ks in records.values() for k in ks]
    return pd.DataFrame({"student": students, "term_key": np.array(keys, dtype=float)})


def test_students_with_no_row_in_the_last_three_main_terms_have_left() -> None:
    records = {f"S{n}": [1, 2, 3, 4, 5] for n in range(20)}  # the main terms 1–5, twenty students each
    records |= {
        "GONE": [1, 2],  # nothing in 3, 4, 5
        "AWAY": [1, 2, 5],  # sat out a year, back in the latest term
        "ONE-TERM-AGO": [1, 3],  # the oldest of the last three main terms still counts
        "SUMMER": [1, 4.5],  # only a summer school (3 students: not a main term) since: still current
        "SUMMER2": [4.5],
        "UNDATED": [np.nan],  # no evidence either way
    }
    enrolment = current_students(_rows(records))
    assert enrolment.since == 3
    assert enrolment.inactive == {"GONE"}
    assert {"AWAY", "ONE-TERM-AGO", "SUMMER", "SUMMER2", "UNDATED", "S0"} <= enrolment.current
    assert not enrolment.is_current("GONE") and enrolment.is_current("S7")


@pytest.mark.parametrize("keys", [[1, 2], [np.nan, np.nan]], ids=["two-main-terms", "no-terms"])
def test_records_too_short_to_tell_keep_everyone(keys: list[float]) -> None:
    records = {f"S{n}": keys for n in range(10)} | {"EARLY": keys[:1]}
    enrolment = current_students(_rows(records))
    assert enrolment.since is None and not enrolment.inactive and len(enrolment.current) == 11


# ------------------------------------------------------------------------------------------- the commands
CATALOG = """course_id,name,elective,terms_offered,capacity
REQ1,Foundations,no,Fall;Spring,
REQ2,Methods,no,Fall;Spring,
E1,Elective One,yes,Fall;Spring,100
E2,Elective Two,yes,Fall;Spring,100
E3,Elective Three,yes,Fall;Spring,100
E4,Elective Four,yes,Fall;Spring,100
"""


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """30 students through five terms (three of the four electives each); 6 more (L00–L05) left after the first
    two, having failed REQ1 twice — due again, predicted to fail — and taken no elective (all four open)."""
    root = tmp_path_factory.mktemp("enrolment")
    rng = np.random.default_rng(0)
    rows = []
    for n in range(30):
        s, a = f"C{n:02d}", rng.normal(0, 4)
        electives = [f"E{j + 1}" for j in rng.permutation(4)[:3]]  # one left open for the plan
        plan = [(0, "REQ1", 75), (1, "REQ2", 72), *((t, c, 74) for t, c in zip((2, 3, 4), electives, strict=True))]
        rows += [(s, TERMS[t], c, f"{m + a + rng.normal(0, 3):.1f}") for t, c, m in plan]
    for n in range(6):
        s = f"L{n:02d}"
        rows += [(s, TERMS[0], "REQ1", "35"), (s, TERMS[1], "REQ1", f"{38 + n}")]
    db = bias_world(root, rows, CATALOG)
    leavers = {Pseudonymiser(TEST_KEY.encode()).pseudonym(f"L{n:02d}") for n in range(6)}
    return {"root": root, "db": db, "leavers": leavers}


def _students_in(path: Path) -> set[str]:
    with path.open(newline="") as f:
        return {row["student"] for row in csv.DictReader(f)}


def test_at_risk_all_leaves_out_the_students_who_left_and_says_so(campus: dict[str, Any]) -> None:
    root, db = campus["root"], campus["db"]
    with secret_key_set(root):
        code, out, err = run_cli("at-risk", root / "model", "--db", db, "--term", "2023-Spring", "--all",
                                 "--out", root / "current.csv")  # fmt: skip
        assert code == 0, err
        assert "6 more with none since then (graduated, left or on leave) not listed" in out
        assert "a row since 2021-Fall" in out
        assert not _students_in(root / "current.csv") & campus["leavers"]
        code, out, err = run_cli("at-risk", root / "model", "--db", db, "--term", "2023-Spring", "--all",
                                 "--include-inactive", "--out", root / "everyone.csv")  # fmt: skip
        assert code == 0, err
        assert "36 students on record before 2023-Spring (6 of them with no row since 2021-Fall" in out
        assert _students_in(root / "everyone.csv") >= campus["leavers"]  # REQ1 failed, due again: they had rows
        code, _, err = run_cli("at-risk", root / "model", "--db", db, "--term", "2023-Spring", "--students",
                               root / "grades.csv", "--include-inactive", "--out", root / "x.csv")  # fmt: skip
        assert code == 2 and "--include-inactive goes with --all" in err and not (root / "x.csv").exists()


def test_plan_gives_no_seat_to_students_who_left(campus: dict[str, Any]) -> None:
    root, db = campus["root"], campus["db"]
    with secret_key_set(root):
        code, out, err = run_cli("plan", root / "model", "--db", db, "--term", "2023-Spring", "-k", "1",
                                 "--no-save", "--out", root / "plan.csv")  # fmt: skip
        assert code == 0, err
        assert "6 on record with no row since 2021-Fall taken to have left, not planned" in out
        assert not _students_in(root / "plan.csv") & campus["leavers"]
        code, out, err = run_cli("plan", root / "model", "--db", db, "--term", "2023-Spring", "-k", "1",
                                 "--no-save", "--include-inactive", "--out", root / "all.csv")  # fmt: skip
        assert code == 0, err
        assert _students_in(root / "all.csv") >= campus["leavers"]
