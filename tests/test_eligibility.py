import math
import time

import numpy as np
import pytest

from electives.data.catalog import Catalog, Course
from electives.data.eligibility import (
    EligibilityIndex,
    EligibilityRules,
    Exclusion,
    check_eligibility,
)
from electives.data.scales import load_scale
from electives.errors import DataError

SCALE = load_scale("letter-plus")  # A = 3.7, C = 2.4, D- = 1.0 (the lowest pass), F = 0
A, C, F = 3.7, 2.4, 0.0

CATALOG = Catalog(
    (
        Course("CS101", "Intro", elective=False),
        Course("MA210", "Linear Algebra", elective=False),
        Course("CS201", "Data Structures", elective=True, prerequisites=("CS101",)),
        Course("CS301", "Compilers", elective=True, prerequisites=("CS201", "MA210")),
        Course("ML400", "Machine Learning", elective=True, prerequisites=("MA210",), terms_offered=("Fall",)),
        Course("AR100", "Art", elective=True, terms_offered=("Spring", "2025-Fall")),
        Course("HI100", "History"),  # elective flag unknown
    )
)
CANDIDATES = ("CS101", "MA210", "CS201", "CS301", "ML400", "AR100", "HI100", "XX999")


def test_each_reason_and_message() -> None:
    history = [
        ("CS101", A, 20231),
        ("MA210", F, 20236),
        ("MA210", None, 20241),  # W on the retake: the failed grade still decides
    ]
    result = check_eligibility(CANDIDATES, CATALOG, history, SCALE, target_term="Spring")
    assert result.eligible == ("CS201", "AR100")
    assert list(result.mask) == [c in {"CS201", "AR100"} for c in CANDIDATES]
    ex = result.excluded
    assert set(ex) == set(CANDIDATES) - {"CS201", "AR100"}
    assert ex["CS101"] == Exclusion("already-passed", "Already passed (A)")
    # MA210 was failed and retakes are allowed, but it is not an elective.
    assert ex["MA210"] == Exclusion("not-an-elective", "Not an elective in the catalogue")
    assert ex["HI100"] == Exclusion("not-an-elective", "Not marked as an elective in the catalogue")
    assert ex["XX999"] == Exclusion("unknown-course", "Not in the course catalogue")
    assert ex["CS301"] == Exclusion(
        "missing-prerequisites", "Prerequisites not passed: CS201, MA210", missing=("CS201", "MA210")
    )
    assert ex["ML400"] == Exclusion("missing-prerequisites", "Prerequisite not passed: MA210", missing=("MA210",))


def test_not_offered_by_season_and_term() -> None:
    history = [("MA210", C, 20231)]
    fall = check_eligibility(CANDIDATES, CATALOG, history, SCALE, target_term="Fall")
    assert "ML400" in fall.eligible and "AR100" in fall.eligible  # AR100 runs in 2025-Fall: some Fall
    spring = check_eligibility(CANDIDATES, CATALOG, history, SCALE, target_term=" Spring ")
    assert spring.excluded["ML400"] == Exclusion("not-offered", "Not offered in Spring", term="Spring")
    assert "AR100" in spring.eligible
    fall24 = check_eligibility(CANDIDATES, CATALOG, history, SCALE, target_term="2024-Fall")
    assert "ML400" in fall24.eligible and fall24.excluded["AR100"].reason == "not-offered"
    # No target term, or the rule turned off: offering is not checked.
    assert "ML400" in check_eligibility(CANDIDATES, CATALOG, history, SCALE).eligible
    off = EligibilityRules(require_offered=False)
    assert "ML400" in check_eligibility(CANDIDATES, CATALOG, history, SCALE, "Spring", off).eligible


def test_bad_target_term() -> None:
    with pytest.raises(DataError, match="Fl"):
        check_eligibility(CANDIDATES, CATALOG, [], SCALE, target_term="Fl")
    with pytest.raises(DataError):  # also without a catalogue
        check_eligibility(CANDIDATES, None, [], SCALE, target_term="sometime")


def test_prerequisite_failed_withdrawn_and_retaken() -> None:
    index = EligibilityIndex(CATALOG, CANDIDATES, SCALE)
    failed = index.evaluate([("CS101", F, 20231)])
    assert failed.excluded["CS201"].missing == ("CS101",)
    withdrawn = index.evaluate([("CS101", None, 20231)])
    assert withdrawn.excluded["CS201"].reason == "missing-prerequisites"
    retaken = index.evaluate([("CS101", F, 20231), ("CS101", C, 20236)])
    assert "CS201" in retaken.eligible
    nan_points = index.evaluate([("CS101", math.nan, 20231), ("CS101", C, math.nan)])
    assert "CS201" in nan_points.eligible


def test_retake_rules() -> None:
    index = EligibilityIndex(None, ("CS101", "MA210", "CS201"), SCALE)
    history = [("CS101", F, 1), ("CS101", None, 2), ("MA210", None, 1)]
    result = index.evaluate(history)
    assert result.eligible == ("CS101", "CS201")
    assert result.excluded["MA210"].reason == "already-taken"
    assert result.excluded["MA210"].message.startswith("Already on your record without a grade")
    strict = EligibilityIndex(None, ("CS101", "MA210"), SCALE, EligibilityRules(allow_retake_failed=False))
    assert strict.evaluate(history).excluded["CS101"] == Exclusion(
        "failed-retake-not-allowed", "Taken before without passing (F); retakes are not recommended"
    )
    lenient = EligibilityIndex(None, ("MA210",), SCALE, EligibilityRules(allow_retake_ungraded=True))
    assert lenient.evaluate(history).eligible == ("MA210",)


def test_no_catalogue_everything_not_taken_is_eligible() -> None:
    result = check_eligibility(CANDIDATES, None, [("CS101", A, 1), ("CS999", A, 1)], SCALE, target_term="Fall")
    assert result.eligible == tuple(c for c in CANDIDATES if c != "CS101")
    assert list(result.excluded) == ["CS101"]


def test_catalogue_rules_switched_off() -> None:
    no_flags = Catalog(tuple(Course(c.code, c.name, prerequisites=c.prerequisites) for c in CATALOG))
    # A catalogue that marks no electives says nothing about them.
    assert "CS101" in check_eligibility(CANDIDATES, no_flags, [], SCALE).eligible
    rules = EligibilityRules(electives_only=False, require_prerequisites=False, require_listed=False)
    result = check_eligibility(CANDIDATES, CATALOG, [], SCALE, rules=rules)
    assert result.eligible == CANDIDATES
    # Unlisted but electives are flagged: an unlisted course is not known to be an elective.
    unlisted = check_eligibility(CANDIDATES, CATALOG, [], SCALE, rules=EligibilityRules(require_listed=False))
    assert unlisted.excluded["XX999"].reason == "not-an-elective"


def test_history_reason_wins_and_duplicates_refused() -> None:
    result = check_eligibility(CANDIDATES, CATALOG, [("XX999", A, 1), ("CS301", A, 1)], SCALE)
    assert result.excluded["XX999"].reason == "already-passed"
    assert result.excluded["CS301"].reason == "already-passed"
    with pytest.raises(ValueError, match="CS101"):
        EligibilityIndex(None, ("CS101", "CS101"), SCALE)


def test_fast_on_a_500_course_catalogue() -> None:
    rng = np.random.default_rng(0)
    codes = [f"C{i:03d}" for i in range(500)]
    courses = tuple(
        Course(
            code,
            code,
            elective=bool(rng.random() < 0.7),
            prerequisites=tuple(dict.fromkeys(codes[j] for j in rng.integers(0, i, size=min(i, 2)))),
            terms_offered=("Fall",) if i % 3 else ("Spring",),
        )
        for i, code in enumerate(codes)
    )
    index = EligibilityIndex(Catalog(courses), codes, SCALE)
    history = [(codes[j], float(rng.choice([A, C, F])), 2020) for j in rng.choice(500, size=40, replace=False)]
    index.evaluate(history, "Fall")
    timings = []
    for _ in range(5):  # best of five batches: other processes share these cores
        start = time.perf_counter()
        for _ in range(20):
            result = index.evaluate(history, "Fall")
        timings.append((time.perf_counter() - start) / 20)
    per_student = min(timings)
    assert len(result.eligible) + len(result.excluded) == 500
    assert per_student < 1e-3, f"{per_student * 1e3:.2f} ms per student"
