"""`electives train` and `electives score` end to end on a small synthetic university."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import TEST_KEY, run_cli, secret_key_set

from electives.data.importing import read_export
from electives.data.interactions import Interactions
from electives.data.pseudonyms import Pseudonymiser
from electives.data.splits import validation_split
from electives.data.synth import EXPORT_MAPPING, SynthConfig, generate, write
from electives.models.artifact import load_model
from electives.models.config import TrainConfig

AAST_FLAGS = [
    "--map", "student=student serial", "--map", "term=Year+term", "--map", "course=Crs Code",
    "--map", "course_name=Course Name", "--map", "grade=total", "--scale", "percent",
]  # fmt: skip
SMALL = ["--epochs", "6", "--lr", "0.01", "--gmf-dim", "8", "--mlp-dim", "8", "--mlp-layers", "16,8", "--quiet"]


@pytest.fixture(scope="module")
def university(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write(generate(SynthConfig(n_students=150, seed=5)), tmp_path_factory.mktemp("uni"))


@pytest.fixture(scope="module")
def trained(university, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model for the module's tests (they only read it), trained under the key the `secret_key` fixture sets."""
    out = tmp_path_factory.mktemp("trained") / "model"
    with secret_key_set(out.parent):
        # NeuMF forced: these tests check an NCF model's validation figures and interval on the rows it did not
        # train on (the default, selection, refits its winner on them; tests/test_selection.py covers it).
        argv = ["train", "--data", str(university["grades"]), *AAST_FLAGS, *SMALL, "--model", "neumf"]
        code, _, err = run_cli(*argv, "--out", out)
    assert code == 0, err
    return out


def _validation_rows(grades: Path, key: str) -> tuple[Interactions, Interactions]:
    """(fit, validation) as `electives train` carves them from the export: the same reader, pseudonyms and split."""
    result = read_export(grades, mapping=EXPORT_MAPPING, scale="percent", pseudonymiser=Pseudonymiser(key.encode()))
    frame = result.frame[result.frame["grade"].notna()]
    df = pd.DataFrame({"student": frame["student"], "course": frame["course"], "grade": frame["grade"]})
    df["term"] = frame["term_key"].astype("int64")
    cfg = TrainConfig().resolved()  # explicit defaults: what SMALL leaves unset
    return validation_split(Interactions.from_frame(df), cfg.validation, cfg.val_fraction, cfg.seed)  # type: ignore[arg-type]


def _rmse(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, dtype=np.float64) - actual) ** 2))) * 100  # percent points


def test_train_writes_a_calibrated_explicit_model(trained: Path, university, secret_key: str) -> None:
    model = load_model(trained)
    manifest = json.loads((trained / "manifest.json").read_text())
    assert model.mode == "explicit"
    assert model.scale is not None and model.scale.name == "percent"
    assert model.calibration is not None and model.calibration.coverage == 0.8
    metrics = manifest["metrics"]
    fit_rows, val = _validation_rows(university["grades"], secret_key)
    assert list(val.student_ids) == list(model.student_ids) and metrics["validation_rows"] == len(val)
    # The reported RMSE is the model's on the validation rows (recomputed here, not read back).
    pred = model.fitted.predict(val.students, val.courses)
    assert metrics["val_rmse"] == pytest.approx(_rmse(pred, val.grades), abs=1e-3)
    # Trivial predictors fitted on the same training rows, scored on the same validation rows (measured: global
    # mean 10.9, course mean 10.0 points; the model 7.7). A model that learned nothing is no better than these:
    # it must beat the better of them by 10%.
    mu = float(fit_rows.grades.mean())
    course_sums = np.bincount(fit_rows.courses, fit_rows.grades, minlength=val.n_courses)
    course_counts = np.bincount(fit_rows.courses, minlength=val.n_courses)
    course_mean = np.where(course_counts > 0, course_sums / np.maximum(course_counts, 1), mu)
    trivial = min(_rmse(np.full(len(val), mu), val.grades), _rmse(course_mean[val.courses], val.grades))
    assert metrics["val_rmse"] < 0.9 * trivial, (metrics["val_rmse"], trivial)
    # Coverage near the nominal 80%: it is measured on about half the validation rows, with an interval
    # calibrated on the other half. Each half's binomial sd is √(p(1−p)/(n/2)); the two add, and three sds of
    # the sum (n = 313: ±0.14) reject intervals that are far too narrow or too wide (measured: 0.78).
    p, n = 0.8, len(val)
    tolerance = 3 * np.sqrt(p * (1 - p) * (2 / n + 2 / n))
    assert metrics["interval_coverage_nominal"] == p
    assert abs(metrics["interval_coverage_measured"] - p) < tolerance, (metrics["interval_coverage_measured"], n)
    # The saved interval, checked here on every validation row.
    assert abs(model.calibration.empirical_coverage(val.grades, pred) - p) < tolerance
    assert model.course_names["CS101"] == "Introduction to Programming"
    # Pseudonyms only: no raw student serial of the export appears in the artifact.
    serials = set(pd.read_csv(university["grades"], dtype=str)["student serial"])
    blob = (trained / "manifest.json").read_bytes() + (trained / "model.safetensors").read_bytes()
    # A serial inside a longer run of digits is a float's digits, not that serial: the manifest's history holds
    # timings, and one run wrote "seconds": 0.0084162020000349, which holds serial 20200003. As a whole number or
    # string it would be a leak.
    assert not [s for s in serials if re.search(rb"(?<![0-9])" + s.encode() + rb"(?![0-9])", blob)]


def test_same_seed_same_model(cli, secret_key, university, tmp_path, trained) -> None:
    again = tmp_path / "again"
    assert cli("train", "--data", university["grades"], *AAST_FLAGS, *SMALL, "--model", "neumf", "--out", again)[0] == 0
    a, b = load_model(trained), load_model(again)
    s = np.arange(len(a.student_ids))
    np.testing.assert_array_equal(a.fitted.score_all(s), b.fitted.score_all(s))


def test_score_writes_predicted_points(cli, secret_key, trained, university, tmp_path) -> None:
    export = pd.read_csv(university["grades"], dtype=str)
    rows = export[pd.to_numeric(export["total"], errors="coerce").between(0, 100)].head(200)
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{s}\t{c}\n" for s, c in zip(rows["student serial"], rows["Crs Code"], strict=True)))
    out = tmp_path / "scored.tsv"
    code, _, err = cli("score", trained, "--pairs", pairs, "--out", out)
    assert code == 0, err
    scored = pd.read_csv(out, sep="\t", header=None, names=["student", "course", "score"], dtype={"student": str})
    assert list(scored["student"]) == list(rows["student serial"])
    assert scored["score"].between(0, 100).all()
    # Trained on these very rows: predictions track the actual totals.
    assert np.corrcoef(scored["score"], rows["total"].astype(float))[0, 1] > 0.3


def test_score_unknown_student_is_named(cli, secret_key, trained, tmp_path) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("nobody\tCS101\n")
    code, _, err = cli("score", trained, "--pairs", pairs)
    assert code == 2
    assert "line 1: the model does not know this student (1 unknown pairs in all)" in err
    code, out, _ = cli("score", trained, "--pairs", pairs, "--skip-unknown")
    assert code == 0 and out == "nobody\tCS101\t\n"


def test_bad_pairs_line(cli, secret_key, trained, tmp_path) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("only-one-field\n")
    code, _, err = cli("score", trained, "--pairs", pairs)
    assert code == 2 and "line 1: expected 'student<TAB>course', got 'only-one-field'" in err


def test_explicit_training_on_enrolments_is_refused(cli, secret_key, tmp_path) -> None:
    pairs = tmp_path / "enrolments.tsv"
    pairs.write_text("".join(f"s{i}\tc{i % 7}\n" for i in range(60)))
    out = tmp_path / "m"
    code, _, err = cli("train", "--data", pairs, "--no-header", "--columns", "student,course", "--out", out)
    assert code == 2
    assert "enrolments only (no grades): train with --mode implicit" in err
    assert not out.exists()


def test_implicit_training_from_enrolments(cli, secret_key, tmp_path) -> None:
    rng = np.random.default_rng(0)
    rows = {(f"s{s}", f"c{c}") for s in range(60) for c in rng.choice(20, 6, replace=False)}
    pairs = tmp_path / "enrolments.tsv"
    pairs.write_text("".join(f"{s}\t{c}\n" for s, c in sorted(rows)))
    out = tmp_path / "m"
    # NeuMF forced: its refit is checked here (the default, selection: tests/test_implicit_selection.py).
    args = [
        "--no-header",
        "--columns",
        "student,course",
        "--mode",
        "implicit",
        "--model",
        "neumf",
        *SMALL,
        "--out",
        out,
    ]
    code, stdout, err = cli("train", "--data", pairs, *args)
    assert code == 0, err
    model = load_model(out)
    assert model.mode == "implicit" and model.scale is None and model.calibration is None
    metrics = model.manifest["metrics"]
    assert "val_hr_at_10_sampled" in metrics
    # Implicit default: refitted on every row; the validation figures are the pre-refit model's.
    assert metrics["refit_rows"] == len(rows) and model.manifest["params"]["config"]["refit"] is True
    assert "then refitted on training + validation" in stdout
    phases = [h["phase"] for h in model.manifest["params"]["history"]]
    assert phases.count("neumf refit") == model.manifest["params"]["best_epoch"]
    code, stdout, err = cli("train", "--data", pairs, *args[:-1], tmp_path / "m2", "--no-refit")
    assert code == 0, err
    off = load_model(tmp_path / "m2").manifest
    assert "refit_rows" not in off["metrics"] and off["params"]["config"]["refit"] is False
    assert off["metrics"]["val_hr_at_10_sampled"] == metrics["val_hr_at_10_sampled"]  # same seed, same validation


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mlp-layers", "64,x"], "'64,x': expected sizes like 128,64,32"),
        (["--epochs", "0"], "'0' must be 1 or more"),
        (["--lr", "-1"], "'-1' must be greater than 0"),
        (["--coverage", "1.5"], "--coverage 1.5: expected a level in [0.5, 1)"),
        (["--db", "sqlite:///x.db"], "give either --db or --data, not both"),
    ],
)
def test_bad_flags(cli, secret_key, university, tmp_path, args, message) -> None:
    code, _, err = cli("train", "--data", university["grades"], *AAST_FLAGS, "--out", tmp_path / "m", *args)
    assert code == 2
    assert message in err
    assert not (tmp_path / "m").exists()


def test_train_from_the_database(cli, secret_key, university, tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'e.db'}"
    assert cli("import", university["grades"], "--db", db, *AAST_FLAGS, "--catalog", university["catalog"])[0] == 0
    out = tmp_path / "m"
    code, _, err = cli("train", "--db", db, *SMALL, "--out", out)
    assert code == 0, err
    model = load_model(out)
    assert model.scale is not None and model.scale.name == "percent"
    assert model.manifest["data_source"] == "database"


def test_empty_database_is_refused(cli, secret_key, tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    code, _, err = cli("train", "--db", db, "--out", tmp_path / "m")
    assert code == 2 and "holds no grades; import an export first" in err


def test_a_piped_run_logs_one_line_per_epoch_without_progress_frames(university, tmp_path) -> None:
    """`make run > log`: no terminal, so no progress bars (their carriage-return frames would fill the log),
    but still one line per epoch."""
    import os
    import subprocess
    import sys

    small = [a for a in SMALL if a != "--quiet"]
    argv = ["train", "--data", str(university["grades"]), *AAST_FLAGS, *small, "--model", "neumf"]
    env = {**os.environ, "ELECTIVES_SECRET_KEY": TEST_KEY}
    done = subprocess.run(
        [sys.executable, "-m", "electives", *argv, "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    assert "\r" not in log
    assert len([line for line in log.splitlines() if " epoch " in line]) >= 2
