"""Evaluation details (K-curves, errors by course) and the report writer: files, PNGs, tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from electives.data.interactions import Interactions
from electives.data.scales import load_scale
from electives.data.splits import temporal
from electives.errors import DataError, StorageError
from electives.evaluation import metrics
from electives.evaluation.evaluate import EvaluationResult, evaluate
from electives.evaluation.reports import markdown_table, write_report
from electives.models import baselines as B
from electives.models.training import EpochStats

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("loss", "hr_at_k", "ndcg_at_k", "predicted_vs_actual", "error_by_course")


def checkerboard(n_students: int = 30, n_courses: int = 16, seed: int = 0) -> Interactions:
    """Students do well (0.85) in courses of their own parity and badly (0.3) in the others; 3 terms."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_students):
        for t, c in enumerate(rng.choice(n_courses, 9, replace=False)):
            grade = (0.85 if c % 2 == s % 2 else 0.3) + rng.normal(0, 0.03)
            rows.append((f"s{s:02d}", f"c{c:02d}", t // 3, float(np.clip(grade, 0, 1))))
    return Interactions.from_frame(pd.DataFrame(rows, columns=["student", "course", "term", "grade"]))


@pytest.fixture(scope="module")
def split() -> tuple[Interactions, Interactions]:
    return temporal(checkerboard())


@pytest.fixture(scope="module")
def result(split) -> EvaluationResult:
    train, test = split
    models = {
        "bias": B.BiasModel().fit(train),
        "course-mean": B.CourseMean().fit(train),
        "popularity": B.Popularity().fit(train),
    }
    return evaluate(models, train, test, scale_range=4.0, n_negatives=5, details=True, seed=1)


def test_curves_agree_with_the_cut_off_metrics(result: EvaluationResult) -> None:
    for model, curves in result.curves.items():
        assert set(curves) == {"hr_full", "ndcg_full", "hr_sampled", "ndcg_sampled"}
        assert all(len(v) == 20 for v in curves.values())
        # K = 10 in the curve is the table's @10; HR@K never decreases with K.
        assert curves["hr_full"][9] == pytest.approx(result.metrics[model]["hr@10_full"])
        assert curves["ndcg_sampled"][9] == pytest.approx(result.metrics[model]["ndcg@10_sampled"])
        assert np.all(np.diff(curves["hr_full"]) >= 0)
        # 5 sampled negatives: the positive is always within the top 6.
        assert curves["hr_sampled"][5] == 1.0


def test_errors_by_course_match_a_direct_computation(result: EvaluationResult, split) -> None:
    train, test = split
    assert set(result.by_course) == {"bias", "course-mean"}  # popularity predicts no grades
    pred = B.BiasModel().fit(train).predict(test.students, test.courses)
    df = pd.DataFrame({"c": test.courses, "err": (pred - test.grades) * 4.0})
    for row in result.by_course["bias"]:
        errs = df[df["c"] == train.course_ids.index(row["course"])]["err"]
        assert row["n"] == len(errs)
        assert row["rmse"] == pytest.approx(math.sqrt((errs**2).mean()), rel=1e-5)
        assert row["bias"] == pytest.approx(errs.mean(), rel=1e-5, abs=1e-7)
    assert sum(r["n"] for r in result.by_course["bias"]) == len(test)
    np.testing.assert_allclose(result.predictions["bias"], pred, rtol=1e-6)
    np.testing.assert_allclose(result.actual, test.grades, rtol=1e-6)


def test_curve_k_must_be_positive(split) -> None:
    train, test = split
    with pytest.raises(DataError, match="curve_k"):
        evaluate({"bias": B.BiasModel().fit(train)}, train, test, details=True, curve_k=0)


def test_markdown_table_by_hand() -> None:
    r = EvaluationResult({"a": {"rmse": 0.5, "hr@10_full": 0.25}, "b": {"hr@10_full": 0.125}}, {"a": 0, "b": 0})
    assert markdown_table(r, digits=3).splitlines() == [
        "| model | rmse | hr@10_full |",
        "|---|---:|---:|",
        "| a | 0.500 | 0.250 |",
        "| b |  | 0.125 |",
    ]


def _history(n: int = 6) -> list[EpochStats]:
    return [EpochStats("neumf", e, 0.05 / e, 0.2 + 0.01 * abs(e - 4), 0.1) for e in range(1, n + 1)]


def test_write_report_files_and_plots(result: EvaluationResult, tmp_path: Path) -> None:
    scale = load_scale("gpa4")
    out = tmp_path / "report"
    written = write_report(
        out, result, histories={"bias": _history()}, scale=scale, title="Test report", context={"split": "temporal"}
    )
    assert set(written) == {*PLOTS, "json", "markdown"}
    for name in PLOTS:
        path = out / f"{name}.png"
        assert path.read_bytes()[:8] == PNG
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    doc = json.loads((out / "report.json").read_text())
    assert doc["metrics"]["bias"]["rmse"] == pytest.approx(result.metrics["bias"]["rmse"])
    assert doc["context"] == {"split": "temporal"}
    assert len(doc["curves"]["popularity"]["hr_full"]) == 20
    assert [h["epoch"] for h in doc["histories"]["bias"]] == list(range(1, 7))
    assert [r["course"] for r in doc["by_course"]["bias"]] == [r["course"] for r in result.by_course["bias"]]
    md = (out / "report.md").read_text()
    assert md.startswith("# Test report")
    for model in result.metrics:
        assert f"| {model} |" in md
    for name in PLOTS:
        assert f"({name}.png)" in md


def test_no_grade_plots_without_grades(split, tmp_path: Path) -> None:
    train, test = split
    implicit_train = Interactions(train.students, train.courses, None, train.terms, train.student_ids, train.course_ids)
    implicit_test = Interactions(test.students, test.courses, None, test.terms, test.student_ids, test.course_ids)
    res = evaluate(
        {"ease": B.EASE(lam=10).fit(implicit_train)}, implicit_train, implicit_test, n_negatives=5, details=True
    )
    written = write_report(tmp_path / "r", res)
    assert set(written) == {"hr_at_k", "ndcg_at_k", "json", "markdown"}
    assert "rmse" not in json.loads((tmp_path / "r" / "report.json").read_text())["metrics"]["ease"]


def test_write_report_into_a_file_path_is_a_clear_error(result: EvaluationResult, tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create report folder"):
        write_report(blocker, result)


def test_hit_rate_curve_known_values() -> None:
    ranks = np.array([0, 1, 4, 30])
    assert [metrics.hit_rate(ranks, k) for k in (1, 2, 5, 20)] == [0.25, 0.5, 0.75, 0.75]


def test_report_says_how_many_epochs_ran_before_and_after_a_refit(result: EvaluationResult, tmp_path: Path) -> None:
    pre = [EpochStats("gmf", e, 0.1, 0.5, 0.1) for e in (1, 2)]
    refit = [EpochStats(f"{p} refit", e, 0.1, None, 0.1) for p in ("gmf", "neumf") for e in (1, 2)]
    histories = {"bias": _history(), "popularity": pre + _history(4) + refit}
    write_report(tmp_path / "r", result, histories=histories, scale=None, title="t")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "- bias: 6 epochs run\n" in md
    assert (
        "- popularity: 4 epochs run after 2 pre-training epochs; then refitted on training + validation rows (4 " in md
    )
