"""Differentially private training (electives.models.privacy, `electives train --dp-epsilon`) and k-anonymity of cohort
figures: budgets are respected and recorded, bad settings are refused clearly, DP models serve like any other."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support import one_torch_thread, run_cli, secret_key_set

from electives.data.interactions import Interactions
from electives.data.synth import SynthConfig, generate, write
from electives.errors import ElectivesError
from electives.models.artifact import load_model
from electives.models.privacy import PrivacyConfig, default_delta, fit_private
from electives.models.training import TrainConfig
from electives.serving.recommender import Recommender

SYNTH_FLAGS = [
    "--map", "student=student serial", "--map", "term=Year+term", "--map", "course=Crs Code",
    "--map", "course_name=Course Name", "--map", "grade=total", "--scale", "percent",
]  # fmt: skip
TINY = ["--gmf-dim", "4", "--mlp-dim", "4", "--mlp-layers", "8", "--quiet"]
BUDGET = 2.0

# Tiny models: threads only add overhead, and the CPU is shared (restored after each test: other files share the
# worker process).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """150 synthetic students imported into SQLite and a DP model trained on them through the CLI."""
    root = tmp_path_factory.mktemp("dp")
    with secret_key_set(root) as mp:
        mp.delenv("WORLD_SIZE", raising=False)
        uni = write(generate(SynthConfig(n_students=150, n_courses=24, n_electives=12, n_departments=2, seed=5)), root)
        db = f"sqlite:///{root / 'e.db'}"
        code, _, err = run_cli("import", uni["grades"], "--db", db, *SYNTH_FLAGS, "--catalog", uni["catalog"])
        assert code == 0, err
        model = root / "model"
        # --batch-size ≥ the students: sampling rate 1, so the accounting (and this fixture) is quick.
        dp = ["--dp-epsilon", BUDGET, "--epochs", "4", "--batch-size", "200"]
        # A module fixture is set up before the tests' function-scoped one_torch_thread: one thread here too.
        with one_torch_thread():
            code, out, err = run_cli("train", "--db", db, "--out", model, *dp, *TINY)
        assert code == 0, err
        yield {"root": root, "db": db, "model": model, "grades": uni["grades"], "summary": out}


def test_dp_training_spends_at_most_the_budget_and_records_it(world) -> None:
    manifest = json.loads((world["model"] / "manifest.json").read_text())
    privacy = manifest["privacy"]
    assert 0 < privacy["epsilon"] <= BUDGET
    assert privacy["target_epsilon"] == BUDGET
    n_fit = len(manifest["student_ids"])  # every student has rows left in the fit split here (≥ 4 rows each)
    assert privacy["delta"] == pytest.approx(default_delta(n_fit)) and 0 < privacy["delta"] < 1 / n_fit
    assert privacy["max_grad_norm"] == 1.0 and privacy["noise_multiplier"] > 0
    assert privacy["accountant"] == "prv" and privacy["unit"] == "student"
    assert privacy["noise_source"] == "os-entropy"  # never a stored seed
    assert privacy["steps"] <= privacy["planned_steps"]
    shown = re.search(
        r"differential privacy \(per student\): ε = ([\d.]+) spent of 2, δ = ([\de.-]+)", world["summary"]
    )
    assert shown, world["summary"]
    assert float(shown[1]) == pytest.approx(privacy["epsilon"], abs=1e-3)
    assert float(shown[2]) == pytest.approx(privacy["delta"], rel=0.01)


def test_recorded_epsilon_matches_an_independent_accounting(world) -> None:
    from opacus.accountants import create_accountant

    privacy = json.loads((world["model"] / "manifest.json").read_text())["privacy"]
    accountant = create_accountant(mechanism=privacy["accountant"])
    assert privacy["mean_noise_multiplier"] > 0  # explicit mode: the noisy mean grade is part of the spend
    init = [(privacy["mean_noise_multiplier"], 1.0, 1)]
    accountant.history = [*init, (privacy["noise_multiplier"], privacy["sample_rate"], privacy["steps"])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eps = accountant.get_epsilon(delta=privacy["delta"])
    assert eps == pytest.approx(privacy["epsilon"], abs=1e-3)
    # Less noise for the same steps would have spent more than the budget: the calibration is not slack.
    accountant.history = [*init, (privacy["noise_multiplier"] * 0.9, privacy["sample_rate"], privacy["planned_steps"])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert accountant.get_epsilon(delta=privacy["delta"]) > BUDGET


def test_dp_model_loads_scores_and_recommends(world) -> None:
    model = load_model(world["model"])
    assert model.mode == "explicit" and model.calibration is not None
    with secret_key_set(world["root"]), Recommender.load(world["model"], world["db"]) as rec:
        student = _students(rec, world["grades"], limit=1)[0]
        recs = rec.recommend(student, k=3)
        assert len(recs) == 3 and all(0 <= r.points <= 100 for r in recs)
        entered = rec.recommend_for_grades([("CS101", "85"), ("MA101", "72")], k=3)
        assert len(entered) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dp-epsilon", "0"], "--dp-epsilon: '0' must be greater than 0"),
        (["--dp-epsilon", "-3"], "--dp-epsilon: '-3' must be greater than 0"),
        (["--dp-epsilon", "inf"], "ε must be finite (leave out --dp-epsilon for a non-private model)"),
        (["--dp-epsilon", "nan"], "--dp-epsilon: 'nan' must be greater than 0"),
        (["--dp-epsilon", "1", "--dp-delta", "0"], "--dp-delta: '0': δ must be between 0 and 1 (exclusive)"),
        (["--dp-epsilon", "1", "--dp-delta", "1"], "--dp-delta: '1': δ must be between 0 and 1 (exclusive)"),
        (["--dp-epsilon", "1", "--dp-max-grad-norm", "0"], "--dp-max-grad-norm: '0' must be greater than 0"),
        (["--dp-epsilon", "1", "--model", "auto"], "--dp-epsilon cannot be combined with --model auto"),
        (["--dp-epsilon", "1", "--pretrain"], "DP training does not support --pretrain"),
        (["--dp-epsilon", "1", "--refit"], "--dp-epsilon cannot be combined with --refit"),
    ],
)
def test_bad_dp_flags_are_refused_clearly(world, tmp_path, args, message) -> None:
    code, _, err = run_cli("train", "--db", world["db"], "--out", tmp_path / "m", *TINY, *args)
    assert code == 2
    assert message in err
    assert not (tmp_path / "m").exists()


def test_dp_under_torchrun_is_refused(world, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = run_cli("train", "--db", world["db"], "--out", tmp_path / "m", "--dp-epsilon", "1")
    assert code == 2 and "--dp-epsilon cannot be used with distributed training (torchrun)" in err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": 0.0}, "ε must be a finite number greater than 0"),
        ({"epsilon": float("inf")}, "ε must be a finite number greater than 0"),
        ({"epsilon": 1.0, "delta": 1.5}, "δ must be between 0 and 1"),
        ({"epsilon": 1.0, "max_grad_norm": -1.0}, "max_grad_norm (clipping bound C) must be greater than 0"),
    ],
)
def test_privacy_config_is_checked(kwargs, message) -> None:
    with pytest.raises(ElectivesError) as err:
        PrivacyConfig(**kwargs)
    assert message in str(err.value)


def test_default_delta_is_below_one_over_n() -> None:
    assert default_delta(443) == 1e-5
    assert default_delta(10**6) == pytest.approx(1e-6**1.1)
    assert default_delta(10**6) < 1e-6


def _tiny(mode: str = "explicit") -> Interactions:
    """40 students × 12 courses, 8 grades each: a grade that rises with (student + course) parity is learnable."""
    rng = np.random.default_rng(3)
    s = np.repeat(np.arange(40), 8)
    c = np.concatenate([rng.choice(12, 8, replace=False) for _ in range(40)])
    g = np.where((s + c) % 2 == 0, 0.85, 0.45).astype(np.float32) if mode == "explicit" else None
    ids = tuple(f"p{i:02d}" for i in range(40)), tuple(f"C{i:02d}" for i in range(12))
    return Interactions(s, c, g, np.zeros(len(s), dtype=np.int64), *ids)


# Batches of every student (sampling rate 1) keep the accounting instant; one test samples (rate 0.1).
SMALL = TrainConfig(gmf_dim=4, mlp_dim=4, mlp_layers=(8,), epochs=3, batch_size=64, validation="random")


def test_same_noise_seed_same_model_and_other_noise_other_model() -> None:
    data = _tiny()
    budget = PrivacyConfig(epsilon=4.0, accountant="rdp")
    a, ra = fit_private(data, SMALL, budget, progress=False, noise_seed=1)
    b, _ = fit_private(data, SMALL, budget, progress=False, noise_seed=1)
    c, _ = fit_private(data, SMALL, budget, progress=False, noise_seed=2)
    s = np.arange(40)
    np.testing.assert_array_equal(a.score_all(s), b.score_all(s))
    assert not np.allclose(a.score_all(s), c.score_all(s))
    assert ra.noise_source == "seeded" and ra.epsilon <= 4.0
    assert ra.steps == ra.planned_steps == 3 * round(1 / ra.sample_rate)
    # The weights are clean: no Opacus hooks or per-sample gradients are left on the returned model.
    assert all(getattr(p, "grad_sample", None) is None for p in a.model.parameters())
    assert not any(k.startswith("_module") for k in a.model.state_dict())


def test_early_stopping_spends_less_than_the_budget() -> None:
    data = _tiny()
    config = TrainConfig(**{**SMALL.__dict__, "epochs": 30, "patience": 1, "batch_size": 4})
    _, report = fit_private(data, config, PrivacyConfig(epsilon=2.0, accountant="rdp"), progress=False, noise_seed=0)
    assert report.sample_rate < 0.2 and report.steps % round(1 / report.sample_rate) == 0
    assert report.steps < report.planned_steps
    assert report.epsilon < 2.0


def test_implicit_mode_trains_privately() -> None:
    data = _tiny("implicit")
    config = TrainConfig(mode="implicit", gmf_dim=4, mlp_dim=4, mlp_layers=(8,), epochs=2, batch_size=64)
    fitted, report = fit_private(data, config, PrivacyConfig(epsilon=3.0, accountant="rdp"), progress=False)
    assert fitted.config.mode == "implicit" and fitted.val_metric_name == "hr@10"
    assert 0 < report.epsilon <= 3.0 and report.noise_source == "os-entropy"
    assert np.isfinite(fitted.score_all(np.arange(40))).all()


# ----------------------------------------------------------------------------------------------- k-anonymity


def test_min_cohort_below_five_is_an_error(world) -> None:
    model = load_model(world["model"])
    for bad in (4, 0, -1):
        with pytest.raises(ElectivesError, match="must be a whole number of at least 5"):
            Recommender(model, min_cohort=bad)


def test_cohort_figures_respect_min_cohort(world) -> None:
    with secret_key_set(world["root"]):
        sizes: dict[int, list[int]] = {}
        students: list[str] = []
        for k in (5, 10, 40):
            with Recommender.load(world["model"], world["db"], min_cohort=k) as rec:
                assert rec.min_cohort == k
                students = students or _students(rec, world["grades"])
                recs = [r for student in students for r in rec.recommend(student, k=5)]
                sizes[k] = [r.cohort.size for r in recs if r.cohort is not None]
                for r in recs:
                    if r.cohort is None:
                        assert r.explanation is None or "students with records like yours" not in r.explanation
        assert sizes[5], "some cohort figure should be shown at the smallest threshold (else this test proves nothing)"
        assert all(n >= 10 for n in sizes[10]) and all(n >= 40 for n in sizes[40])
        assert len(sizes[40]) <= len(sizes[10]) <= len(sizes[5])
    with Recommender(load_model(world["model"])) as default:
        assert default.min_cohort == 10


def _students(rec: Recommender, grades: Path, need: int = 3, limit: int = 8) -> list[str]:
    """Up to `limit` students of the export with at least `need` eligible courses."""
    import pandas as pd

    found = []
    for student in pd.read_csv(grades, dtype=str)["student serial"].drop_duplicates():
        if rec.recommend(str(student), k=1).eligible >= need:
            found.append(str(student))
            if len(found) == limit:
                return found
    assert found, f"no student with {need} eligible courses in the synthetic university"
    return found
