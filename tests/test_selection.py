"""Next-term model selection (models/selection.py), `train --model`, and the served choice in `evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from checkerboard import checkerboard

from electives.data.interactions import Interactions
from electives.data.synth import SynthConfig, generate, write
from electives.models import selection as selection_module
from electives.models.artifact import load_model
from electives.models.config import TrainConfig
from electives.models.ensemble import Blend, Ensemble
from electives.models.pipeline import train_model
from electives.models.selection import select

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = TrainConfig(gmf_dim=8, mlp_dim=8, mlp_layers=(16, 8), lr=0.01, batch_size=64, epochs=12, patience=3)
AAST_FLAGS = [
    "--map", "student=student serial", "--map", "term=Year+term", "--map", "course=Crs Code",
    "--map", "course_name=Course Name", "--map", "grade=total", "--scale", "percent",
]  # fmt: skip
SMALL = ["--epochs", "4", "--lr", "0.01", "--gmf-dim", "8", "--mlp-dim", "8", "--mlp-layers", "16,8", "--quiet"]


def biases_only(n_students: int = 150, n_courses: int = 30, seed: int = 0) -> Interactions:
    """Grades that are a student effect plus a course effect plus noise: nothing for an interaction to find.
    16 grades a student over 4 terms."""
    rng = np.random.default_rng(seed)
    b_u, b_i = rng.normal(0, 0.1, n_students), rng.normal(0, 0.1, n_courses)
    rows = []
    for s in range(n_students):
        for j, c in enumerate(rng.choice(n_courses, 16, replace=False)):
            grade = float(np.clip(0.6 + b_u[s] + b_i[c] + rng.normal(0, 0.08), 0, 1))
            rows.append((f"s{s:03d}", f"c{c:02d}", 1 + j // 4, grade))
    return Interactions.from_frame(pd.DataFrame(rows, columns=["student", "course", "term", "grade"]))


def broken(error: Exception) -> type:
    """A model family whose every fit raises ``error``."""

    class Broken:
        def __init__(self, **settings: object) -> None:
            pass

        def fit(self, train: Interactions) -> None:
            raise error

    return Broken


def test_bias_data_chooses_the_bias_model() -> None:
    data = biases_only()
    sel = select(data, TINY, families=("bias", "knn", "neumf", "blend"))
    assert sel.split == "temporal" and len(sel.validation) > 0
    assert sel.family in ("bias", "blend"), sel.to_dict()
    if sel.family == "blend":  # a blend may only win with the bias model in it
        assert "bias" in next(c for c in sel.candidates if c.name == "blend").settings["second"]
    # Refitted on every training row: the artifact's fingerprint is the data's.
    assert sel.model.train_fingerprint == data.fingerprint()
    assert sel.validated.train_fingerprint == sel.fit_data.fingerprint()


def test_interaction_data_chooses_an_interaction_family() -> None:
    sel = select(checkerboard(n_students=80), TINY, families=("bias", "knn", "gmf"))
    assert sel.family in ("knn", "gmf"), sel.to_dict()
    rmse = {c.name: c.value for c in sel.candidates}
    assert rmse[sel.chosen] < 0.6 * min(v for k, v in rmse.items() if k.startswith("bias"))


def test_a_failing_candidate_is_reported_and_selection_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selection_module, "ItemKNN", broken(MemoryError("the similarity matrix does not fit")))
    logged: list[str] = []
    sel = select(biases_only(80), TINY, families=("bias", "knn"), log=logged.append)
    failed = sel.failed()
    assert [c.family for c in failed] == ["knn", "knn"]
    assert all("MemoryError: the similarity matrix does not fit" in (c.error or "") for c in failed)
    assert sel.family == "bias"
    assert any("knn(k=20,shrink=10)" in line and "failed: MemoryError" in line for line in logged)
    stored = sel.to_dict(100.0)
    assert {c["name"] for c in stored["candidates"] if "error" in c} == {c.name for c in failed}


def test_nothing_fits_names_every_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selection_module, "BiasModel", broken(ValueError("broken on purpose")))
    with pytest.raises(Exception, match=r"no model could be fitted.*bias\(λu=5,λc=3\): ValueError: broken on purpose"):
        select(biases_only(60), TINY, families=("bias",))


def test_ensemble_and_blend_are_built_from_the_neumf_candidate() -> None:
    data = checkerboard(n_students=60)
    sel = select(data, TINY, families=("ensemble", "blend"), ensemble_members=3)
    names = [c.name for c in sel.candidates]
    assert "neumf" in names and "ensemble" in names and "blend" in names
    assert sel.family in ("ensemble", "blend")
    ens = next(c for c in sel.candidates if c.name == "ensemble")
    assert ens.settings["members"] == 3 and ens.settings["seeds"] == [0, 1, 2]
    model = sel.model
    assert isinstance(model, Ensemble | Blend)
    out = model.score_all(np.arange(5))
    assert out.shape == (5, data.n_courses) and np.isfinite(out).all()


def test_same_seed_same_choice_and_model() -> None:
    data = checkerboard(n_students=60)
    a, b = (select(data, TINY, families=("knn", "gmf", "ensemble"), ensemble_members=2) for _ in range(2))
    assert a.chosen == b.chosen and [c.value for c in a.candidates] == [c.value for c in b.candidates]
    np.testing.assert_array_equal(a.model.score_all(np.arange(10)), b.model.score_all(np.arange(10)))


def test_train_model_selects_and_calibrates_the_winner_before_its_refit() -> None:
    data = biases_only(100)
    result = train_model(data, TINY, model="bias", progress=False)
    assert result.family == "bias" and result.fitted.family == "bias"
    assert result.selection is not None and {c.family for c in result.selection.candidates} == {"bias"}
    assert result.trained_on is data and result.validated is not None
    assert result.calibration is not None and 0 < result.metrics["val_rmse"] < 0.2
    assert result.metrics["refit_rows"] == len(data)


# -- CLI ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def university(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write(generate(SynthConfig(n_students=120, seed=7)), tmp_path_factory.mktemp("uni"))


def test_train_selects_by_default_and_stores_every_candidate(cli, secret_key, university, tmp_path) -> None:
    out = tmp_path / "m"
    code, stdout, err = cli("train", "--data", university["grades"], *AAST_FLAGS, *SMALL, "--out", out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    sel = manifest["model_selection"]
    families = {c["family"] for c in sel["candidates"]}
    assert families == {"neumf", "gmf", "mlp", "bias", "mf", "knn", "ensemble", "blend"}
    assert sel["validation"] == "each student's latest term"
    for c in sel["candidates"]:
        assert c["seconds"] >= 0 and (c.get("error") or 0 < c["val_rmse"] < 30)  # percent points
    best = min((c for c in sel["candidates"] if c["name"] != "blend" or "same_as" not in c["settings"]),
               key=lambda c: c["val_rmse"])  # fmt: skip
    assert sel["chosen"] == best["name"] and manifest["family"] == sel["family"] == best["family"]
    assert f"model selection chose {sel['chosen']}" in stdout
    assert load_model(out).family == sel["family"]


@pytest.mark.parametrize("family", ["bias", "knn", "gmf"])
def test_model_name_forces_the_family(cli, secret_key, university, tmp_path, family) -> None:
    out = tmp_path / "m"
    code, _, err = cli("train", "--data", university["grades"], *AAST_FLAGS, *SMALL, "--model", family, "--out", out)
    assert code == 0, err
    model = load_model(out)
    assert model.family == family and model.calibration is not None
    if family == "bias":  # through selection alone: only its own settings were compared
        assert {c["family"] for c in model.manifest["model_selection"]["candidates"]} == {"bias"}


def test_unknown_model_name_lists_the_valid_ones(cli, secret_key, university, tmp_path) -> None:
    code, _, err = cli("train", "--data", university["grades"], *AAST_FLAGS, "--model", "svd", "--out", tmp_path / "m")
    assert code == 2
    assert "invalid choice: 'svd'" in err
    assert "'auto', 'neumf', 'gmf', 'mlp', 'bias', 'mf', 'knn', 'ensemble', 'blend'" in err
    assert not (tmp_path / "m").exists()


def test_evaluate_reports_the_served_choice(cli, secret_key, university, tmp_path) -> None:
    report = tmp_path / "report"
    code, stdout, err = cli(
        "evaluate", "--data", university["grades"], *AAST_FLAGS, *SMALL, "--baselines", "bias,knn",
        "--eval-negatives", "0", "--out", report,
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads((report / "report.json").read_text())
    served = [name for name in doc["metrics"] if name.startswith("served choice (")]
    assert len(served) == 1 and served[0] in stdout
    chosen = doc["context"]["served_choice"]["chosen"]
    assert f"served choice: {chosen}" in stdout
    markdown = (report / "report.md").read_text()
    assert "## Served choice" in markdown and f"**{chosen}**" in markdown


def test_score_all_top_k_serves_any_family() -> None:
    from electives.models.baselines import BiasModel
    from electives.serving.scoring import top_k

    data = biases_only(40)
    model = BiasModel().fit(data)
    (chunk,) = list(top_k(model, 3, exclude=data.item_lookup()))
    scores = model.score_all(np.arange(data.n_students))
    scores[data.item_lookup().mask(np.arange(data.n_students))] = -np.inf
    np.testing.assert_array_equal(chunk.courses, np.argsort(-scores, axis=1, kind="stable")[:, :3])
    np.testing.assert_allclose(chunk.scores, np.take_along_axis(scores, chunk.courses, axis=1))
