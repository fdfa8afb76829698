"""`electives evaluate` end to end on a small synthetic university: the table, the report, the split, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from electives.data.synth import SynthConfig, generate, write

AAST_FLAGS = [
    "--map", "student=student serial", "--map", "term=Year+term", "--map", "course=Crs Code",
    "--map", "course_name=Course Name", "--map", "grade=total", "--scale", "percent",
]  # fmt: skip
SMALL = [
    "--epochs", "5", "--lr", "0.01", "--gmf-dim", "8", "--mlp-dim", "8", "--mlp-layers", "16,8", "--quiet",
    "--threads", "1",
]  # fmt: skip
EXPLICIT_BASELINES = ["global-mean", "student-mean", "course-mean", "bias", "mf", "knn", "popularity"]


@pytest.fixture(scope="module")
def university(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write(generate(SynthConfig(n_students=120, seed=3)), tmp_path_factory.mktemp("uni"))


def _table(stdout: str) -> dict[str, list[str]]:
    """The printed comparison table: {model: cells}, from the header line starting with 'model'."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model "))
    header = lines[start].split()
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith(("fit seconds", "report written")):
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return {"__header__": header[1:], **rows}


def _latest_term_rows(university: dict[str, Path]) -> int:
    """Independent count of the temporal test set: graded rows in each multi-term student's latest term."""
    df = pd.read_csv(university["grades"], dtype=str)
    df = df[pd.to_numeric(df["total"], errors="coerce").between(0, 100)]
    order = {"Spring": 0, "Summer": 1, "Fall": 2}
    df["key"] = df["Year"].astype(int) * 10 + df["term"].map(order)
    # Retakes: the importer keeps the latest attempt of a (student, course) pair.
    df = df.sort_values("key").drop_duplicates(["student serial", "Crs Code"], keep="last")
    latest = df.groupby("student serial")["key"].transform("max")
    terms = df.groupby("student serial")["key"].transform("nunique")
    return int(((df["key"] == latest) & (terms > 1)).sum())


def test_evaluate_prints_every_model_and_writes_the_report(cli, secret_key, university, tmp_path) -> None:
    out = tmp_path / "report"
    code, stdout, err = cli("evaluate", "--data", university["grades"], *AAST_FLAGS, *SMALL, "--out", out)
    assert code == 0, err
    table = _table(stdout)
    # The last row is the served choice: what `electives train` would pick from the training part alone.
    assert list(table)[1:] == ["neumf", *EXPLICIT_BASELINES, "served"]
    assert table["__header__"][:2] == ["rmse", "mae"]
    assert "hr@10_full" in table["__header__"] and "ndcg@10_sampled" in table["__header__"]
    assert len(table["popularity"]) == 4  # ranking metrics only: no grade columns for a popularity count
    doc = json.loads((out / "report.json").read_text())
    assert doc["context"]["split"] == "temporal"
    assert doc["info"]["n_test"] == _latest_term_rows(university)
    # Percent points: the global mean is off by the spread of grades; a model that learned something is not.
    rmse = {m: v["rmse"] for m, v in doc["metrics"].items() if "rmse" in v}
    assert 3 < rmse["global-mean"] < 25 and rmse["bias"] < rmse["global-mean"]
    # NeuMF on the same test rows (measured: 8.7 points; global mean 11.0, course mean 10.1, bias 9.3): below the
    # course mean, and below the global mean by four of the latter's sampling sds (an RMSE over n rows varies by
    # about RMSE/√(2n): 0.35 points on 493 rows). Its ranking of each student's courses (Spearman, 0.43 measured)
    # is positive, where a constant's is 0.
    n_test = doc["info"]["n_test"]
    assert rmse["neumf"] < rmse["course-mean"], rmse
    assert rmse["neumf"] < rmse["global-mean"] * (1 - 4 / np.sqrt(2 * n_test)), rmse
    assert doc["metrics"]["global-mean"]["spearman"] == 0 and doc["metrics"]["neumf"]["spearman"] > 0.2
    assert len(doc["histories"]["neumf"]) == 5
    served = next(name for name in doc["metrics"] if name.startswith("served choice ("))
    assert set(doc["curves"]) == {"neumf", *EXPLICIT_BASELINES, served}
    for name in ("loss", "hr_at_k", "ndcg_at_k", "predicted_vs_actual", "error_by_course"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert all(f"| {m} |" in md for m in ["neumf", *EXPLICIT_BASELINES])


def test_evaluate_chosen_baselines_and_split(cli, secret_key, university) -> None:
    code, stdout, err = cli(
        "evaluate", "--data", university["grades"], *AAST_FLAGS, *SMALL,
        "--baselines", "bias,ease", "--split", "random", "--test-fraction", "0.25", "--model", "gmf",
    )  # fmt: skip
    assert code == 0, err
    table = _table(stdout)
    assert list(table)[1:] == ["gmf", "bias", "ease", "served"]
    assert "random split" in stdout
    assert "report written" not in stdout  # no --out: the table only


def test_evaluate_with_a_privacy_budget_reports_the_spent_epsilon(cli, secret_key, university, tmp_path) -> None:
    out = tmp_path / "dp-report"
    code, stdout, err = cli(
        "evaluate", "--data", university["grades"], *AAST_FLAGS, "--epochs", "2", "--quiet", "--threads", "1",
        "--baselines", "bias", "--dp-epsilon", "4", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert list(_table(stdout))[1:] == ["neumf", "bias"]
    doc = json.loads((out / "report.json").read_text())
    spent = doc["context"]["privacy"]["epsilon"]
    assert 0 < spent <= 4
    assert "differential privacy: ε = " in (out / "report.md").read_text()


def test_evaluate_implicit_mode(cli, secret_key, university) -> None:
    code, stdout, err = cli(
        "evaluate", "--data", university["grades"], *AAST_FLAGS, *SMALL, "--mode", "implicit", "--split", "loo",
        "--baselines", "popularity,ease", "--eval-negatives", "20",
    )  # fmt: skip
    assert code == 0, err
    table = _table(stdout)
    # The last row: what `train --mode implicit` would serve, chosen on the training part's newest courses.
    assert list(table)[1:] == ["neumf", "popularity", "ease", "served"]
    assert "rmse" not in table["__header__"]
    assert re.search(r"served choice: \S+ — what `electives train` would pick", stdout)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--baselines", "bias,forest"], "unknown baseline 'forest'"),
        (["--mode", "implicit", "--baselines", "bias"], "bias predict grades; they need --mode explicit"),
        (["--db", "sqlite:///nowhere.db"], "give either --db or --data, not both"),
        (["--split", "weekly"], "invalid choice: 'weekly'"),
        (["--test-fraction", "1.5"], "'1.5' must be between 0 and 1"),
        (["--config", "missing.json"], "cannot read --config missing.json"),
    ],
)
def test_evaluate_bad_flags_are_clear_errors(cli, secret_key, university, extra, message) -> None:
    code, _, err = cli("evaluate", "--data", university["grades"], *AAST_FLAGS, *SMALL, *extra)
    assert code == 2
    assert message in err


def test_temporal_split_needs_terms(cli, secret_key, tmp_path) -> None:
    rows = "".join(f"s{s},c{c},{50 + 7 * ((s + c) % 5)}\n" for s in range(12) for c in range(6))
    path = tmp_path / "no-terms.csv"
    path.write_text("student,course,grade\n" + rows)
    code, _, err = cli("evaluate", "--data", path, "--scale", "percent", *SMALL, "--split", "temporal")
    assert code == 2
    assert "--split temporal needs terms" in err
