"""`electives monitor` and `electives train --challenge` on a synthetic university whose last term is imported
after the served models were trained (issue 15 item 7)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import run_all, run_cli, secret_key_set

from electives.data.importing import read_export
from electives.data.pseudonyms import Pseudonymiser
from electives.data.synth import EXPORT_MAPPING, SynthConfig, generate, import_flags, write
from electives.evaluation.monitoring import unseen_figures, verdict
from electives.models.artifact import load_artifact, load_model, save_artifact

NCF_ONE_EPOCH = ["--model", "neumf", "--epochs", "1", "--gmf-dim", "8", "--mlp-dim", "8", "--mlp-layers", "16,8"]


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every term but the last imported (import 1); a good model (bias) and a deliberately bad one (NeuMF, one
    epoch) trained on them; the database copied as it then stood; then the last term imported (import 2)."""
    root = tmp_path_factory.mktemp("campus")
    files = write(generate(SynthConfig(n_students=250, seed=5)), root / "uni")
    export = pd.read_csv(files["grades"], dtype=str, keep_default_na=False)
    term = 2 * export["Year"].astype(int) - (export["term"] == "Spring")
    export[term < term.max()].to_csv(root / "earlier.csv", index=False)
    export[term == term.max()].to_csv(root / "last.csv", index=False)
    db = f"sqlite:///{root / 'grades.db'}"
    with secret_key_set(root):
        run_all(
            ["import", root / "earlier.csv", *import_flags(), "--db", db],
            ["train", "--db", db, "--out", root / "good", "--model", "bias", "--quiet"],
            ["train", "--db", db, "--out", root / "bad", *NCF_ONE_EPOCH, "--quiet"],
        )
        shutil.copy(root / "grades.db", root / "before.db")
        # Artifacts record their creation to the second, and the date fallback counts an import in the model's
        # last second as read by it: the new term must land in a later second than the models were written.
        time.sleep(1.1)
        code, _, err = run_cli("import", root / "last.csv", *import_flags(), "--db", db)
        assert code == 0, err
    return {"root": root, "db": db, "before": f"sqlite:///{root / 'before.db'}", "last": root / "last.csv"}


def _copy(campus: dict[str, Any], name: str, tmp_path: Path) -> Path:
    out = tmp_path / name
    shutil.copytree(campus["root"] / name, out)
    return out


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_train_signs_the_model_with_the_deployment_key(campus, secret_key: str) -> None:
    """`electives train` with the deployment's key signs the artifact, so a server requiring signatures serves it."""
    from electives.errors import ModelError

    ours = Pseudonymiser(secret_key.encode()).model_signature
    load_model(campus["root"] / "good", signer=ours, require_signature=True)
    with pytest.raises(ModelError, match="does not match"):
        load_model(campus["root"] / "good", signer=Pseudonymiser(b"some-other-deployment-key").model_signature)


# ------------------------------------------------------------------------------------------------------ monitor


def test_monitor_scores_exactly_the_grades_imported_after_training(campus, secret_key: str) -> None:
    code, out, err = run_cli("monitor", campus["root"] / "good", "--db", campus["db"], "--json")
    assert code == 0, err
    report = json.loads(out)
    # Recomputed from the last term's file itself, read with the same key: its graded pairs, predicted by the model
    # where it knows the student and the course.
    result = read_export(
        campus["last"], mapping=EXPORT_MAPPING, scale="percent", pseudonymiser=Pseudonymiser(secret_key.encode())
    )
    last = result.frame[result.frame["grade"].notna()].drop_duplicates(["student", "course"], keep="last")
    assert report["new_grades"] == len(last)
    model = load_model(campus["root"] / "good")
    s, c = last["student"].map(model.student_index()), last["course"].map(model.course_index())
    known = s.notna() & c.notna()
    assert report["scored_by"]["trained"] == report["figures"]["grades"] == int(known.sum())
    assert report["scored_by"].get("folded", 0) == 0  # every earlier student was trained on
    pred = model.fitted.predict(s[known].to_numpy(np.int64), c[known].to_numpy(np.int64))
    err_points = (pred - last["grade"][known].to_numpy()) * 100
    assert report["figures"]["rmse"] == pytest.approx(float(np.sqrt(np.mean(err_points**2))), rel=1e-5)
    assert report["figures"]["mae"] == pytest.approx(float(np.mean(np.abs(err_points))), rel=1e-5)
    assert report["trained_through"]["import"] == 1 and report["trained_through"]["term"] == "2022-Fall"
    # Validation figures are the model's own, ranking included (recorded at training).
    manifest = json.loads((campus["root"] / "good" / "manifest.json").read_text())
    assert report["validation"]["rmse"] == manifest["metrics"]["val_rmse"]
    assert report["validation"]["grade_ndcg"] == manifest["validation_ranking"]["grade_ndcg"]
    assert report["verdict"] == "holding"  # the synthetic world does not change between terms


def test_monitor_prints_figures_beside_validation_and_a_verdict(campus, secret_key: str) -> None:
    code, out, err = run_cli("monitor", campus["root"] / "good", "--db", campus["db"])
    assert code == 0, err
    assert "grades imported after import 1" in out
    assert "RMSE (percent points)" in out and "80% interval coverage" in out and "ranking Spearman" in out
    assert "validation" in out and "new grades" in out
    assert out.strip().splitlines()[-1].startswith("verdict: holding — RMSE")


def test_monitor_falls_back_on_dates_and_takes_a_term(campus, secret_key: str, tmp_path: Path) -> None:
    """An artifact from before import numbers were recorded: the imports after it was written; --since TERM:
    every grade of that term on, with a warning when the model trained on that term."""
    code, out, _ = run_cli("monitor", campus["root"] / "good", "--db", campus["db"], "--json")
    expected = json.loads(out)["figures"]
    old = _copy(campus, "good", tmp_path)
    art = load_artifact(old)
    manifest = {k: v for k, v in art.manifest.items() if k not in ("trained_through", "manifest_sha256")}
    save_artifact(old, art.tensors, manifest)
    code, out, err = run_cli("monitor", old, "--db", campus["db"], "--json")
    assert code == 0, err
    report = json.loads(out)
    assert "after the model was written" in report["basis"] and report["figures"] == expected
    code, out, err = run_cli(
        "monitor", campus["root"] / "good", "--db", campus["db"], "--since", "2023-Spring", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["figures"] == expected and json.loads(out)["warnings"] == []
    code, out, err = run_cli("monitor", campus["root"] / "good", "--db", campus["db"], "--since", "2022-fall", "--json")
    assert code == 0, err
    assert "flatter it" in json.loads(out)["warnings"][0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["monitor", "{root}/nowhere", "--db", "{db}"], "nowhere: no model artifact here"),
        (["monitor", "{root}/good", "--db", "{before}"], "nothing to score; import the next term's grades first"),
        (["monitor", "{root}/good", "--db", "{db}", "--since", "Someday"], "--since 'Someday'"),
        (["monitor", "{root}/good", "--db", "sqlite:///{root}/absent.db"], "absent.db does not exist"),
    ],
)
def test_monitor_refuses_bad_input_by_name(campus, secret_key: str, argv: list[str], message: str) -> None:
    where = {"root": campus["root"], "db": campus["db"], "before": campus["before"]}
    code, out, err = run_cli(*(a.format(**where) for a in argv))
    assert code == 2 and message in err and out == ""
    assert not (campus["root"] / "absent.db").exists()


# ---------------------------------------------------------------------------------------------------- challenge


def test_a_worse_challenger_is_refused_and_the_served_model_is_untouched(campus, secret_key: str, tmp_path) -> None:
    served = _copy(campus, "good", tmp_path)
    before = _snapshot(served)
    code, out, err = run_cli("train", "--db", campus["db"], "--challenge", served, *NCF_ONE_EPOCH, "--quiet")
    assert code == 1, err
    assert "refused" in out and "served (bias)" in out and "challenger (neumf)" in out
    assert _snapshot(served) == before  # byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]  # no temporary directory left behind


def test_a_better_challenger_is_promoted_with_its_history(campus, secret_key: str, tmp_path: Path) -> None:
    served = _copy(campus, "bad", tmp_path)
    # The served model already has a promotion in its history: it must be kept.
    art = load_artifact(served)
    earlier = {"at": "2020-01-01T00:00:00+00:00", "decision": "promoted"}
    manifest = {k: v for k, v in art.manifest.items() if k != "manifest_sha256"}
    save_artifact(served, art.tensors, {**manifest, "promotion_history": [earlier]})
    code, out, err = run_cli("monitor", served, "--db", campus["db"], "--json")
    monitored = json.loads(out)["figures"]
    code, out, err = run_cli("train", "--db", campus["db"], "--challenge", served, "--model", "bias", "--quiet")
    assert code == 0, err
    assert "promoted" in out
    model = load_model(served)
    assert model.family == "bias" and model.manifest["trained_through"]["import"] == 2
    history = model.manifest["promotion_history"]
    assert history[0] == earlier and len(history) == 2
    entry = history[1]
    assert entry["decision"] == "promoted" and entry["served"]["family"] == "neumf"
    # Both were measured on exactly the grades the monitor scores: the served model's figures are the monitor's.
    assert entry["served"]["figures"] == monitored and entry["compared_on"]["grades"] == monitored["grades"]
    assert entry["challenger"]["figures"]["grades"] == monitored["grades"]
    assert entry["challenger"]["figures"]["rmse"] <= entry["served"]["figures"]["rmse"]
    assert model.manifest["training_data"]["rows"] == entry["refit"]["rows"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]
    # The promoted model has seen everything: a second challenge has nothing to compare on.
    code, _, err = run_cli("train", "--db", campus["db"], "--challenge", served, "--model", "bias", "--quiet")
    assert code == 2 and "nothing to score" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mode", "implicit"], "cannot train an enrolment-only (implicit) model"),
        (["--data", "{last}"], "give --db, not --data"),
        (["--out", "{root}/elsewhere"], "leave out --out"),
        (["--dp-epsilon", "8"], "--dp-epsilon"),
    ],
)
def test_challenge_refuses_what_it_cannot_compare(campus, secret_key, tmp_path, extra, message) -> None:
    served = _copy(campus, "good", tmp_path)
    before = _snapshot(served)
    where = {"root": campus["root"], "last": campus["last"]}
    argv = ["train", "--challenge", served, "--model", "bias", "--quiet", *(a.format(**where) for a in extra)]
    if "--data" not in extra:
        argv += ["--db", campus["db"]]
    code, _, err = run_cli(*argv)
    assert code == 2 and message in err, err
    assert _snapshot(served) == before and not (campus["root"] / "elsewhere").exists()


def test_challenge_refuses_an_unknown_or_implicit_model_and_an_unchanged_database(campus, secret_key, tmp_path) -> None:
    code, _, err = run_cli("train", "--db", campus["db"], "--challenge", tmp_path / "nowhere", "--model", "bias")
    assert code == 2 and "nowhere: no model artifact here" in err
    assert not (tmp_path / "nowhere").exists()
    implicit = tmp_path / "implicit"
    flags = ["--mode", "implicit", "--epochs", "1", "--gmf-dim", "8", "--mlp-dim", "8", "--mlp-layers", "16,8"]
    code, _, err = run_cli("train", "--db", campus["before"], "--out", implicit, *flags, "--quiet")
    assert code == 0, err
    before = _snapshot(implicit)
    code, _, err = run_cli("train", "--db", campus["db"], "--challenge", implicit, "--model", "bias", "--quiet")
    assert code == 2 and "implicit" in err and "predicts no grades" in err
    assert _snapshot(implicit) == before
    served = _copy(campus, "good", tmp_path)
    before = _snapshot(served)
    code, _, err = run_cli("train", "--db", campus["before"], "--challenge", served, "--model", "bias", "--quiet")
    assert code == 2 and "nothing to score" in err
    assert _snapshot(served) == before


# ------------------------------------------------------------------------------------------------ the verdict


def test_verdict_rule_from_validation_and_the_number_of_new_grades() -> None:
    rng = np.random.default_rng(0)

    def figures(n_students: int, sd: float) -> dict:
        students = np.repeat(np.arange(n_students), 5)
        true = rng.uniform(0.3, 0.9, len(students))
        pred = true + rng.normal(0, sd, len(students))
        return unseen_figures(students, pred, true, span=100, lower=pred - 0.1, upper=pred + 0.1)

    validation = {"val_rmse": 8.0, "interval_coverage_nominal": 0.8}
    assert verdict(figures(400, 0.08), validation)[0] == "holding"
    assert verdict(figures(400, 0.12), validation)[0] == "drifting"
    assert verdict(figures(4, 0.085), validation)[0] == "uncertain"  # 20 grades cannot tell 8.5 from 8.8
    # Intervals far too narrow for the new grades: drifting even when the RMSE holds.
    narrow = figures(400, 0.08) | {"interval_coverage": 0.5, "interval_coverage_high": 0.55}
    assert verdict(narrow, validation)[0] == "drifting"
    assert verdict(figures(400, 0.08), {})[0] == "uncertain"


def test_bounds_are_clustered_by_student() -> None:
    """Grades of one student that move together are one piece of evidence, not five."""
    rng = np.random.default_rng(1)
    students = np.repeat(np.arange(50), 5)
    true = np.full(len(students), 0.5)
    shared = np.repeat(rng.normal(0, 0.1, 50), 5)  # each student's grades off by the same amount
    clustered = unseen_figures(students, true + shared, true)
    independent = unseen_figures(np.arange(len(students)), true + shared, true)
    assert clustered["rmse"] == pytest.approx(independent["rmse"])
    width = clustered["rmse_high"] - clustered["rmse_low"]
    assert width > 1.8 * (independent["rmse_high"] - independent["rmse_low"])
