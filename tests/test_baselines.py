"""Baselines: hand-computed fits, recovery of a known structure, one fit/predict/score_all interface."""

import numpy as np
import pandas as pd
import pytest
from checkerboard import checkerboard, unseen_auc

from electives.data.interactions import Interactions
from electives.data.splits import random_split
from electives.errors import DataError, ModelError
from electives.models import baselines as B
from electives.models.artifact import load_model, save_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def frame(rows, ids=None):
    df = pd.DataFrame(rows, columns=["student", "course", "grade"])
    return Interactions.from_frame(df, *(ids or (None, None)))


SMALL = [("a", "x", 1.0), ("a", "y", 0.5), ("b", "x", 0.0), ("c", "z", 0.9)]


def test_means():
    data = frame(SMALL)  # students a b c, courses x y z
    assert B.GlobalMean().fit(data).predict(np.array([0, 2]), np.array([1, 0])).tolist() == pytest.approx([0.6, 0.6])
    sm = B.StudentMean().fit(data)
    assert sm.predict(np.array([0, 1, 2]), np.zeros(3, int)).tolist() == pytest.approx([0.75, 0.0, 0.9])
    cm = B.CourseMean().fit(data)
    assert cm.predict(np.zeros(3, int), np.array([0, 1, 2])).tolist() == pytest.approx([0.5, 0.5, 0.9])
    # Shrinkage: course x with reg 2 → μ + Σ(r − μ) / (n + 2) = 0.6 + (0.4 − 0.6) / 4.
    assert B.CourseMean(reg=2).fit(data).predict(np.zeros(1, int), np.zeros(1, int))[0] == pytest.approx(0.55)


def test_bias_model_one_step_by_hand():
    data = frame(SMALL)
    m = B.BiasModel(reg_student=1.0, reg_course=1.0, iterations=1).fit(data)
    # b_i = Σ(r − μ)/(1 + n_i): x: (0.4 − 0.6)/3, y: −0.1/2, z: 0.3/2
    assert m.bi.tolist() == pytest.approx([-0.2 / 3, -0.05, 0.15])
    # b_u = Σ(r − μ − b_i)/(1 + n_u): a: (0.4 + 0.2/3 − 0.1 + 0.05)/3
    assert m.bu[0] == pytest.approx((0.4 + 0.2 / 3 - 0.1 + 0.05) / 3)


def test_bias_model_recovers_additive_grades():
    rng = np.random.default_rng(0)
    bu, bi = rng.uniform(-0.2, 0.2, 30), rng.uniform(-0.2, 0.2, 12)
    rows = [(f"s{u}", f"c{i}", 0.5 + bu[u] + bi[i]) for u in range(30) for i in range(12) if rng.random() < 0.7]
    data = frame(rows)
    m = B.BiasModel(reg_student=0.0, reg_course=0.0, iterations=100).fit(data)
    assert np.abs(m.predict(data.students, data.courses) - data.grades).max() < 1e-3


@pytest.mark.parametrize(
    "model",
    [
        B.MatrixFactorization(factors=8, epochs=40, lr=0.05, batch_size=16, reg=0.01),
        B.ItemKNN(k=10),
        B.BiasModel(),
    ],
    ids=["mf", "knn", "bias"],
)
def test_explicit_baselines_on_checkerboard(model):
    data = checkerboard()
    train, test = random_split(data, 0.2, seed=1)
    model.fit(train)
    assert model.predicts_grades
    auc = unseen_auc(model, data, train)
    if isinstance(model, B.BiasModel):
        assert 0.3 < auc < 0.7  # additive biases cannot express a group × group interaction
    else:
        assert auc > 0.95
        pred = model.predict(test.students, test.courses)
        assert np.sqrt(np.mean((pred - test.grades) ** 2)) < 0.15


@pytest.mark.parametrize(
    "model",
    [
        B.MatrixFactorization(factors=8, epochs=30, lr=0.05, batch_size=16, mode="implicit"),
        B.ItemKNN(k=10, mode="implicit"),
        B.EASE(lam=10),
    ],
    ids=["mf", "knn", "ease"],
)
def test_implicit_baselines_on_checkerboard(model):
    data = checkerboard(implicit=True)
    model.fit(data)
    assert not model.predicts_grades
    assert unseen_auc(model, data, data) > 0.9


ALL = [
    B.GlobalMean(),
    B.StudentMean(),
    B.CourseMean(),
    B.BiasModel(),
    B.MatrixFactorization(factors=4, epochs=2),
    B.MatrixFactorization(factors=4, epochs=2, mode="implicit"),
    B.ItemKNN(k=5),
    B.ItemKNN(k=5, mode="implicit"),
    B.Popularity(),
    B.EASE(lam=10),
]


@pytest.mark.parametrize("model", ALL, ids=lambda m: type(m).__name__ + getattr(m, "mode", ""))
def test_predict_agrees_with_score_all(model):
    data = checkerboard()
    model.fit(data)
    students = np.array([0, 5, 17])
    full = model.score_all(students)
    assert full.shape == (3, data.n_courses)
    pairs = model.predict(np.repeat(students, data.n_courses), np.tile(np.arange(data.n_courses), 3))
    np.testing.assert_allclose(full.ravel(), pairs, rtol=1e-5, atol=1e-6)
    assert model.train_fingerprint == data.fingerprint()


def test_popularity_counts_distinct_students():
    data = frame([("a", "x", 1.0), ("a", "x", 0.5), ("b", "x", 0.2), ("b", "y", 0.3), ("c", "z", np.nan)])
    pop = B.Popularity().fit(data)
    assert pop.score_all(np.array([0]))[0].tolist() == pytest.approx([1.0, 0.5, 0.5])


def test_ease_by_hand():
    # Items 0 and 1 always co-occur. λ = 1: G = XᵀX + I = [[3,2,0],[2,3,0],[0,0,2]], P = G⁻¹ has
    # P₀₀ = P₁₁ = 3/5, P₀₁ = −2/5, so B₀₁ = −P₀₁/P₁₁ = 2/3; item 2 is unrelated.
    data = frame([("u", "i0", 1), ("u", "i1", 1), ("v", "i0", 1), ("v", "i1", 1), ("w", "i2", 1)])
    ease = B.EASE(lam=1.0).fit(data)
    np.testing.assert_allclose(ease.B, [[0, 2 / 3, 0], [2 / 3, 0, 0], [0, 0, 0]], atol=1e-6)


def test_grade_baselines_need_grades():
    with pytest.raises(DataError):
        B.BiasModel().fit(checkerboard(implicit=True))


@pytest.mark.parametrize("model", ALL, ids=lambda m: type(m).__name__ + getattr(m, "mode", ""))
def test_every_baseline_saves_loads_and_folds_in(model, tmp_path):
    """Every baseline is a registered Model: the artifact gives back the same outputs, and a trained student's
    own history folded in scores like the trained student (exactly where the vector is built from the history)."""
    data = checkerboard(implicit=model.mode == "implicit")
    model.fit(data)
    save_model(tmp_path / "m", model, data, scale=None)
    loaded = load_model(tmp_path / "m").fitted
    assert type(loaded) is type(model) and loaded.mode == model.mode
    everyone = np.arange(data.n_students)
    np.testing.assert_array_equal(loaded.score_all(everyone), model.score_all(everyone))
    u = 4
    rows = np.flatnonzero(data.students == u)
    grades = data.grades if data.grades is not None else np.ones(len(data))
    fold = loaded.fold_in({int(data.courses[r]): float(np.nan_to_num(grades[r], nan=1.0)) for r in rows})
    assert fold.grades_used == len(rows)
    trained = model.scores(model.student_vectors()[u])
    np.testing.assert_allclose(trained, model.score_all(np.array([u]))[0], atol=1e-5)
    if isinstance(model, B.ItemKNN | B.EASE | B.GlobalMean | B.CourseMean | B.Popularity | B.BiasModel):
        np.testing.assert_allclose(loaded.scores(fold.embedding), trained, atol=1e-5)
    arrays, params = model.state()
    if arrays:
        with pytest.raises(ModelError, match="missing"):
            type(model).from_state(dict(list(arrays.items())[1:]), params)
    with pytest.raises(ModelError, match="mode"):
        type(model).from_state(arrays, {k: v for k, v in params.items() if k != "mode"})


def test_implicit_mf_fold_in_orders_a_new_students_courses():
    """Implicit MF folds in by Newton steps on the log loss: a held-out student from 4 courses taken ranks the
    unseen courses of their own group first."""
    data = checkerboard(implicit=True, n_students=80)
    new = data.students >= 60
    model = B.MatrixFactorization(factors=8, epochs=30, lr=0.05, batch_size=16, mode="implicit").fit(data.subset(~new))
    group = np.array([int(c[1:]) % 2 for c in data.course_ids])
    wins = total = 0
    for u in range(60, 80):
        taken = data.courses[data.students == u][:4]
        fold = model.fold_in({int(c): 1.0 for c in taken})
        assert 1 <= fold.iterations <= 8 and fold.grades_used == 4
        scores = model.scores(fold.embedding)
        unseen = ~np.isin(np.arange(data.n_courses), taken)
        good, bad = scores[unseen & (group == u % 2)], scores[unseen & (group != u % 2)]
        wins += (good[:, None] > bad[None, :]).sum()
        total += good.size * bad.size
    assert wins / total > 0.9
