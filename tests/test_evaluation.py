"""Interactions, splits and the evaluator: index maps, held-out protocol, overlap refusal, exclusion."""

import json

import numpy as np
import pandas as pd
import pytest

from electives.data.interactions import Interactions
from electives.data.splits import (
    check_no_overlap,
    leave_one_out,
    random_split,
    split,
    temporal,
    validation_split,
)
from electives.errors import DataError, ModelError
from electives.evaluation.evaluate import evaluate
from electives.models import baselines as B

ROWS = [
    # student, course, term, grade
    ("ann", "art", 1, 0.9),
    ("ann", "bio", 1, 0.7),
    ("ann", "chem", 2, 0.4),
    ("ann", "dance", 2, 0.8),
    ("bob", "art", 1, 0.5),
    ("bob", "bio", 3, 0.6),
    ("cat", "chem", 2, 1.0),  # a single interaction: stays in train
    ("dan", "art", 1, 0.2),
    ("dan", "bio", 1, 0.3),  # one term only: stays in train for a temporal split
]


def data(rows=ROWS, **kw) -> Interactions:
    return Interactions.from_frame(pd.DataFrame(rows, columns=["student", "course", "term", "grade"]), **kw)


def pairs(x: Interactions) -> set[tuple[str, str]]:
    return {(x.student_ids[s], x.course_ids[c]) for s, c in zip(x.students, x.courses, strict=True)}


# -- Interactions ---------------------------------------------------------------------------------------------


def test_from_frame_maps_ids_and_types():
    d = data()
    assert d.student_ids == ("ann", "bob", "cat", "dan") and d.course_ids == ("art", "bio", "chem", "dance")
    assert d.students.dtype == np.int64 and d.grades.dtype == np.float32 and d.terms.dtype == np.int64
    assert (d.n_students, d.n_courses, len(d)) == (4, 4, 9)
    assert d.to_frame().iloc[2].tolist()[:3] == ["ann", "chem", 2]
    with pytest.raises(ValueError):
        d.students[0] = 3  # read-only


def test_from_frame_with_given_maps_and_errors():
    d = data(student_ids=["zed", "dan", "cat", "bob", "ann"], course_ids=["dance", "chem", "bio", "art", "x"])
    assert d.n_students == 5 and d.students[0] == 4 and d.courses[0] == 3
    with pytest.raises(DataError, match="row 6: student 'cat'"):
        data(student_ids=["ann", "bob", "dan"])
    with pytest.raises(DataError, match="outside the normalised range"):
        data([("a", "x", 1, 1.5)])
    with pytest.raises(DataError, match="no 'course' column"):
        Interactions.from_frame(pd.DataFrame({"student": ["a"]}))


def test_missing_terms_and_grades():
    d = Interactions.from_frame(pd.DataFrame({"student": ["a", "a", "b"], "course": ["x", "y", "x"]}))
    assert d.grades is None and d.terms.tolist() == [0, 1, 2]
    d = Interactions.from_frame(pd.DataFrame({"student": ["a"], "course": ["x"], "grade": [np.nan]}))
    assert d.grades is None


def test_fingerprint_is_content_addressed():
    assert data().fingerprint() == data().fingerprint()
    changed = [*ROWS[:-1], ("dan", "bio", 1, 0.31)]
    assert data(changed).fingerprint() != data().fingerprint()
    assert len(data().fingerprint()) == 64


def test_item_lookup():
    d = data()
    lk = d.item_lookup()
    assert lk.items(0).tolist() == [0, 1, 2, 3] and lk.items(2).tolist() == [2]
    assert lk.contains(np.array([1, 1, 2]), np.array([0, 2, 2])).tolist() == [True, False, True]
    m = lk.mask(np.array([2, 1]))
    assert m.tolist() == [[False, False, True, False], [True, True, False, False]]


# -- splits ---------------------------------------------------------------------------------------------------


def test_leave_one_out_holds_out_latest():
    train, test = leave_one_out(data())
    # ann: term 2 has chem and dance, the later row (dance) is held out; cat has one row and stays.
    assert pairs(test) == {("ann", "dance"), ("bob", "bio"), ("dan", "bio")}
    assert len(train) + len(test) == 9 and ("cat", "chem") in pairs(train)
    assert train.student_ids == test.student_ids and train.course_ids == test.course_ids


def test_temporal_holds_out_whole_latest_term():
    train, test = temporal(data())
    assert pairs(test) == {("ann", "chem"), ("ann", "dance"), ("bob", "bio")}
    assert {("dan", "art"), ("dan", "bio"), ("cat", "chem")} <= pairs(train)


def test_random_split_fraction_and_seed():
    a = random_split(data(), 0.34, seed=5)
    b = random_split(data(), 0.34, seed=5)
    assert len(a[1]) == 3 and pairs(a[1]) == pairs(b[1])
    with pytest.raises(DataError):
        random_split(data(), 1.5)
    with pytest.raises(DataError):
        split(data(), "kfold")


def test_retaken_course_is_not_in_both_sets():
    rows = [*ROWS, ("bob", "bio", 1, 0.2)]  # bob took bio in term 1 and again in term 3
    train, test = leave_one_out(data(rows))
    assert ("bob", "bio") in pairs(test) and ("bob", "bio") not in pairs(train)
    check_no_overlap(train, test)


def test_validation_is_carved_from_train_only():
    train, test = leave_one_out(data())
    fit, val = validation_split(train, "loo")
    assert pairs(fit) | pairs(val) == pairs(train)
    assert not pairs(val) & pairs(test)


def test_overlap_and_index_space_are_refused():
    d = data()
    with pytest.raises(DataError, match=r"both train and test.*'ann'"):
        check_no_overlap(d, d.subset(np.array([0])))
    other = data(student_ids=["ann", "bob", "cat", "dan", "eve"])
    with pytest.raises(DataError, match="different student/course id maps"):
        check_no_overlap(d, other)


# -- evaluation -----------------------------------------------------------------------------------------------


class Oracle:
    """Scores every training course of a student far above everything, then the held-out course."""

    predicts_grades = True

    def __init__(self, train: Interactions, test: Interactions) -> None:
        self.n_courses = train.n_courses
        self.scores = np.zeros((train.n_students, train.n_courses), dtype=np.float32)
        self.scores[train.students, train.courses] = 10.0
        self.scores[test.students, test.courses] = 5.0

    def predict(self, students, courses):
        return self.scores[students, courses] / 10

    def score_all(self, students):
        return self.scores[students]


def test_evaluator_refuses_overlap():
    d = data()
    _, test = leave_one_out(d)
    leaky_train = d  # still contains the held-out rows
    with pytest.raises(DataError, match="both train and test"):
        evaluate({"mean": B.GlobalMean().fit(leaky_train)}, leaky_train, test)


def test_full_catalogue_ranking_excludes_training_courses():
    train, test = temporal(data())  # ann has two held-out courses
    res = evaluate({"oracle": Oracle(train, test)}, train, test, k=1, n_negatives=0)
    # Training courses score 10 > 5 but are never ranked; ann's other held-out course is left out too.
    assert res.metrics["oracle"]["hr@1_full"] == 1.0
    assert res.metrics["oracle"]["ndcg@1_full"] == 1.0
    assert "hr@1_sampled" not in res.metrics["oracle"]


def test_sampled_negatives_avoid_taken_courses():
    d = data()
    train, test = leave_one_out(d)
    res = evaluate({"oracle": Oracle(train, test)}, train, test, k=1, n_negatives=1, seed=3)
    assert res.metrics["oracle"]["hr@1_sampled"] == 1.0
    # Given negatives are checked: bob's course 'art' (index 0) is a training course.
    bad = np.array([[3], [0], [0]])
    with pytest.raises(DataError, match="taken"):
        evaluate({"oracle": Oracle(train, test)}, train, test, negatives=bad)


def test_grade_metrics_and_json_result():
    d = data()
    train, test = random_split(d, 0.34, seed=0)
    models = {"mean": B.GlobalMean().fit(train), "pop": B.Popularity().fit(train)}
    res = evaluate(models, train, test, k=2, n_negatives=0, scale_range=4.0, step=0.1)
    mean = res.metrics["mean"]
    mu = float(train.grades.mean())
    assert mean["rmse"] == pytest.approx(4 * np.sqrt(np.mean((test.grades - mu) ** 2)), rel=1e-5)
    assert {"rmse", "mae", "within_step", "grade_ndcg", "spearman", "hr@2_full"} <= set(mean)
    assert "rmse" not in res.metrics["pop"]  # popularity does not predict grades
    text = json.dumps(res.to_dict(), allow_nan=False)
    assert '"mean"' in text and res.info["n_test"] == len(test)
    assert res.table().splitlines()[0].split()[:3] == ["model", "rmse", "mae"]


def test_model_trained_on_other_data_is_refused():
    train, test = leave_one_out(data())
    with pytest.raises(ModelError, match="not trained on this training set"):
        evaluate({"mean": B.GlobalMean().fit(data())}, train, test)
