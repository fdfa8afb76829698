"""Implicit-mode selection (models/implicit_selection.py), `train --mode implicit` and serving its choice."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from electives.data.interactions import Interactions
from electives.data.splits import leave_one_out
from electives.errors import DataError, ModelError
from electives.evaluation.evaluate import evaluate
from electives.models import implicit_selection as module
from electives.models.artifact import load_model
from electives.models.baselines import EASE, IALS, Popularity
from electives.models.config import TrainConfig
from electives.models.ensemble import Blend, standardise
from electives.models.implicit_selection import select_implicit
from electives.models.selection import Tried
from electives.serving.recommender import Recommender

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = TrainConfig(
    mode="implicit", gmf_dim=8, mlp_dim=8, mlp_layers=(16, 8), lr=0.01, batch_size=64, epochs=3, patience=2
)
TINY_FLAGS = ["--epochs", "3", "--lr", "0.01", "--gmf-dim", "8", "--mlp-dim", "8", "--mlp-layers", "16,8"]


def groups(n_students: int = 90, n_courses: int = 24, seed: int = 0) -> Interactions:
    """Three groups of students, each taking 6 of its own 8 courses, in order (the last row is the newest), and
    some taking one course of the next group (noise): a family that learned anything ranks own-group courses first."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_students):
        g = s % 3
        taken = list(rng.choice(8, 6, replace=False) + 8 * g)
        if s % 4 == 0:
            taken.insert(0, int(rng.integers(0, 8)) + 8 * ((g + 1) % 3))
        rows += [(f"s{s:03d}", f"c{c:02d}", t) for t, c in enumerate(taken)]
    return Interactions.from_frame(pd.DataFrame(rows, columns=["student", "course", "term"]))


def test_selection_validates_on_each_students_newest_course_and_refits_the_winner() -> None:
    data = groups()
    logged: list[str] = []
    sel = select_implicit(data, TINY, log=logged.append)
    fit_part, val = leave_one_out(data)
    assert sel.split == "loo" and sel.metric == "val_ndcg_at_10_sampled"
    np.testing.assert_array_equal(sel.validation.courses, val.courses)  # each student's newest course
    names = [c.name for c in sel.candidates]
    per_course = len(fit_part) / data.n_courses  # λ: ½, 1, 2, 4 and 8 × the mean enrolments of a course
    assert names[:5] == [f"ease(λ={float(f'{f * per_course:.3g}'):g})" for f in (0.5, 1, 2, 4, 8)]
    assert {c.family for c in sel.candidates} == {"ease", "ials", "neumf", "ensemble", "blend"}
    chosen = next(c for c in sel.candidates if c.name == sel.chosen)
    # The best sampled NDCG@10 among those that rank the catalogue as well as the best single candidate.
    floor = max(c.figures["val_hr_at_10_full"] for c in sel.candidates if c.value is not None and c.family != "blend")
    admitted = [c for c in sel.candidates if c.value is not None and c.figures["val_hr_at_10_full"] >= floor]
    assert chosen in admitted and chosen.value == max(c.value for c in admitted)
    # The known answer: the groups. Popularity (no group) finds the newest course in its top 10 about 10 times
    # in 17; the chosen family every time.
    popular = evaluate({"p": Popularity().fit(fit_part)}, fit_part, val, n_negatives=0).metrics["p"]
    assert popular["hr@10_full"] < 0.8 and chosen.figures["val_hr_at_10_full"] > 0.95
    # Refitted on every row; the validated model is the one fitted on the fit part.
    assert sel.model.train_fingerprint == data.fingerprint()
    assert sel.validated.train_fingerprint == fit_part.fingerprint()
    doc = sel.to_dict()
    assert doc["metric"] == "val_ndcg_at_10_sampled" and doc["validation"] == "each student's newest course"
    assert all("val_ndcg_at_10_full" in c for c in doc["candidates"] if not c.get("error"))
    assert any("chose " + sel.chosen in line for line in logged)


def test_an_ensemble_is_fitted_only_when_its_neumf_is_near_the_best() -> None:
    barely = replace(TINY, epochs=1, lr=1e-5)  # a NeuMF that has learned nothing yet
    sel = select_implicit(groups(), barely, families=("ease", "neumf", "ensemble"), ensemble_members=2)
    ensemble = next(c for c in sel.candidates if c.name == "ensemble")
    assert ensemble.error is None and ensemble.value is None
    assert ensemble.skipped is not None and ensemble.skipped.startswith("NeuMF is more than 5% behind ease")
    assert sel.to_dict()["candidates"][-1]["skipped"] == ensemble.skipped
    # Asked for by name, it is fitted all the same.
    sel = select_implicit(groups(), barely, families=("ensemble",), ensemble_members=2)
    assert sel.family == "ensemble" and len(sel.model.members) == 2
    assert [c.name for c in sel.candidates] == ["neumf", "ensemble"]


def test_blend_is_z_scored_and_weighed_on_validation() -> None:
    sel = select_implicit(groups(), TINY, families=("blend",))
    # Forced: blended from the two cheap families only (no NeuMF is fitted for it).
    assert {c.family for c in sel.candidates} == {"ease", "ials", "blend"} and sel.family == "blend"
    blend = sel.model
    assert isinstance(blend, Blend) and blend.standardised
    settings = next(c for c in sel.candidates if c.name == "blend").settings
    assert [n.split("(")[0] for n in settings["members"]] == ["ease", "ials"]
    np.testing.assert_allclose(blend.weights, settings["weights"])
    assert 0 < settings["weights"][0] < 1 and sum(settings["weights"]) == pytest.approx(1.0)
    # Each member's scores are z-scored per student before they are weighed.
    a, b = blend.members
    z = [
        (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
        for x in (a.score_all(np.arange(4)), b.score_all(np.arange(4)))
    ]
    expected = settings["weights"][0] * z[0] + settings["weights"][1] * z[1]
    np.testing.assert_allclose(blend.score_all(np.arange(4)), expected, rtol=1e-4, atol=1e-4)


def test_a_blend_of_three_weighs_each_z_scored_member_and_loads_back() -> None:
    data = groups()
    members = [EASE(lam=5.0).fit(data), IALS(factors=8, reg=0.01, seed=0).fit(data), EASE(lam=50.0).fit(data)]
    blend = Blend.mix(members, [0.5, 0.3, 0.2], standardised=True)
    z = [standardise(m.score_all(np.arange(6))) for m in members]
    np.testing.assert_allclose(blend.score_all(np.arange(6)), 0.5 * z[0] + 0.3 * z[1] + 0.2 * z[2], atol=1e-5)
    arrays, params = blend.state()
    again = Blend.from_state(arrays, json.loads(json.dumps(params)))
    assert [m.family for m in again.members] == ["ease", "ials", "ease"] and again.standardised
    np.testing.assert_allclose(again.score_all(np.arange(6)), blend.score_all(np.arange(6)), atol=1e-6)
    with pytest.raises(ModelError, match="two or more members"):
        Blend.mix(members[:1], [1.0])


def test_the_blend_grid_takes_one_candidate_per_group_on_the_simplex() -> None:
    grid = module.blend_grid([["e1", "e2"], ["i"], ["n"]])
    pairs, triples = [m for m in grid if len(m) == 2], [m for m in grid if len(m) == 3]
    # Pairs first: (e1|e2, i), (e1|e2, n), (i, n), each at w = 0.1 … 0.9; then 2 triples × the 36 interior points.
    assert grid[: len(pairs)] == pairs and len(pairs) == 5 * 9 and len(triples) == 2 * 36
    assert grid[0] == (("e1", 0.1), ("i", 0.9)) and grid[8] == (("e1", 0.9), ("i", 0.1))
    assert all(np.isclose(sum(w for _, w in m), 1.0) and min(w for _, w in m) >= 0.1 - 1e-12 for m in grid)
    assert len({tuple(n for n, _ in m) for m in triples}) == 2 and len(set(grid)) == len(grid)
    assert module.blend_grid([["a", "b"]]) == []  # one group: nothing to blend


def test_the_served_choice_ranks_the_catalogue_as_well_as_the_best_single_candidate() -> None:
    def tried(name: str, family: str, ndcg: float, full_hr: float) -> Tried:
        figures = {module.METRIC: ndcg, module.FULL_HR: full_hr}
        return Tried(name, family, {}, ndcg, 1.0, metric=module.METRIC, figures=figures)

    ease, ials = tried("ease(λ=1)", "ease", 0.45, 0.107), tried("ials", "ials", 0.46, 0.101)
    low, high = tried("blend", "blend", 0.47, 0.106), tried("blend", "blend", 0.465, 0.108)
    everything = ("ease", "ials", "blend")
    # The best sampled NDCG, iALS, ranks the catalogue worse than EASE: EASE, unless a blend reaches EASE's HR@10.
    assert module.served_choice([ease, ials, low], everything, {"ease(λ=1)", "ials", "blend"}) == (ease, 0.107)
    assert module.served_choice([ease, ials, high], everything, {"ease(λ=1)", "ials", "blend"}) == (high, 0.107)
    # The floor is over the families asked for; a blend asked for alone is held to every fitted candidate's.
    assert module.served_choice([ease, ials, low], ("ials", "blend"), {"ease(λ=1)", "ials", "blend"})[0] == low
    assert module.served_choice([ease, ials, high], ("blend",), {"ease(λ=1)", "ials", "blend"}) == (high, 0.107)
    with pytest.raises(DataError, match="no model could be fitted"):
        module.served_choice([tried("ials", "ials", 0.46, 0.101)], ("ease",), {"ials"})


@pytest.mark.parametrize("family", ["ease", "ials"])
def test_a_forced_family_compares_only_its_own_settings(family: str) -> None:
    data = groups(seed=1)
    sel = select_implicit(data, TINY, families=(family,))
    assert {c.family for c in sel.candidates} == {family} and sel.family == family == sel.model.family
    assert sel.model.train_fingerprint == data.fingerprint()


def test_a_failing_candidate_is_reported_and_selection_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def __init__(self, **settings: object) -> None:
            pass

        def fit(self, train: Interactions) -> None:
            raise MemoryError("the factors do not fit")

    monkeypatch.setattr(module, "IALS", Broken)
    sel = select_implicit(groups(), TINY, families=("ease", "ials", "blend"))
    failed = [c for c in sel.candidates if c.family == "ials"]
    assert failed and all(c.error == "MemoryError: the factors do not fit" for c in failed)
    assert sel.family == "ease"  # the blend had one family only
    assert (
        next(c for c in sel.candidates if c.name == "blend").error == "fewer than two families could be fitted to blend"
    )


def test_same_seed_same_choice_and_model() -> None:
    data = groups(seed=2)
    a, b = (select_implicit(data, TINY, families=("ease", "ials", "blend")) for _ in range(2))
    assert a.chosen == b.chosen and [c.value for c in a.candidates] == [c.value for c in b.candidates]
    np.testing.assert_array_equal(a.model.score_all(np.arange(10)), b.model.score_all(np.arange(10)))


def test_bad_input_is_refused() -> None:
    with pytest.raises(DataError, match="bias does not rank enrolments"):
        select_implicit(groups(), TINY, families=("bias",))
    with pytest.raises(DataError, match="mode='implicit'"):
        select_implicit(groups(), TrainConfig())
    singles = Interactions.from_frame(pd.DataFrame({"student": ["a", "b"], "course": ["x", "y"]}))
    with pytest.raises(DataError, match="no student has two courses"):
        select_implicit(singles, TINY)


# -- the command line and serving -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def enrolments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = groups(n_students=120, seed=4).to_frame()
    path = tmp_path_factory.mktemp("enrol") / "enrolments.csv"
    path.write_text("".join(f"{s},{c}\n" for s, c in zip(data["student"], data["course"], strict=True)))
    return path


def test_train_implicit_chooses_by_default_and_serves_the_choice(cli, secret_key, enrolments, tmp_path) -> None:
    out = tmp_path / "m"
    flags = ["--no-header", "--columns", "student,course", "--mode", "implicit", *TINY_FLAGS, "--quiet"]
    code, stdout, err = cli("train", "--data", enrolments, *flags, "--out", out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    sel = manifest["model_selection"]
    assert sel["metric"] == "val_ndcg_at_10_sampled" and sel["validation"] == "each student's newest course"
    assert {c["family"] for c in sel["candidates"]} == {"ease", "ials", "neumf", "ensemble", "blend"}
    assert manifest["family"] == sel["family"] in ("ease", "ials", "blend")
    assert f"model selection chose {sel['chosen']}" in stdout
    model = load_model(out)
    assert model.mode == "implicit" and model.calibration is None
    assert model.manifest["metrics"]["refit_rows"] == 120 * 6 + 30  # refitted on every enrolment
    # Served: a student who took 4 courses of group 1 gets group 1's other courses first.
    rec = Recommender(model)
    recs = rec.recommend_for_grades([("c08", "1"), ("c09", "1"), ("c10", "1"), ("c11", "1")], k=4)
    assert recs.mode == "implicit" and recs.grades_used == 4
    assert {item.course for item in recs} == {"c12", "c13", "c14", "c15"}
    # score and score-all read it like any other model.
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("s001\tc09\ns001\tc20\n")
    code, _, err = cli("score", out, "--pairs", pairs, "--out", tmp_path / "scored.tsv")
    assert code == 0, err
    scored = (tmp_path / "scored.tsv").read_text().splitlines()
    own, other = (float(line.split("\t")[-1]) for line in scored[-2:])
    assert own > other  # s001 is in group 1 (courses c08–c15)
    code, _, err = cli("score-all", out, "--out", tmp_path / "top.parquet", "-k", "3")
    assert code == 0, err
    top = pd.read_parquet(tmp_path / "top.parquet")
    assert len(top) == 120 * 3


@pytest.mark.parametrize(
    ("mode", "family", "message"),
    [
        ("implicit", "bias", "--model bias predicts grades: use --mode explicit"),
        ("explicit", "ials", "--model ials ranks enrolments and predicts no grade: use --mode implicit"),
    ],
)
def test_a_family_of_the_other_mode_is_refused(cli, secret_key, enrolments, tmp_path, mode, family, message) -> None:
    flags = ["--no-header", "--columns", "student,course", "--mode", mode, "--model", family]
    code, _, err = cli("train", "--data", enrolments, *flags, "--out", tmp_path / "m")
    assert code == 2 and message in err
    assert not (tmp_path / "m").exists()
