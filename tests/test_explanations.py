import numpy as np
import pytest

from electives.data.scales import load_scale
from electives.serving.explanations import (
    CohortStatistic,
    cohort_from_similarities,
    cohort_statistic,
    explanation_sentence,
    similar_taken_courses,
)

SCALE = load_scale("letter-plus")  # 0–4: A = 3.7, A- = 3.4, B+ = 3.2

COURSES = np.array(
    [
        [1.0, 0.0],  # 0: target
        [0.9, 0.1],  # 1: very similar
        [0.6, 0.8],  # 2: somewhat similar (cos 0.6)
        [0.0, 1.0],  # 3: orthogonal (cos 0)
        [-1.0, 0.2],  # 4: opposite
        [0.8, 0.0],  # 5: as similar as can be (cos 1)
        [0.0, 0.0],  # 6: no embedding
    ]
)


def test_similar_taken_courses() -> None:
    taken = [(1, 0.9), (2, 0.8), (3, 0.95), (4, 1.0), (5, 0.5), (6, 1.0), (0, 1.0)]
    result = similar_taken_courses(COURSES, 0, taken, good_threshold=0.75)
    # 5 is most similar but the grade is below the threshold; 3, 4 and 6 are not positively similar; 0 is the target.
    assert [i for i, _ in result] == [1, 2]
    assert result[0][1] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    assert result[1][1] == pytest.approx(0.6)
    assert similar_taken_courses(COURSES, 0, taken, 0.75, k=1) == result[:1]
    # A retake: the best grade counts.
    assert [i for i, _ in similar_taken_courses(COURSES, 0, [(5, 0.5), (5, 0.8)], 0.75)] == [5]
    assert similar_taken_courses(COURSES, 0, [], 0.75) == []


def _cohort(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    me = np.array([1.0, 0.0, 0.0])
    near = me + rng.normal(0, 0.1, (m, 3))  # positively similar
    far = -me + rng.normal(0, 0.1, (m, 3))  # dissimilar: never in the cohort
    vectors = np.vstack([near, far])
    grades = np.concatenate([np.full(m, 0.8), np.full(m, 0.1)])
    return me, vectors, grades


def test_cohort_statistic_needs_enough_students() -> None:
    me, vectors, grades = _cohort(12)
    assert cohort_statistic(me, vectors, grades) == CohortStatistic(mean=pytest.approx(0.8), size=12)
    # Only nine similar students: below the default of ten, nothing is reported.
    me, vectors, grades = _cohort(9)
    assert cohort_statistic(me, vectors, grades) is None
    assert cohort_statistic(me, vectors, grades, min_cohort=5) == CohortStatistic(pytest.approx(0.8), 9)
    with pytest.raises(ValueError, match="at least 5"):
        cohort_statistic(me, vectors, grades, min_cohort=4)
    with pytest.raises(ValueError, match="neighbours"):
        cohort_statistic(me, vectors, grades, neighbours=8)
    assert cohort_statistic(me, vectors[:3], grades[:3]) is None


def test_cohort_takes_the_nearest() -> None:
    me = np.array([1.0, 0.0])
    angles = np.linspace(0, 1.2, 40)  # increasingly dissimilar, all positively similar
    vectors = np.column_stack([np.cos(angles), np.sin(angles)])
    grades = np.arange(40) / 40
    stat = cohort_statistic(me, vectors, grades, neighbours=10)
    assert stat == CohortStatistic(mean=pytest.approx(np.mean(grades[:10])), size=10)


def test_explanation_sentence() -> None:
    a, a_minus, b_plus = (SCALE.normalise(p) for p in (3.7, 3.4, 3.2))
    cohort = CohortStatistic(mean=b_plus, size=23)
    assert explanation_sentence([("Linear Algebra", a), ("Calculus II", a_minus)], cohort, SCALE) == (
        "It is like Linear Algebra (A) and Calculus II (A-), two of your stronger courses; "
        "students with records like yours averaged B+ here (23 students)."
    )
    assert explanation_sentence([("Statistics", a), ("Logic", a), ("Calculus II", a_minus)], None, SCALE) == (
        "It is like Statistics (A), Logic (A) and Calculus II (A-), three of your stronger courses."
    )
    assert explanation_sentence([("Logic", a)], None, SCALE) == "It is like Logic (A), one of your stronger courses."
    assert explanation_sentence([], cohort, SCALE) == "Students with records like yours averaged B+ here (23 students)."
    assert explanation_sentence([], None, SCALE) is None


def test_cohort_from_similarities_matches_a_stable_sort() -> None:
    rng = np.random.default_rng(3)
    for trial in range(200):
        m = int(rng.integers(5, 80))
        # Few distinct values, so that ties at the cut are common.
        sims = rng.integers(-3, 4, m) / 3.0 if trial % 2 else rng.normal(size=m)
        grades = rng.random(m)
        order = np.argsort(-sims, kind="stable")[:30]
        cohort = order[sims[order] > 0]
        expected = None if cohort.size < 5 else CohortStatistic(pytest.approx(grades[cohort].mean()), int(cohort.size))
        assert cohort_from_similarities(sims, grades, neighbours=30, min_cohort=5) == expected


def test_typical_sentence_relates_the_course_to_the_students_prediction() -> None:
    from electives.data.scales import load_scale
    from electives.serving.explanations import typical_sentence

    scale = load_scale("percent")
    assert typical_sentence(0.75, 0.92, scale) == (
        "Students typically get C here; your grades so far point to A-, above that."
    )
    assert typical_sentence(0.88, 0.70, scale).endswith("point to C-, below that.")
    assert (
        typical_sentence(0.84, 0.85, scale)
        == "Students typically get B here, and your grades so far point the same way."
    )


def test_the_cohort_clause_says_how_it_relates_to_the_prediction() -> None:
    from electives.serving.explanations import cohort_relation

    b_plus, a_plus, b = SCALE.normalise(3.2), SCALE.normalise(4.0), SCALE.normalise(3.0)
    cohort = CohortStatistic(mean=a_plus, size=23)
    assert cohort_relation(a_plus, b_plus, SCALE) == "above"
    assert cohort_relation(b, b_plus, SCALE) == "below"
    assert cohort_relation(SCALE.normalise(3.2), b_plus, SCALE) == "in line with"
    assert explanation_sentence([], cohort, SCALE, predicted=b_plus) == (
        "Students with records like yours averaged A+ here (23 students), above your predicted B+."
    )
    same = CohortStatistic(mean=SCALE.normalise(3.2), size=12)
    assert explanation_sentence([], same, SCALE, predicted=b_plus) == (
        "Students with records like yours averaged B+ here (12 students), in line with your predicted B+."
    )
