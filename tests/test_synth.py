"""The synthetic university: deterministic, shaped like the registrar's export, messy on purpose, meaningful."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from electives.data.synth import (
    CATALOG_COLUMNS,
    EXPORT_COLUMNS,
    TRUTH_COLUMNS,
    SynthConfig,
    University,
    generate,
    letter_grade,
    write,
)

SMALL = SynthConfig(n_students=200, seed=11)
FILES = ("grades.csv", "grades-latin1.csv", "catalog.csv", "truth.csv", "README.txt")


@pytest.fixture(scope="module")
def small() -> University:
    return generate(SMALL)


@pytest.fixture(scope="module")
def small_dir(small: University, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write(small, out)
    return out


@pytest.fixture(scope="module")
def default() -> University:
    return generate(SynthConfig())


def _read(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)


def _term_index(export: pd.DataFrame, start_year: int) -> np.ndarray:
    year = export["Year"].astype(int).to_numpy()
    spring = (export["term"] == "Spring").to_numpy()
    return 2 * (year - start_year) - spring


def _numeric_total(export: pd.DataFrame) -> np.ndarray:
    total = pd.to_numeric(export["total"], errors="coerce").to_numpy(dtype=float, copy=True)
    total[export["total"].isin(["777", "999"]).to_numpy()] = np.nan
    return total


def _oracle_margin(u: University) -> tuple[float, int]:
    """Mean over students of (oracle top-5 minus mean of all) true grades of eligible, not-taken electives."""
    export, catalog = u.export, u.catalog
    sid = {s: i for i, s in enumerate(u.student_ids)}
    cid = {c: i for i, c in enumerate(u.course_ids)}
    s = export["student serial"].map(sid).to_numpy()
    c = export["Crs Code"].map(cid).to_numpy()
    ok = _numeric_total(export) >= 60
    passed = np.zeros(u.expected.shape, dtype=bool)
    passed[s[ok], c[ok]] = True
    taken = np.zeros(u.expected.shape, dtype=bool)
    taken[s, c] = True
    el = np.flatnonzero((catalog["elective"] == "yes").to_numpy())
    eligible = ~taken[:, el]
    for k, pre in enumerate(catalog["prerequisites"].iloc[el]):
        for p in filter(None, pre.split(";")):
            eligible[:, k] &= passed[:, cid[p]]
    x = u.expected[:, el]
    n = eligible.sum(axis=1)
    top5 = -np.sort(-np.where(eligible, x, -np.inf), axis=1)[:, :5].mean(axis=1)
    random_mean = np.where(eligible, x, 0.0).sum(axis=1) / np.maximum(n, 1)
    m = n >= 5
    return float((top5 - random_mean)[m].mean()), int(m.sum())


def test_same_seed_same_bytes_other_seed_differs(small_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    paths = write(generate(SMALL), again)
    assert sorted(p.name for p in paths.values()) == sorted(FILES)
    for name in FILES:
        assert (again / name).read_bytes() == (small_dir / name).read_bytes(), name
    other = tmp_path / "other"
    write(generate(SynthConfig(n_students=200, seed=12)), other)
    assert (other / "grades.csv").read_bytes() != (small_dir / "grades.csv").read_bytes()
    assert (other / "truth.csv").read_bytes() != (small_dir / "truth.csv").read_bytes()


def test_headers(small_dir: Path) -> None:
    def header(name: str) -> str:
        return (small_dir / name).read_text(encoding="utf-8").split("\n", 1)[0]

    assert header("grades.csv") == "student serial,Year,term,Crs Code,Course Name,total,Grade"
    assert header("grades.csv") == ",".join(EXPORT_COLUMNS)
    assert header("catalog.csv") == (
        "course_id,name,elective,prerequisites,credits,department,terms_offered,description,capacity"
    )
    assert header("catalog.csv") == ",".join(CATALOG_COLUMNS)
    assert header("truth.csv") == "student serial,Crs Code,expected_total" == ",".join(TRUTH_COLUMNS)


def test_shape_contracts(small: University, small_dir: Path) -> None:
    cfg = small.config
    export = _read(small_dir / "grades.csv")
    catalog = _read(small_dir / "catalog.csv")
    truth = _read(small_dir / "truth.csv")

    assert len(catalog) == cfg.n_courses and catalog["course_id"].is_unique
    assert (catalog["elective"] == "yes").sum() == cfg.n_electives
    assert set(catalog["elective"]) == {"yes", "no"}
    assert catalog["department"].nunique() == cfg.n_departments
    assert catalog["course_id"].str.fullmatch(r"[A-Z]{2}[1-4]\d\d").all()
    assert catalog["name"].is_unique
    assert catalog["credits"].astype(int).between(2, 4).all()
    assert (catalog["description"].str.len() > 30).all() and catalog["description"].str.endswith(".").all()
    offered = catalog["terms_offered"].str.split(";")
    assert all(set(o) <= {"Fall", "Spring"} and o for o in offered)
    assert (offered.str.len() == 1).any()  # some electives only in one term
    level = dict(zip(catalog["course_id"], catalog["course_id"].str[2].astype(int), strict=True))
    for cid, pre in zip(catalog["course_id"], catalog["prerequisites"], strict=True):
        for p in filter(None, pre.split(";")):
            assert p in level and level[p] < level[cid], (cid, p)
    assert (catalog["prerequisites"] != "").sum() > cfg.n_courses // 2

    assert set(export["Crs Code"]) <= set(catalog["course_id"])
    names = dict(zip(catalog["course_id"], catalog["name"], strict=True))
    assert (export["Course Name"] == export["Crs Code"].map(names)).all()
    assert export["student serial"].str.fullmatch(r"20\d{6,}").all()
    assert export["student serial"].nunique() == cfg.n_students
    assert set(export["term"]) == {"Fall", "Spring"}
    t = _term_index(export, cfg.start_year)
    assert t.min() == 0 and t.max() == cfg.n_terms - 1
    assert export.groupby(["Year", "term"]).ngroups == cfg.n_terms
    # Cohorts: some students have a full record, some only a term or two.
    terms_per_student = pd.Series(t).groupby(export["student serial"].to_numpy()).nunique()
    assert terms_per_student.max() == 8 and terms_per_student.min() == 1
    assert 15 <= len(export) / cfg.n_students <= 25

    assert len(truth) == cfg.n_students * cfg.n_courses
    assert not truth.duplicated(["student serial", "Crs Code"]).any()
    assert set(truth["student serial"]) == set(export["student serial"])
    assert truth["expected_total"].str.fullmatch(r"\d{1,3}\.\d").all()
    assert pd.to_numeric(truth["expected_total"]).between(0, 100).all()


def test_export_rows_are_consistent(small_dir: Path) -> None:
    export = _read(small_dir / "grades.csv")
    total = _numeric_total(export)
    numeric = ~np.isnan(total)
    assert export["total"][numeric].str.fullmatch(r"\d{1,3}\.\d").all()
    assert ((total[numeric] >= 0) & (total[numeric] <= 100)).all()
    assert (export["Grade"][numeric].to_numpy() == letter_grade(total[numeric])).all()
    marks = export[~numeric]
    assert (marks["Grade"] == marks["total"].replace({"777": "", "999": ""})).all()


def test_letter_bands() -> None:
    totals = np.array([100, 97, 96.9, 93, 89, 84, 80, 76, 73, 70, 67, 64, 60, 59.9, 0])
    expected = ["A+", "A+", "A", "A", "A-", "B+", "B", "B-", "C+", "C", "C-", "D+", "D", "F", "F"]
    assert letter_grade(totals).tolist() == expected


def test_prerequisites_passed_before_and_terms_offered(small: University, small_dir: Path) -> None:
    export = _read(small_dir / "grades.csv")
    catalog = _read(small_dir / "catalog.csv").set_index("course_id")
    t = _term_index(export, small.config.start_year)
    total = _numeric_total(export)
    first_pass: dict[tuple[str, str], int] = {}
    for s, c, ti, x in zip(export["student serial"], export["Crs Code"], t, total, strict=True):
        if x >= 60:
            first_pass[(s, c)] = min(first_pass.get((s, c), ti), ti)
    electives = export["Crs Code"].map(catalog["elective"]).eq("yes").to_numpy()
    checked = 0
    for s, c, ti, season in zip(
        export["student serial"][electives],
        export["Crs Code"][electives],
        t[electives],
        export["term"][electives],
        strict=True,
    ):
        assert season in catalog.at[c, "terms_offered"].split(";"), (s, c, season)
        for p in filter(None, catalog.at[c, "prerequisites"].split(";")):
            assert first_pass.get((s, p), 10**6) < ti, (s, c, p)
            checked += 1
    assert checked > 100


def test_messy_bits_present(small_dir: Path) -> None:
    export = _read(small_dir / "grades.csv")
    counts = export["total"].value_counts()
    for mark in ("W", "I", "777", "999"):
        assert counts.get(mark, 0) >= 1, mark
        assert counts.get(mark, 0) / len(export) < 0.01, mark
    assert set(export.loc[export["total"].isin(["777", "999"]), "Grade"]) == {""}

    dup = export.duplicated(keep=False)
    assert 1 <= export.duplicated().sum() <= max(3, 0.003 * len(export))
    # A retake: a failed course taken again in a later term.
    once = export[~dup | ~export.duplicated()].copy()
    once["t"] = _term_index(once, SMALL.start_year)
    once["x"] = _numeric_total(once)
    repeated = once[once.duplicated(["student serial", "Crs Code"], keep=False)].sort_values("t")
    first = repeated.groupby(["student serial", "Crs Code"]).first()
    assert (first["x"] < 60).any()
    assert (repeated.groupby(["student serial", "Crs Code"])["t"].nunique() > 1).all()

    names = export["Course Name"].drop_duplicates()
    assert (~names.map(str.isascii)).sum() == 1

    utf8 = (small_dir / "grades.csv").read_bytes()
    latin1 = (small_dir / "grades-latin1.csv").read_bytes()
    assert utf8 != latin1
    assert latin1.decode("latin-1") == utf8.decode("utf-8")


def test_readme_describes_generation_and_import(small_dir: Path) -> None:
    text = (small_dir / "README.txt").read_text(encoding="utf-8")
    assert f"seed {SMALL.seed}" in text and "200 students" in text
    assert 'electives import grades.csv --map student="student serial"' in text
    assert "--scale percent --catalog catalog.csv" in text


def test_observed_totals_track_truth(small: University, small_dir: Path) -> None:
    export = _read(small_dir / "grades.csv")
    truth = _read(small_dir / "truth.csv")
    merged = export.merge(truth, on=["student serial", "Crs Code"], validate="many_to_one")
    x = _numeric_total(merged)
    ok = ~np.isnan(x)
    assert np.corrcoef(x[ok], merged["expected_total"].astype(float)[ok])[0, 1] > 0.7
    assert 72 <= small.expected.mean() <= 78 and 8 <= small.expected.std() <= 12


def test_oracle_top5_beats_random_electives(default: University) -> None:
    cfg = default.config
    assert len(default.export) / cfg.n_students == pytest.approx(20, abs=5)
    margin, n_students = _oracle_margin(default)
    assert n_students > cfg.n_students // 2
    assert margin >= 4.0


def test_generate_is_pure(small: University) -> None:
    again = generate(SMALL)
    for name in ("export", "catalog", "truth", "enrolments"):
        pd.testing.assert_frame_equal(getattr(small, name), getattr(again, name))
    np.testing.assert_array_equal(small.expected, again.expected)


def test_rejects_impossible_configs() -> None:
    with pytest.raises(ValueError):
        generate(SynthConfig(n_departments=9))
    with pytest.raises(ValueError):
        generate(SynthConfig(n_courses=10, n_electives=8))


def test_other_sizes_keep_the_contracts() -> None:
    u = generate(SynthConfig(n_students=60, n_courses=40, n_electives=15, n_departments=3, n_terms=6, seed=3))
    assert len(u.catalog) == 40 and (u.catalog["elective"] == "yes").sum() == 15
    assert u.catalog["department"].nunique() == 3
    assert len(u.truth) == 60 * 40
    assert set(u.export["Crs Code"]) <= set(u.catalog["course_id"])
    assert re.fullmatch(r"\d+", str(u.export["Year"].iloc[0]))


def test_electives_have_seats_some_oversubscribed_some_not(default: University) -> None:
    """Seats per offering: each elective's largest class rounded up to 5 (core courses unlimited); against what
    students would do best in next term (each one's top 2 by true grade), some electives are oversubscribed and
    others have seats to spare."""
    catalog = default.catalog.set_index("course_id")
    elective = catalog["elective"] == "yes"
    assert catalog.loc[~elective, "capacity"].isna().all()
    seats = catalog.loc[elective, "capacity"].astype(int)
    assert (seats % 5 == 0).all() and (seats >= 10).all()
    largest = default.enrolments.groupby(["Crs Code", "term_index"]).size().groupby(level=0).max()
    largest = largest.reindex(seats.index).fillna(0)
    assert (seats >= largest).all()
    assert ((seats - largest < 5) | (seats == 10)).all()  # nothing beyond the rounding

    fall = [c for c in seats.index if "Fall" in catalog.at[c, "terms_offered"].split(";")]
    cid = {c: i for i, c in enumerate(default.course_ids)}
    sid = {s: i for i, s in enumerate(default.student_ids)}
    x = default.expected[:, [cid[c] for c in fall]].copy()
    e = default.enrolments
    taken = e[e["Crs Code"].isin(fall)]
    x[taken["student serial"].map(sid).to_numpy(), [fall.index(c) for c in taken["Crs Code"]]] = -np.inf
    demand = np.bincount(np.argsort(-x, axis=1)[:, :2].ravel(), minlength=len(fall))
    over = demand > seats[fall].to_numpy()
    assert 2 <= over.sum() <= len(fall) - 5
    assert seats[fall].sum() > demand.sum()  # enough seats in all, in the wrong places
