"""`electives at-risk` (issue 16 items 3 and 5): which required courses are due, the flags, the files, bad input.

Two worlds: a small hand-made one whose due courses are known by construction (a failed, withdrawn or later
attempt leaves a course due; an unmet prerequisite, a pass, an elective, an unmarked course or a term the course
does not run in do not), and a small synthetic university for the command end to end, with --students and --all.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import TEST_KEY, bias_world, run_all, run_cli, secret_key_set

from electives.data.advisees import read_advisees
from electives.data.catalog import Catalog, parse_catalog, read_catalog
from electives.data.eligibility import EligibilityRules
from electives.data.pseudonyms import Pseudonymiser
from electives.data.storage import open_store
from electives.data.synth import SynthConfig, generate, import_flags, write
from electives.errors import DataError
from electives.models.artifact import load_model
from electives.serving.at_risk import find_at_risk, programmes_before
from electives.serving.at_risk_files import COLUMNS
from electives.serving.recommender import Recommender

CATALOG = """course_id,name,elective,prerequisites,terms_offered
REQ1,Foundations,no,,Fall;Spring
REQ2,Advanced Foundations,no,REQ1,Fall;Spring
HARD,Hard Core,no,,Fall;Spring
SPRING,Spring Seminar,no,,Spring
EL1,Elective One,yes,,Fall;Spring
UNK,Unmarked Course,,,Fall;Spring
F1,Filler One,yes,,Fall;Spring
F2,Filler Two,yes,,Fall;Spring
F3,Filler Three,yes,,Fall;Spring
"""
# The special students' records: (term, course, mark).
SPECIAL = {
    "A-FAIL": [("2021-Fall", "REQ1", "40"), ("2021-Fall", "F1", "70"), ("2022-Spring", "F2", "72")],
    "A-PASS": [("2021-Fall", "REQ1", "85"), ("2021-Fall", "F1", "80"), ("2022-Spring", "F2", "78")],
    "A-W": [("2021-Fall", "REQ1", "W"), ("2021-Fall", "F1", "85"), ("2022-Spring", "F2", "80")],
    "A-LATE": [("2021-Fall", "F1", "80"), ("2022-Spring", "F2", "75"), ("2022-Fall", "REQ1", "85")],
    "A-RETAKE": [("2021-Fall", "REQ1", "40"), ("2022-Spring", "REQ1", "75"), ("2021-Fall", "F1", "70")],
}


def _background(rng: np.random.Generator) -> list[tuple[str, str, str, str]]:
    """40 students who pass everything but HARD, which everyone fails (about 40)."""
    rows = []
    for n in range(40):
        student, a = f"S{n:03d}", rng.normal(0, 3)
        plan = [
            ("2021-Fall", "REQ1", 82),
            ("2021-Fall", "F1", 78),
            ("2021-Fall", "F2", 76),
            ("2022-Spring", "REQ2", 76),
            ("2022-Spring", "HARD", 40),
            ("2022-Spring", "SPRING", 74),
            ("2022-Spring", "EL1", 80),
            ("2022-Spring", "UNK", 79),
            ("2022-Spring", "F3", 77),
        ]
        rows += [(student, t, c, f"{mean + a + rng.normal(0, 2):.1f}") for t, c, mean in plan]
    return rows


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The hand-made world imported (its 2022-Fall row too) and a bias model trained on it."""
    root = tmp_path_factory.mktemp("small")
    rows = _background(np.random.default_rng(3))
    rows += [(s, t, c, m) for s, record in SPECIAL.items() for t, c, m in record]
    db = bias_world(root, rows, CATALOG)
    return {"root": root, "db": db, "model": load_model(root / "model")}


def _report(small: dict[str, Any], term: str, students: list[str] | None = None, **options: Any):
    advisees = None
    if students is not None:
        path = small["root"] / "ids.txt"
        path.write_text("\n".join(students) + "\n")
        advisees = read_advisees(path, pseudonymiser=Pseudonymiser(TEST_KEY.encode()))
    with open_store(small["db"]) as store:
        return find_at_risk(small["model"], store, term, advisees=advisees, **options)


def _pseudo(student: str) -> str:
    return Pseudonymiser(TEST_KEY.encode()).pseudonym(student)


def _due(report) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in report.rows:
        out.setdefault(row.student, set()).add(row.course)
    return out


def test_due_courses_known_answer(small) -> None:
    report = _report(small, "2022-Fall", [*SPECIAL, "S000"])
    due = _due(report)
    assert due["A-FAIL"] == {"REQ1", "HARD"}  # failed: due again; REQ2's prerequisite unmet
    assert due["A-PASS"] == {"REQ2", "HARD"}  # passed: not due; its follow-up is
    assert due["A-W"] == {"REQ1", "HARD"}  # a withdrawal is no pass
    assert due["A-LATE"] == {"REQ1", "HARD"}  # the 2022-Fall pass is the term itself: not yet on record
    assert due["A-RETAKE"] == {"REQ2", "HARD"}  # the later attempt passed
    assert due["S000"] == {"HARD"}  # failed HARD; SPRING runs in Spring only; electives and UNK never
    assert report.required == 4 and report.students == 6 and not report.unknown
    # Everyone takes the same required courses here: the records show no programmes, so all count for everyone.
    assert report.programmes == 0 and report.programmes_from == "none" and report.undecided == 0
    # In the next spring the 2022-Fall pass counts, and the spring-only course is due for those who lack it.
    spring = _due(_report(small, "2023-Spring", ["A-LATE", "A-PASS"]))
    assert spring["A-LATE"] == {"REQ2", "HARD", "SPRING"}
    assert spring["A-PASS"] == {"REQ2", "HARD", "SPRING"}


def test_flags_read_the_prediction_and_the_interval_against_the_pass(small) -> None:
    report = _report(small, "2022-Fall")
    assert report.pass_points == 60 and report.coverage == pytest.approx(0.8)
    hard = [r for r in report.rows if r.course == "HARD"]
    assert len(hard) == 45 and all(r.at_risk and r.high_confidence for r in hard)  # everyone fails it by ~20
    # Everyone else passed what they took, so their other due courses are predicted to pass (A-FAIL's REQ1, which
    # they failed, could go either way).
    others = [r for r in report.rows if r.course != "HARD" and (r.student, r.course) != (_pseudo("A-FAIL"), "REQ1")]
    assert others and not any(r.at_risk for r in others)
    for r in report.rows:
        assert r.low <= r.predicted <= r.high
        assert r.at_risk == (r.predicted < 60) and r.high_confidence == (r.high < 60)
    counts = {c.course: c for c in report.courses}
    assert counts["HARD"].due == counts["HARD"].at_risk == counts["HARD"].high_confidence == 45
    assert sum(c.due for c in report.courses) == len(report.rows) and report.flagged == 45
    assert report.labelled_by == "pseudonyms" and report.students == 45 and report.folded_in == 0


def test_predictions_and_intervals_are_those_recommend_shows(small) -> None:
    # A-FAIL's failed REQ1 is folded in (see the test below); the bias family's fold-in is its trained closed
    # form, so that row matches the card too.
    key = Pseudonymiser(TEST_KEY.encode())
    report = _report(small, "2022-Fall", ["A-FAIL", "A-PASS"])
    rules = EligibilityRules(electives_only=False, allow_retake_ungraded=True)
    with Recommender.load(small["root"] / "model", small["db"], pseudonymiser=key, rules=rules) as recommender:
        for student in ("A-FAIL", "A-PASS"):
            cards = {c.course: c for c in recommender.recommend(student, k=20, target_term="2022-Fall").items}
            for row in (r for r in report.rows if r.student == student):
                card = cards[row.course]
                shown = (card.points, *card.interval)  # rounded to one decimal in the report
                assert (row.predicted, row.low, row.high) == pytest.approx(shown, abs=0.05 + 1e-9)


def test_a_course_attempted_before_is_predicted_from_the_record_folded_in(small, monkeypatch) -> None:
    """A failed course due again is predicted by the fold-in (the trained vector has fitted that very grade);
    courses never attempted keep the trained vector. Here the fold-in is made 20 points more hopeful, so that the
    two paths differ visibly."""
    before = {(r.course): r.predicted for r in _report(small, "2022-Fall", ["A-FAIL"]).rows}
    fitted = small["model"].fitted
    real = fitted.fold_in

    def hopeful(entries, options):
        folded = real(entries, options)
        return replace(folded, embedding=folded.embedding + 0.2)

    monkeypatch.setattr(fitted, "fold_in", hopeful)
    after = {(r.course): r.predicted for r in _report(small, "2022-Fall", ["A-FAIL"]).rows}
    assert set(before) == set(after) == {"REQ1", "HARD"}
    assert after["REQ1"] == pytest.approx(before["REQ1"] + 20, abs=0.11)  # failed in 2021-Fall: folded in
    assert after["HARD"] == before["HARD"]  # never attempted: the trained vector


def test_a_stricter_pass_changes_what_is_passed_and_flagged(small) -> None:
    report = _report(small, "2022-Fall", ["A-RETAKE", "A-PASS"], pass_mark="80")
    assert report.pass_points == 80
    due = _due(report)
    assert due["A-RETAKE"] == {"REQ1", "HARD"}  # 75 is no pass at 80, so REQ1 is due and REQ2 not
    assert due["A-PASS"] == {"REQ2", "HARD"}  # 85 still passes
    assert all(r.at_risk == (r.predicted < 80) for r in report.rows)
    for bad, words in (("C", "not a mark of scale 'percent'"), ("W", "without a grade"), ("120", "outside")):
        with pytest.raises(DataError, match=words) as caught:
            _report(small, "2022-Fall", pass_mark=bad)
        assert caught.value.field == "pass"


def test_unknown_term_names_the_stored_terms(small) -> None:
    with pytest.raises(DataError, match=r"term 'Someday'.*stored terms: 2021-Fall, 2022-Spring, 2022-Fall") as err:
        _report(small, "Someday")
    assert err.value.field == "term"


def test_a_catalogue_that_marks_nothing_required_is_refused(small) -> None:
    catalog = parse_catalog(CATALOG.replace(",no,", ",,"), source="cat.csv")
    with pytest.raises(DataError, match=r"cat\.csv marks no course as required") as err:
        _report(small, "2022-Fall", catalog=catalog)
    assert err.value.field == "catalog"


def test_numbers_not_on_record_before_the_term_are_counted(small) -> None:
    report = _report(small, "2022-Fall", ["A-FAIL", "NOBODY", "A-FAIL"])
    assert report.unknown == ("NOBODY",) and report.students == 2 and report.duplicates == 1
    assert {r.student for r in report.rows} == {"A-FAIL"}
    # Before any record, everyone is unknown and nothing is due.
    early = _report(small, "2021-Fall", ["A-FAIL"])
    assert early.unknown == ("A-FAIL",) and not early.rows


# ------------------------------------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small synthetic university, every term but the last imported, a bias model trained on it."""
    root = tmp_path_factory.mktemp("campus")
    university = generate(SynthConfig(n_students=200, seed=8))
    files = write(university, root / "uni")
    export = pd.read_csv(files["grades"], dtype=str, keep_default_na=False)
    order = 2 * export["Year"].astype(int) - (export["term"] == "Spring")
    export[order < order.max()].to_csv(root / "earlier.csv", index=False)
    db = f"sqlite:///{root / 'grades.db'}"
    with secret_key_set(root):
        run_all(
            ["import", root / "earlier.csv", *import_flags(), "--catalog", files["catalog"], "--db", db],
            ["train", "--db", db, "--out", root / "model", "--model", "bias", "--quiet"],
        )
    return {"root": root, "db": db, "university": university, "catalog": files["catalog"]}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_students_file_labels_rows_with_the_numbers_given(campus, secret_key: str, tmp_path: Path) -> None:
    university = campus["university"]
    # Students who entered before the last term (so are on record before it), in a shuffled order.
    on = [s for s, t in zip(university.student_ids, university.entry_term, strict=True) if t < 7]
    given = [on[-1], on[3], "00000000", on[60]]
    ids = tmp_path / "ids.txt"
    ids.write_text("student\n" + "\n".join(given) + "\n" + on[3] + "\n")
    before = _digest(campus["root"] / "grades.db")
    out = tmp_path / "mine.csv"
    code, stdout, err = run_cli(
        "at-risk", campus["root"] / "model", "--db", campus["db"], "--term", "2023-Spring",
        "--students", ids, "--out", out,
    )  # fmt: skip
    assert code == 0, err
    rows = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert tuple(rows.columns) == COLUMNS
    order = list(dict.fromkeys(rows["student"]))
    assert set(order) <= set(given) - {"00000000"} and order == [g for g in given if g in order]
    assert set(rows["at_risk"]) <= {"yes", "no"} and set(rows["high_confidence"]) <= {"yes", "no"}
    assert "4 students listed, 3 on record before 2023-Spring (1 not on record: 00000000)" in stdout
    assert "1 repeated line skipped" in stdout and f"Rows: {len(rows)} " in stdout
    assert (tmp_path / "mine.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _digest(campus["root"] / "grades.db") == before  # nothing stored
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.txt", "mine.csv", "mine.png"]  # no temp left


def test_all_labels_rows_with_pseudonyms_and_matches_the_api(campus, secret_key: str, tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    code, stdout, err = run_cli(
        "at-risk", campus["root"] / "model", "--db", campus["db"], "--term", "2023-Spring", "--all", "--out", out
    )
    assert code == 0, err
    rows = pd.read_csv(out, dtype=str, keep_default_na=False)
    key = Pseudonymiser(secret_key.encode())
    pseudonyms = {key.pseudonym(s) for s in campus["university"].student_ids}
    assert set(rows["student"]) <= pseudonyms  # never a raw number
    model = load_model(campus["root"] / "model")
    with open_store(campus["db"]) as store:
        report = find_at_risk(model, store, "2023-Spring")
    assert len(rows) == len(report.rows) and rows["at_risk"].eq("yes").sum() == report.flagged
    assert rows["predicted"].astype(float).tolist() == [r.predicted for r in report.rows]
    required = set(read_catalog(campus["catalog"]).codes) - {c.code for c in read_catalog(campus["catalog"]).electives}
    assert set(rows["course"]) <= required
    on_record = report.students
    assert f"{on_record} students on record before 2023-Spring" in stdout
    assert f"{report.students_with_rows} due at least one required course" in stdout
    assert "Programmes: 4 inferred from the catalogue's departments" in stdout
    assert f"; {report.undecided} students undecided between programmes" in stdout


def _true_programme(university, catalog) -> dict[str, set[str]]:
    """The synthetic university's programmes by department prefix: the department's required courses and every
    department's first required course (the common first-year core)."""
    required = sorted(c.code for c in catalog if c.elective is False)
    common = {min(c for c in required if c.startswith(p)) for p in set(university.student_department)}
    return {p: {c for c in required if c.startswith(p)} | common for p in set(university.student_department)}


@pytest.mark.parametrize("source", ["departments", "co-enrolment", "catalogue"])
def test_rows_are_the_students_programme_only(campus, secret_key: str, source: str) -> None:
    """Known answer from the synthetic university: a student is never due another programme's core course, the
    common core is due for students of every programme — whether the programmes are inferred (from departments or
    co-enrolment) or named in the catalogue's programmes column (the common core naming none)."""
    university = campus["university"]
    catalog = read_catalog(campus["catalog"])
    programmes = _true_programme(university, catalog)
    if source == "co-enrolment":
        catalog = Catalog(tuple(replace(c, department=None) for c in catalog), source="no departments")
    elif source == "catalogue":
        common = set.intersection(*programmes.values())
        named = {c: (p,) for p, courses in programmes.items() for c in courses - common}
        courses = tuple(replace(c, department=None, programmes=named.get(c.code, ())) for c in catalog)
        catalog = Catalog(courses, source="programmes named")
    with open_store(campus["db"]) as store:
        report = find_at_risk(load_model(campus["root"] / "model"), store, "2023-Spring", catalog=catalog)
    assert report.programmes == 4 and report.programmes_from == source
    key = Pseudonymiser(secret_key.encode())
    department = {
        key.pseudonym(s): d for s, d in zip(university.student_ids, university.student_department, strict=True)
    }
    outside = [(r.student, r.course) for r in report.rows if r.course not in programmes[department[r.student]]]
    assert not outside
    listed_for: dict[str, set[str]] = {}
    for r in report.rows:
        listed_for.setdefault(r.course, set()).add(department[r.student])
    common = set.intersection(*programmes.values())
    assert len(common) == 4 and all(len(listed_for.get(c, ())) > 1 for c in common)  # due across programmes
    assert all(listed_for.get(c) == {c[:2]} for c in listed_for if c not in common)  # each core for its own only
    assert 0 < report.undecided < report.students


def test_programmes_inferred_once_serve_advisors_from_their_own_records(
    campus, secret_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    university = campus["university"]
    given = [s for s, t in zip(university.student_ids, university.entry_term, strict=True) if t < 7][::20]
    (tmp_path / "ids.txt").write_text("\n".join([*given, "00000000"]) + "\n")
    advisees = read_advisees(tmp_path / "ids.txt", pseudonymiser=Pseudonymiser(secret_key.encode()))
    model = load_model(campus["root"] / "model")
    with open_store(campus["db"]) as store:
        whole = find_at_risk(model, store, "2023-Spring", advisees=advisees)
        programmes = programmes_before(store, "2023-Spring")
        monkeypatch.setattr(store, "load_grades", lambda *a, **k: pytest.fail("everyone's records were read"))
        own = find_at_risk(model, store, "2023-spring", advisees=advisees, programmes=programmes)
        assert own.rows and own.rows == whole.rows and own.summary() == whole.summary()
        assert own.unknown == ("00000000",)
        with pytest.raises(DataError, match="inferred from the records before 2023-Spring") as err:
            find_at_risk(model, store, "2022-Fall", advisees=advisees, programmes=programmes)
        assert err.value.field == "term"


@pytest.mark.parametrize(
    ("who", "message"),
    [
        (["--students", "ids.txt", "--all"], "not allowed with argument"),
        ([], "one of the arguments --students --all is required"),
    ],
)
def test_students_and_all_are_one_or_the_other(campus, secret_key: str, tmp_path: Path, who, message) -> None:
    (tmp_path / "ids.txt").write_text("20190001\n")
    who = [str(tmp_path / w) if w == "ids.txt" else w for w in who]
    code, _, err = run_cli(
        "at-risk", campus["root"] / "model", "--db", campus["db"], "--term", "2023-Spring", *who,
        "--out", tmp_path / "x.csv",
    )  # fmt: skip
    assert code == 2 and message in err and "usage:" in err
    assert not (tmp_path / "x.csv").exists()


def test_bad_inputs_are_named_and_nothing_is_written(campus, secret_key: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody yet\n")
    base = ["at-risk", campus["root"] / "model", "--db", campus["db"]]
    cases = [
        (["--term", "Someday", "--all"], "term 'Someday': no stored term has that name", "2022-Fall"),
        (["--term", "2023-Spring", "--students", empty], "no student numbers", "empty.txt"),
        (["--term", "2023-Spring", "--students", tmp_path / "absent.txt"], "absent.txt", "student ids file"),
        (["--term", "2023-Spring", "--all", "--pass", "W"], "pass 'W'", "without a grade"),
    ]
    for extra, first, second in cases:
        code, _, err = run_cli(*base, *extra, "--out", tmp_path / "x.csv")
        assert code == 2 and first in err and second in err, err
    code, _, err = run_cli(*base, "--term", "2023-Spring", "--all", "--out", tmp_path / "none" / "x.csv")
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(*base, "--term", "2023-Spring", "--all", "--out", tmp_path / "x.png")
    assert code == 2 and "CSV file" in err
    code, _, err = run_cli("at-risk", campus["root"] / "model", "--term", "2023-Spring", "--all", "--out", "x.csv")
    assert code == 2 and "--db URL" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt"]
