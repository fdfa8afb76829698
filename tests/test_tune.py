"""Optuna tuning, `electives tune`, `train --config` and `train --model auto`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from electives.data.interactions import Interactions
from electives.data.splits import validation_split
from electives.data.synth import SynthConfig, generate, write
from electives.errors import DataError
from electives.models.training import TrainConfig, fit
from electives.models.tuning import config_values, tune, validation_value

AAST_FLAGS = [
    "--map", "student=student serial", "--map", "term=Year+term", "--map", "course=Crs Code",
    "--map", "course_name=Course Name", "--map", "grade=total", "--scale", "percent",
]  # fmt: skip
SMALL_FLAGS = ["--epochs", "4", "--lr", "0.01", "--gmf-dim", "8", "--mlp-dim", "8", "--mlp-layers", "16,8"]
SMALL = TrainConfig(gmf_dim=8, mlp_dim=8, mlp_layers=(16, 8), lr=0.01, batch_size=64, epochs=8, patience=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def checkerboard(n_students: int = 40, n_courses: int = 16, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_students):
        for c in rng.choice(n_courses, 9, replace=False):
            grade = (0.85 if c % 2 == s % 2 else 0.3) + rng.normal(0, 0.03)
            rows.append((f"s{s:02d}", f"c{c:02d}", int(rng.integers(1, 4)), float(np.clip(grade, 0, 1))))
    return Interactions.from_frame(pd.DataFrame(rows, columns=["student", "course", "term", "grade"]))


@pytest.fixture(scope="module")
def university(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write(generate(SynthConfig(n_students=100, seed=4)), tmp_path_factory.mktemp("uni"))


# -- library --------------------------------------------------------------------------------------------------


def test_tune_starts_from_the_base_config_and_is_seeded() -> None:
    data = checkerboard()
    a = tune(data, SMALL, trials=3, seed=1, space=("lr", "dropout", "gmf_dim"))
    b = tune(data, SMALL, trials=3, seed=1, space=("lr", "dropout", "gmf_dim"))
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert a.trials[0].params == {"lr": 0.01, "dropout": 0.0, "gmf_dim": 8}
    # Trial 0 is the base configuration itself: its value is what a plain fit on the same split scores.
    fit_data, val = validation_split(data, "random", 0.1, SMALL.seed)
    plain = fit(fit_data, SMALL, validation=val, progress=False)
    assert a.trials[0].value == pytest.approx(validation_value(plain))
    assert a.best_value == min(t.value for t in a.trials if t.value is not None)
    assert a.metric == "val_rmse"
    # The configuration written is the best trial's parameters over the base.
    best = min(a.trials, key=lambda t: t.value)
    assert a.best_config.lr == best.params["lr"] and a.best_config.gmf_dim == best.params["gmf_dim"]
    assert a.best_config.mlp_layers == (16, 8) and a.best_config.epochs == 8
    doc = a.to_dict()
    assert TrainConfig(**config_values(json.loads(json.dumps(doc)))) == a.best_config
    assert str(best.number) + "*" in a.table().split()


def test_tune_rejects_unknown_settings() -> None:
    with pytest.raises(DataError, match="cannot tune colour"):
        tune(checkerboard(), SMALL, trials=1, space=("lr", "colour"))


def test_config_values_checks_names_and_layers() -> None:
    assert config_values({"config": {"gmf_dim": 4, "mlp_layers": [8, 4]}}) == {"gmf_dim": 4, "mlp_layers": (8, 4)}
    assert config_values({"mlp_layers": "8,4"}) == {"mlp_layers": (8, 4)}
    with pytest.raises(DataError, match=r"unknown training setting.*'gmf_dims'"):
        config_values({"gmf_dims": 4}, "best.json")
    with pytest.raises(DataError, match="mlp_layers must be a list"):
        config_values({"mlp_layers": ["a"]})
    with pytest.raises(DataError, match="expected a JSON object"):
        config_values([1, 2])


# -- CLI ------------------------------------------------------------------------------------------------------


def test_tune_writes_a_config_that_train_accepts(cli, secret_key, university, tmp_path) -> None:
    best = tmp_path / "best.json"
    code, out, err = cli(
        "tune", "--data", university["grades"], *AAST_FLAGS, *SMALL_FLAGS,
        "--trials", "2", "--space", "lr,dropout", "--holdout", "temporal", "--out", best, "--threads", "1",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(best.read_text())
    assert doc["kind"] == "electives-train-config" and len(doc["trials"]) == 2
    assert doc["info"]["holdout"] == "temporal" and "without its temporal test split" in doc["info"]["data"]
    assert out.splitlines()[0].split()[:2] == ["trial", "val_rmse"]
    model = tmp_path / "model"
    # A flag given on the command line wins over the file; the rest comes from the file.
    code, _, err = cli(
        "train", "--data", university["grades"], *AAST_FLAGS, "--config", best, "--gmf-dim", "4", "--quiet",
        "--out", model,
    )  # fmt: skip
    assert code == 0, err
    config = json.loads((model / "manifest.json").read_text())["params"]["config"]
    assert config["gmf_dim"] == 4
    assert config["lr"] == doc["config"]["lr"] and config["dropout"] == doc["config"]["dropout"]
    assert config["epochs"] == 4 and config["mlp_layers"] == [16, 8]


def test_train_model_auto_records_the_comparison(cli, secret_key, university, tmp_path) -> None:
    model = tmp_path / "auto"
    code, out, err = cli(
        "train", "--data", university["grades"], *AAST_FLAGS, *SMALL_FLAGS, "--model", "auto", "--quiet",
        "--out", model,
    )  # fmt: skip
    assert code == 0, err
    manifest = json.loads((model / "manifest.json").read_text())
    sel = manifest["model_selection"]
    # With grades, auto is next-term selection over every family (models/selection.py).
    assert {c["family"] for c in sel["candidates"]} >= {"neumf", "gmf", "mlp", "bias", "mf", "knn", "ensemble"}
    competing = [c for c in sel["candidates"] if c["val_rmse"] is not None and "same_as" not in c["settings"]]
    best = min(competing, key=lambda c: c["val_rmse"])
    assert sel["chosen"] == best["name"] and manifest["family"] == best["family"]
    # Candidates are reported in percent points, like the artifact's own validation RMSE (the winner's before
    # its refit on every row).
    assert best["val_rmse"] == pytest.approx(manifest["metrics"]["val_rmse"], rel=1e-4)
    assert f"model selection chose {best['name']}" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--space", "lr,colour"], "cannot tune colour"),
        (["--trials", "0"], "'0' must be 1 or more"),
        (["--holdout", "weekly"], "invalid choice: 'weekly'"),
    ],
)
def test_tune_bad_flags(cli, secret_key, university, tmp_path, args, message) -> None:
    code, _, err = cli("tune", "--data", university["grades"], *AAST_FLAGS, "--out", tmp_path / "b.json", *args)
    assert code == 2
    assert message in err
    assert not (tmp_path / "b.json").exists()


def test_tune_out_must_be_a_file(cli, secret_key, university, tmp_path) -> None:
    code, _, err = cli("tune", "--data", university["grades"], *AAST_FLAGS, "--out", tmp_path)
    assert code == 2 and "is a folder" in err


def test_train_config_file_errors(cli, secret_key, university, tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"config": {"gmf_dims": 4}}')
    code, _, err = cli("train", "--data", university["grades"], *AAST_FLAGS, "--config", bad, "--out", tmp_path / "m")
    assert code == 2 and f"--config {bad}: unknown training setting(s) 'gmf_dims'" in err
    bad.write_text("{not json")
    code, _, err = cli("train", "--data", university["grades"], *AAST_FLAGS, "--config", bad, "--out", tmp_path / "m")
    assert code == 2 and "not valid JSON" in err
    bad.write_text('{"dropout": 2.0}')
    code, _, err = cli("train", "--data", university["grades"], *AAST_FLAGS, "--config", bad, "--out", tmp_path / "m")
    assert code == 2 and "dropout must be in [0, 1)" in err
    assert not (tmp_path / "m").exists()
