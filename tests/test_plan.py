"""Seat plans: the exact allocation against known optima and brute force, `electives plan` end to end on a small
synthetic university (files, stored counts, an advisor's ids, bad input), and "likely full" on recommendations."""

from __future__ import annotations

import csv
import itertools
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from support import ImportedUniversity, import_university, run_cli, secret_key_set

from electives.data.advisees import read_advisees
from electives.data.storage import CourseSeats, Store
from electives.data.synth import SynthConfig, generate
from electives.errors import DataError
from electives.models.artifact import load_model
from electives.serving import allocation
from electives.serving.allocation import allocate, dual_bound, first_come_first_served, own_top_k, random_plan
from electives.serving.plan import build_plan

INF = np.inf
NEXT_TERM = "2023-Fall"  # the term after the synthetic university's eight (2019-Fall … 2023-Spring)


def _feasible(assigned: np.ndarray, values: np.ndarray, k: int, seats: np.ndarray) -> bool:
    return bool(
        (assigned.sum(axis=1) <= k).all()
        and (assigned.sum(axis=0) <= seats).all()
        and not (assigned & np.isnan(values)).any()
    )


def _total(assigned: np.ndarray, values: np.ndarray) -> float:
    return float(np.where(assigned, values, 0.0).sum())


# ---------------------------------------------------------------------------------------------------- allocation
def test_three_students_where_first_come_first_served_is_not_optimal() -> None:
    # One seat each. Whoever comes first takes X; the plan gives X to B, who has nothing else as good.
    values = np.array([[90.0, 85.0, 50.0], [88.0, 40.0, 40.0], [70.0, 60.0, 65.0]])
    seats = np.array([1.0, 1.0, 1.0])
    plan = allocate(values, 1, seats)
    assert plan.assigned.tolist() == [[False, True, False], [True, False, False], [False, False, True]]
    assert plan.objective == pytest.approx(85 + 88 + 65) and plan.bound == pytest.approx(plan.objective)
    assert plan.integral and plan.gap == pytest.approx(0.0, abs=1e-6)
    greedy = first_come_first_served(values, 1, seats, np.array([0, 1, 2]))
    assert _total(greedy, values) == pytest.approx(90 + 40 + 65)  # A takes X, B what is left first, C Z
    assert own_top_k(values, 1).sum(axis=0).tolist() == [3, 0, 0]  # demand if nobody had seats


@pytest.mark.parametrize("seed", range(6))
def test_allocation_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_students, n_courses, k = 4, 3, int(rng.integers(1, 3))
    values = np.round(rng.uniform(40, 95, (n_students, n_courses)), 1)
    values[rng.random(values.shape) < 0.2] = np.nan
    seats = rng.integers(0, 4, n_courses).astype(float)
    seats[rng.random(n_courses) < 0.25] = INF
    open_pairs = [(s, c) for s in range(n_students) for c in range(n_courses) if not np.isnan(values[s, c])]
    best = 0.0
    for mask in itertools.product((False, True), repeat=len(open_pairs)):
        chosen = np.zeros(values.shape, dtype=bool)
        for (s, c), on in zip(open_pairs, mask, strict=True):
            chosen[s, c] = on
        if _feasible(chosen, values, k, seats):
            best = max(best, _total(chosen, values))
    plan = allocate(values, k, seats)
    assert _feasible(plan.assigned, values, k, seats)
    assert plan.objective == pytest.approx(best)
    assert dual_bound(values, k, seats, plan.prices) == pytest.approx(best)


def test_column_generation_paths_agree_with_the_lp_over_every_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampled prices (a small SAMPLE_STUDENTS here) and the fallback to every pair (MAX_ROUNDS 0) reach the
    same optimum, and its dual bound proves it."""
    rng = np.random.default_rng(3)
    n_students, n_courses, k = 240, 12, 2
    values = 60 + 10 * rng.standard_normal((n_students, 3)) @ rng.standard_normal((3, n_courses)) / 2
    values[rng.random(values.shape) < 0.25] = np.nan
    seats = rng.integers(5, 60, n_courses).astype(float)
    plain = allocate(values, k, seats)
    monkeypatch.setattr(allocation, "SAMPLE_STUDENTS", 40)
    sampled = allocate(values, k, seats, seed=1)
    monkeypatch.setattr(allocation, "MAX_ROUNDS", 0)
    everything = allocate(values, k, seats)
    assert everything.columns == int((~np.isnan(values)).sum())
    for plan in (plain, sampled, everything):
        assert _feasible(plan.assigned, values, k, seats) and plan.integral
        assert plan.objective == pytest.approx(everything.objective, rel=1e-9)
        assert plan.gap <= 1e-6 * plan.objective
    assert plain.rounds >= 1 and plain.columns < everything.columns  # it did not need every pair


def test_no_seat_shortage_is_everyones_own_top_k_and_fewer_eligible_get_what_they_can() -> None:
    values = np.array([[80.0, 70.0, 60.0], [55.0, np.nan, np.nan], [np.nan, np.nan, np.nan]])
    plan = allocate(values, 2, np.array([INF, 5.0, 5.0]))
    assert plan.rounds == 0 and plan.assigned.tolist() == own_top_k(values, 2).tolist()
    assert plan.assigned.sum(axis=1).tolist() == [2, 1, 0]
    closed = allocate(values, 2, np.array([0.0, 5.0, 5.0]))  # a course with no seats takes nobody
    assert not closed.assigned[:, 0].any() and closed.assigned[0].tolist() == [False, True, True]


def test_plan_beats_first_come_first_served_and_random_on_true_grades() -> None:
    """On the synthetic university's true grades, the exact plan is at least as good as any feasible plan: here
    registration in arrival order and a random plan, over the same seats."""
    u = generate(CONFIG)
    electives = [i for i, e in enumerate(u.catalog["elective"]) if e == "yes"]
    values = u.expected[:, electives].copy()
    taken = np.zeros(values.shape, dtype=bool)
    position = {c: j for j, c in enumerate(u.course_ids[electives])}
    rows = {s: i for i, s in enumerate(u.student_ids)}
    for s, c in zip(u.enrolments["student serial"], u.enrolments["Crs Code"], strict=True):
        if c in position:
            taken[rows[s], position[c]] = True
    values[taken] = np.nan
    seats = u.catalog["capacity"].iloc[electives].to_numpy(dtype=float) // 3  # scarce
    rng = np.random.default_rng(0)
    plan = allocate(values, 2, seats)
    assert _feasible(plan.assigned, values, 2, seats) and plan.gap <= 1e-6 * plan.objective
    fcfs = first_come_first_served(values, 2, seats, rng.permutation(len(values)))
    random = random_plan(~np.isnan(values), 2, seats, rng)
    for other in (fcfs, random):
        assert _feasible(other, values, 2, seats)
        assert plan.objective >= _total(other, values) - 1e-6
    assert plan.objective > _total(random, values)


@pytest.mark.parametrize(
    ("k", "seats", "message"),
    [
        (0, [1.0, 1.0], "k must be a whole number ≥ 1"),
        (1, [1.0], r"seats \(courses,\)"),
        (1, [-1.0, 1.0], "seats must be whole numbers ≥ 0"),
        (1, [1.5, 1.0], "seats must be whole numbers ≥ 0"),
    ],
)
def test_allocation_refuses_bad_input(k: int, seats: list[float], message: str) -> None:
    with pytest.raises(DataError, match=message):
        allocate(np.array([[1.0, 2.0]]), k, np.array(seats))


# ---------------------------------------------------------------------------------------------------- a world
CONFIG = SynthConfig(n_students=160, n_courses=24, n_electives=12, n_departments=2, seed=11)


@dataclass(frozen=True, eq=False)
class World:
    imported: ImportedUniversity
    model_dir: Path
    root: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("plan")
    imported = import_university(CONFIG, root)
    with secret_key_set(root):
        code, _, err = run_cli("train", "--db", imported.db_url, "--out", root / "model", "--model", "mf", "--quiet")
    assert code == 0, err
    return World(imported, root / "model", root)


def _copy_db(world: World, tmp_path: Path) -> str:
    """A copy of the world's database, so that a test's stored plan stays its own."""
    target = tmp_path / "copy.db"
    with sqlite3.connect(world.imported.db_path) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return f"sqlite:///{target}"


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_plan_cli_end_to_end(world: World, tmp_path: Path) -> None:
    db = _copy_db(world, tmp_path)
    out = tmp_path / "plan.csv"
    with secret_key_set(tmp_path):
        code, stdout, err = run_cli("plan", world.model_dir, "--db", db, "--term", NEXT_TERM, "--out", out)
    assert (code, err) == (0, "")
    assert f"Plan for {NEXT_TERM}, up to 2 electives each" in stdout and "0 courses over capacity" in stdout
    rows, courses = _read_csv(out), _read_csv(tmp_path / "plan-courses.csv")
    assert (tmp_path / "plan-seats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(rows[0]) == ["student", "course", "course_name", "predicted", "letter", "rank"]
    assert list(courses[0]) == [
        "course", "course_name", "seats", "demand", "allocated", "predicted_mean", "likely_full",
    ]  # fmt: skip
    per_student: dict[str, int] = {}
    for row in rows:
        per_student[row["student"]] = per_student.get(row["student"], 0) + 1
        assert int(row["rank"]) >= 1 and 0 <= float(row["predicted"]) <= 100
    assert max(per_student.values()) <= 2
    catalogue = {c.code: c for c in world.imported.catalog}
    for c in courses:
        assert c["seats"] == str(catalogue[c["course"]].capacity)
        assert int(c["allocated"]) <= int(c["seats"])
        assert c["likely_full"] == ("yes" if int(c["demand"]) > int(c["seats"]) else "no")
        assert int(c["allocated"]) == sum(r["course"] == c["course"] for r in rows)
    with Store(db) as store:
        stored = store.plan(NEXT_TERM)
    assert {code: (s.demand, s.seats, s.allocated) for code, s in stored.items()} == {
        c["course"]: (int(c["demand"]), int(c["seats"]), int(c["allocated"])) for c in courses
    }


def test_plan_for_an_advisors_students_labels_rows_and_counts_unknown_numbers(world: World, tmp_path: Path) -> None:
    u = world.imported.university
    mine = [str(s) for s in u.student_ids[::20]]
    ids = tmp_path / "ids.txt"
    ids.write_text("student\n" + "\n".join([*mine, "99990001", "99990002", mine[0]]) + "\n", encoding="utf-8")
    out = tmp_path / "mine.csv"
    with secret_key_set(tmp_path):
        code, stdout, err = run_cli(
            "plan", world.model_dir, "--db", _copy_db(world, tmp_path), "--term", NEXT_TERM, "-k", "1",
            "--students", ids, "--out", out, "--no-save",
        )  # fmt: skip
    assert code == 0, err
    labels = {r["student"] for r in _read_csv(out)}
    assert labels <= set(mine) and len(labels) >= len(mine) // 2  # raw numbers, only the advisor's
    assert f"--students: {len(mine) + 2} numbers, 2 not on record (counted, not planned)" in stdout
    assert "1 repeated lines skipped" in stdout and "Stored" not in stdout


def test_plan_python_api_bad_input_and_counts(world: World, tmp_path: Path) -> None:
    model = load_model(world.model_dir)
    with Store(_copy_db(world, tmp_path)) as store:
        with pytest.raises(DataError, match=r"'2023-Fallish' is not a term .* offers electives in: Fall, Spring"):
            build_plan(model, store, term="2023-Fallish", k=2)
        with pytest.raises(DataError, match=r"no student on record may take an elective in 2023-Summer"):
            build_plan(model, store, term="2023-Summer", k=2)
        with pytest.raises(DataError, match="k must be a whole number ≥ 1"):
            build_plan(model, store, term=NEXT_TERM, k=0)
        plan = build_plan(model, store, term="Fall", k=2)
    assert plan.term == "Fall" and plan.over_capacity == 0
    assert len(plan.on_record) == len(world.imported.university.student_ids)
    ids = tmp_path / "ids.txt"
    known = [str(s) for s in world.imported.university.student_ids[:3]]
    ids.write_text("\n".join([known[0], "12345678", *known[1:], "87654321"]) + "\n", encoding="utf-8")
    advisees = read_advisees(ids, pseudonymiser=world.imported.key)
    assert advisees.unknown(plan.on_record) == ("12345678", "87654321")  # counted, not an error
    labelled = plan.student_lines(advisees.labels())
    assert {line.student for line in labelled} <= set(known)
    assert plan.allocation.gap <= 1e-6 * plan.allocation.objective
    assert (plan.assigned.sum(axis=1) <= 2).all() and not (plan.assigned & np.isnan(plan.predicted)).any()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--term", "Fallish"], "is not a term (e.g. 2024-Fall) or a season"),
        (["-k", "0"], "-k 0: expected a number of electives per student from 1 to"),
        (["--out", "plan.txt"], "expected a .csv file name"),
        (["--out", "missing/plan.csv"], "does not exist"),
        (["--students", "nofile.txt"], "nofile.txt"),
        (["--catalog", "bad-catalog.csv"], "line 3, column capacity: expected the seats per offering"),
    ],
)
def test_plan_cli_bad_input(world: World, tmp_path: Path, args: list[str], message: str) -> None:
    bad = tmp_path / "bad-catalog.csv"
    bad.write_text("course_id,name,elective,capacity\nA,Alpha,yes,10\nB,Beta,yes,ten\n", encoding="utf-8")
    given = {"--term": NEXT_TERM, "--out": str(tmp_path / "plan.csv"), **dict(zip(args[::2], args[1::2], strict=True))}
    for flag in ("--out", "--students", "--catalog"):
        if flag in given and not Path(given[flag]).is_absolute():
            given[flag] = str(tmp_path / given[flag])
    with secret_key_set(tmp_path):
        code, _, err = run_cli("plan", world.model_dir, "--db", world.imported.db_url, *itertools.chain(*given.items()))
    assert code == 2 and message in err
    assert not (tmp_path / "plan.csv").exists()


# ---------------------------------------------------------------------------------------------------- likely full
def test_recommend_says_likely_full_after_a_plan(world: World, tmp_path: Path) -> None:
    db = _copy_db(world, tmp_path)
    model = load_model(world.model_dir)
    with Store(db) as store:
        plan = build_plan(model, store, term=NEXT_TERM, k=2)
        store.save_plan(plan.term, plan.seat_counts())
    full = {c.course for c in plan.course_lines() if c.likely_full}
    assert full, "the synthetic university's seats leave some elective oversubscribed"
    key = world.imported.key
    raw = {key.pseudonym(str(s)): str(s) for s in world.imported.university.student_ids}
    top = own_top_k(plan.predicted, 2)
    student = next(i for i in range(len(plan.students)) if any(plan.courses[j] in full for j in np.flatnonzero(top[i])))
    with secret_key_set(tmp_path):
        args = ("recommend", world.model_dir, "--db", db, "--student", raw[plan.students[student]], "-k", "2")
        code, text, err = run_cli(*args, "--term", NEXT_TERM)
        assert code == 0, err
        assert "Likely full: more students are predicted to want it than it has seats." in text
        code, text, _ = run_cli(*args, "--term", "2024-Fall", "--json")  # no plan for that term
    assert code == 0 and {card["likely_full"] for card in json.loads(text)["recommendations"]} == {None}


def test_api_and_page_say_likely_full_from_the_stored_plan(tmp_path: Path) -> None:
    from web_support import make_app, web_world

    world = web_world()
    target = tmp_path / "web.db"
    with sqlite3.connect(world.db_url.removeprefix("sqlite:///")) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    db = f"sqlite:///{target}"
    app = make_app(world, db_url=db)

    def body(raw: str) -> dict:
        return {"grades": [{"course": c, "grade": m} for c, m in world.grades_of(raw)], "k": 3, "term": NEXT_TERM}

    def cards(client, raw: str) -> list[dict]:
        return client.post("/api/v1/recommendations", json=body(raw)).json["recommendations"]

    student = next(s for s in map(str, world.university.student_ids) if len(cards(app.test_client(), s)) >= 2)
    first = cards(app.test_client(), student)
    assert {card["likely_full"] for card in first} == {None}  # no plan stored yet
    courses = [card["course"] for card in first]
    with Store(db) as store:
        store.save_plan(NEXT_TERM, [CourseSeats(courses[0], 2, 50, 10, 10), CourseSeats(courses[1], 2, 5, 10, 5)])
    client = app.test_client()
    outlook = {c["course"]: c["likely_full"] for c in cards(client, student)}
    assert outlook == {courses[0]: True, courses[1]: False, **{c: None for c in courses[2:]}}
    page = client.get("/recommend").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    grades = world.grades_of(student)
    form = {"csrf_token": token, "course": [c for c, _ in grades], "grade": [m for _, m in grades]}
    html = client.post("/recommend", data={**form, "k": "3", "term": NEXT_TERM}).get_data(as_text=True)
    assert html.count("Likely full in 2023-Fall") == 1
