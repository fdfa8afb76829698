"""Every servable family is served the same way: recommendations for a trained student, for one only in the
database (folded in from the stored grades) and for entered grades, with eligibility, intervals, explanations and
why-not — through the artifact, as in production."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_recommender import World, build_world

from electives.models.artifact import load_model, save_model
from electives.models.baselines import BiasModel, ItemKNN, MatrixFactorization
from electives.models.calibration import fit_conformal
from electives.serving.recommender import Recommender

FAMILIES = {
    "bias": lambda: BiasModel(),
    "mf": lambda: MatrixFactorization(factors=16, epochs=20, seed=0),
    "knn": lambda: ItemKNN(k=10),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("families"))


@pytest.fixture(scope="module")
def served(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    names = dict(zip(world.result.frame["course"], world.result.frame["course_name"], strict=True))
    for family, make in FAMILIES.items():
        fitted = make().fit(world.train)
        residuals = world.train.grades - fitted.predict(world.train.students, world.train.courses)
        out[family] = save_model(
            tmp_path_factory.mktemp(family) / "model",
            fitted,
            world.train,
            scale=world.result.scale,
            course_names=names,
            calibration=fit_conformal(residuals, 0.8),
            metrics={"val_rmse": float(np.sqrt(np.mean(residuals**2))) * 100},
        )
    return out


def _first_grades(world: World, raw_id: str, n: int = 5) -> list[tuple[str, str]]:
    """A student's first ``n`` grades by term: a record early in their studies, with electives still open."""
    rows = world.result.frame[world.result.frame["student"] == world.key.pseudonym(raw_id)].sort_values("term_key")
    return list(zip(rows["course"], rows["mark"], strict=True))[:n]


def _with_open_electives(rec: Recommender, ids: list[str]) -> str:
    """The first of ``ids`` with an elective still open (most of this small university's students have none)."""
    return next(s for s in ids if len(rec.recommend(s, k=1)))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_recommends_for_known_db_only_and_entered_students(
    family: str, world: World, served: dict[str, Path]
) -> None:
    model = load_model(served[family])
    assert model.family == family
    with Recommender(model, world.catalog, None, world.key) as rec:
        grades = _first_grades(world, str(world.university.student_ids[0]))
        answer = rec.recommend_for_grades(grades, k=3)
    assert answer.basis == "folded-in" and answer.grades_used == len(grades) and len(answer) == 3
    scores = [r.score for r in answer]
    assert scores == sorted(scores, reverse=True)
    taken = {course for course, _ in grades}
    for item in answer:
        assert item.course not in taken or item.course in {c for c, g in grades if float(g) < 60}
        assert item.interval is not None and item.interval[0] <= item.points <= item.interval[1]
        assert item.explanation
    if family == "bias":
        assert not any(item.similar for item in answer)  # the bias model has no view of course similarity
    else:
        assert any(item.similar for item in answer)
    not_recommended = next(c for c in rec.course_ids if c not in answer.courses and c not in taken)
    assert answer.why_not(not_recommended).reason


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_serves_students_on_record(family: str, world: World, served: dict[str, Path]) -> None:
    with Recommender.load(served[family], world.db_url, catalog=world.catalog, pseudonymiser=world.key) as rec:
        in_model = [str(s) for s in world.university.student_ids if str(s) not in world.db_only]
        trained = rec.recommend(_with_open_electives(rec, in_model), k=1)
        db_only = rec.recommend(_with_open_electives(rec, world.db_only), k=1)
    assert trained.basis == "trained" and db_only.basis == "folded-in" and db_only.grades_used > 0
    assert trained.items[0].interval is not None and db_only.items[0].explanation
