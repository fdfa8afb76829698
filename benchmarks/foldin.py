"""Fold-in: how fast `Recommender.recommend_for_grades` answers, and how good a folded-in student is.

Latency: a model over a 500-course catalogue (synthetic university with 500 courses; every course is in the
model's index space, default NeuMF sizes), real grade lists of its students as requests (course, mark), top-5 with
eligibility for a target term; p50/p99 over `--calls` calls after 100 warm-up calls, in-process, one torch thread.

Accuracy: students are split into in-training (80%) and held-out (20%) ones; every student's graded rows into
known (80%) and test (20%), and 10% of the known rows are set aside (the in-training students' ones are the
validation split for early stopping; the held-out students' ones are dropped, so both sides use the same share).
NeuMF is trained on the in-training students' known rows only. In-training RMSE: the trained model on those
students' test rows. Held-out RMSE: each held-out student folded in from their known grades (entered as marks, as
a user would), then scored on their test rows. "Average student" is the fold-in's starting point (no grades used),
for scale. RMSE in the scale's points.

    .venv/bin/python benchmarks/foldin.py                           # both parts, both data sets
    .venv/bin/python benchmarks/foldin.py --part latency --calls 2000 --families neumf gmf mlp bias mf knn
    .venv/bin/python benchmarks/foldin.py --part rmse --datasets college --priors 0.5 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from electives.data.catalog import read_catalog
from electives.data.importing import ImportResult, read_export
from electives.data.interactions import Interactions
from electives.data.pseudonyms import Pseudonymiser
from electives.data.synth import EXPORT_MAPPING, SynthConfig, generate, write
from electives.models.artifact import load_model, save_model
from electives.models.baselines import BiasModel, ItemKNN, MatrixFactorization
from electives.models.ensemble import Blend, Ensemble
from electives.models.training import NCF, TrainConfig, fit
from electives.serving.recommender import Recommender

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ELECTIVES_DATA", ROOT / "../shared/data"))
COLLEGE = DATA / "student-grades" / "college_grades" / "College_grades.csv"
COLLEGE_MAP = {"course": "dept+level", "term": "sem", "grade": "grade"}
KEY = Pseudonymiser(b"benchmark-key-0123456789abcdef")


# ------------------------------------------------------------------------------------------------- data


def import_synthetic(config: SynthConfig, workdir: Path) -> tuple[object, ImportResult, Path]:
    """Generate a university, write its files and read the export as `electives import` would."""
    university = generate(config)
    paths = write(university, workdir)
    result = read_export(paths["grades"], mapping=EXPORT_MAPPING, scale="percent", pseudonymiser=KEY)
    return university, result, paths["catalog"]


def import_college() -> ImportResult:
    return read_export(COLLEGE, mapping=COLLEGE_MAP, scale="letter-us", pseudonymiser=KEY)


def interactions(frame: pd.DataFrame, student_ids=None, course_ids=None) -> Interactions:
    df = pd.DataFrame({"student": frame["student"], "course": frame["course"], "grade": frame["grade"]})
    if frame["term_key"].notna().all():
        df["term"] = frame["term_key"].astype("int64")
    return Interactions.from_frame(df, student_ids=student_ids, course_ids=course_ids)


def save_and_load(path: Path, fitted, train: Interactions, result: ImportResult):
    """Through the artifact, as in production; the validation RMSE sets the fold-in's noise level."""
    val = [h.val_metric for h in getattr(fitted, "history", []) if h.val_metric is not None]
    metrics = {"val_rmse": min(val) * result.scale.span} if val else {}
    names = dict(zip(result.frame["course"], result.frame["course_name"].fillna(""), strict=True))
    save_model(path, fitted, train, scale=result.scale, course_names=names, metrics=metrics)
    return load_model(path)


def percentiles(ms: np.ndarray) -> str:
    return " | ".join(f"{np.percentile(ms, q):7.3f}" for q in (50, 90, 99)) + f" | {ms.max():7.2f}"


# ------------------------------------------------------------------------------------------------- latency


FAMILIES = {
    "bias": lambda epochs: BiasModel(),
    "mf": lambda epochs: MatrixFactorization(),
    "knn": lambda epochs: ItemKNN(),
    "ensemble": lambda epochs: Ensemble(TrainConfig(epochs=epochs, seed=0), size=2),
    "blend": lambda epochs: Blend(lambda: NCF(TrainConfig(epochs=epochs, seed=0)), BiasModel, weight=0.7),
}


def latency(calls: int, workdir: Path, epochs: int, families: list[str]) -> None:
    config = SynthConfig(n_students=2000, n_courses=500, n_electives=300)
    _, result, catalog_path = import_synthetic(config, workdir / "synth500")
    catalog = read_catalog(catalog_path)
    train = interactions(result.frame, course_ids=[c.code for c in catalog])
    frame = result.frame
    requests = [
        list(zip(g["course"], g["mark"], strict=True)) for _, g in frame.groupby("student", sort=True) if len(g)
    ]
    sizes = np.array([len(r) for r in requests])
    term = "2023-Fall"
    rows = []
    for family in families:
        t0 = time.perf_counter()
        if family in FAMILIES:
            fitted = FAMILIES[family](epochs).fit(train)
        else:
            fitted = fit(train, TrainConfig(model=family, epochs=epochs, seed=0), progress=False)
        print(f"trained {family} on {len(train):,} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        model = save_and_load(workdir / f"model500-{family}", fitted, train, result)
        rec = Recommender(model, catalog)
        for r in requests[:100]:  # warm-up
            rec.recommend_for_grades(r, k=5, target_term=term)

        def timed(fn) -> np.ndarray:
            out = np.empty(calls)
            for i in range(calls):
                req = requests[i % len(requests)]
                t = time.perf_counter()
                fn(req)
                out[i] = time.perf_counter() - t
            return out * 1e3

        full = timed(lambda req, rec=rec: rec.recommend_for_grades(req, k=5, target_term=term))
        fold = timed(rec.fold_in)
        rows.append((family, full, fold))
    print(
        f"\n## fold-in latency: {train.n_courses} courses in the model, {len(catalog)} in the catalogue, "
        f"{calls:,} calls after 100 warm-up calls; grades per request: median {int(np.median(sizes))}, "
        f"max {sizes.max()}; torch {torch.__version__}, 1 thread\n"
    )
    print("| family | call                                   |  p50 ms |  p90 ms |  p99 ms |  max ms |")
    print("|--------|----------------------------------------|--------:|--------:|--------:|--------:|")
    for family, full, fold in rows:
        print(f"| {family:6} | recommend_for_grades (k=5, with term)  | {percentiles(full)} |")
        print(f"| {family:6} | fold_in only                           | {percentiles(fold)} |")


# ------------------------------------------------------------------------------------------------- accuracy


@dataclass
class StudentFolds:
    """Which fold each graded row's student is held out in, and which rows are test rows or set aside."""

    n_students: int
    row_fold: np.ndarray
    test: np.ndarray
    aside: np.ndarray


@dataclass
class FoldErrors:
    """Squared errors (grade units) and timings gathered over the folds."""

    priors: list[float]
    inside: list[np.ndarray] = field(default_factory=list)
    held_out: dict[float, list[np.ndarray]] = field(default_factory=dict)
    average: list[np.ndarray] = field(default_factory=list)
    per_fold: list[float] = field(default_factory=list)  # held-out / in-training RMSE per fold, first prior
    fold_in_seconds: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    best_epochs: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.held_out = {p: [] for p in self.priors}


def split_students(frame: pd.DataFrame, folds: int, seed: int) -> StudentFolds:
    rng = np.random.default_rng(seed)
    students = rng.permutation(np.array(sorted(frame["student"].unique())))
    fold_of = dict(zip(students.tolist(), np.arange(len(students)) % folds, strict=True))
    row_fold = frame["student"].map(fold_of).to_numpy()
    u = rng.random(len(frame))
    test = u < 0.2
    aside = (u >= 0.2) & (u < 0.28)  # 10% of the known 80%
    return StudentFolds(len(students), row_fold, test, aside)


def score_fold(
    f: int,
    name: str,
    frame: pd.DataFrame,
    split: StudentFolds,
    result: ImportResult,
    config: TrainConfig,
    workdir: Path,
    errors: FoldErrors,
) -> None:
    """Train without fold ``f``'s students, score the others' test rows, then fold ``f``'s students in."""
    test, aside = split.test, split.aside
    is_held = split.row_fold == f
    train = interactions(frame[~is_held & ~test & ~aside])
    val_rows = frame[~is_held & aside & frame["course"].isin(train.course_ids)]
    val = interactions(val_rows[val_rows["student"].isin(train.student_ids)], train.student_ids, train.course_ids)
    t0 = time.perf_counter()
    fitted = fit(train, config, validation=val, progress=False)
    errors.train_seconds += time.perf_counter() - t0
    errors.best_epochs.append(fitted.best_epoch)
    model = save_and_load(workdir / f"model-{name}-{f}", fitted, train, result)
    c_index = {c: i for i, c in enumerate(train.course_ids)}
    s_index = {s: i for i, s in enumerate(train.student_ids)}

    # In-training students: the trained model on their test rows (courses the model knows).
    rows = frame[~is_held & test & frame["course"].isin(c_index) & frame["student"].isin(s_index)]
    pred = fitted.predict(rows["student"].map(s_index).to_numpy(), rows["course"].map(c_index).to_numpy())
    errors.inside.append((pred - rows["grade"].to_numpy()) ** 2)

    first = len(errors.held_out[errors.priors[0]])
    fold_in_held_out(model, frame[is_held], split, c_index, errors)
    this_fold = np.concatenate(errors.held_out[errors.priors[0]][first:])
    errors.per_fold.append(float(np.sqrt(np.mean(this_fold)) / np.sqrt(np.mean(errors.inside[-1]))))


def fold_in_held_out(
    model, held: pd.DataFrame, split: StudentFolds, c_index: dict[str, int], errors: FoldErrors
) -> None:
    """Each held-out student folded in from their known grades (as marks), scored on their test rows."""
    test, aside, priors = split.test, split.aside, errors.priors
    for prior in priors:
        rec = Recommender(model, prior_strength=prior)
        average = rec.scores(rec.fold_in([]).embedding)
        for _, g in held.groupby("student", sort=True):
            known = g[~test[g.index] & ~aside[g.index] & g["course"].isin(c_index)]
            target = g[test[g.index] & g["course"].isin(c_index)]
            if target.empty:
                continue
            grades = list(zip(known["course"], known["mark"], strict=True))
            t = time.perf_counter()
            fold = rec.fold_in(grades)
            errors.fold_in_seconds.append(time.perf_counter() - t)
            idx = target["course"].map(c_index).to_numpy()
            errors.held_out[prior].append((rec.scores(fold.embedding)[idx] - target["grade"].to_numpy()) ** 2)
            if prior == priors[0]:
                errors.average.append((average[idx] - target["grade"].to_numpy()) ** 2)


def print_rmse_table(
    name: str, result: ImportResult, split: StudentFolds, folds: int, n_rows: int, errors: FoldErrors
) -> None:
    span, priors = result.scale.span, errors.priors

    def rmse(parts: list[np.ndarray]) -> float:
        return float(np.sqrt(np.mean(np.concatenate(parts)))) * span

    rmse_in = rmse(errors.inside)
    print(
        f"\n## fold-in accuracy on {name}: {split.n_students:,} students in {folds} folds (each held out once, in "
        f"training {folds - 1} times), {n_rows:,} graded rows, NeuMF best epochs {errors.best_epochs} "
        f"({errors.train_seconds:.0f} s of training); RMSE in {result.scale.name} points\n"
    )
    print("| students                                   | prior | test rows |   RMSE | vs in-training |")
    print("|--------------------------------------------|------:|----------:|-------:|---------------:|")
    n_in = sum(len(x) for x in errors.inside)
    print(f"| in training (trained embeddings)           |     - | {n_in:9,} | {rmse_in:6.4f} |          1.000 |")
    for prior in priors:
        n = sum(len(x) for x in errors.held_out[prior])
        r = rmse(errors.held_out[prior])
        print(f"| held out, folded in                        | {prior:5g} | {n:9,} | {r:6.4f} | {r / rmse_in:14.3f} |")
    n = sum(len(x) for x in errors.average)
    r = rmse(errors.average)
    print(f"| held out, average student (no grades used) |     - | {n:9,} | {r:6.4f} | {r / rmse_in:14.3f} |")
    per_fold = ", ".join(f"{x:.3f}" for x in errors.per_fold)
    print(f"\nper fold (prior {priors[0]:g}): held-out / in-training RMSE " + per_fold)
    print(f"fold-in time per student: median {np.median(errors.fold_in_seconds) * 1e3:.2f} ms")


def rmse_comparison(
    name: str,
    result: ImportResult,
    config: TrainConfig,
    priors: list[float],
    workdir: Path,
    folds: int = 5,
    seed: int = 0,
) -> None:
    """Cross-fitted over ``folds`` student folds, so both sides are scored on the same test rows: every student
    is held out (folded in) once and in training the other ``folds − 1`` times."""
    frame = result.frame[result.frame["grade"].notna()].reset_index(drop=True)
    split = split_students(frame, folds, seed)
    errors = FoldErrors(priors)
    for f in range(folds):
        score_fold(f, name, frame, split, result, config, workdir, errors)
    print_rmse_table(name, result, split, folds, len(frame), errors)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("latency", "rmse", "both"), default="both")
    p.add_argument("--datasets", nargs="*", default=["synth", "college"], choices=["synth", "college"])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--latency-epochs", type=int, default=5, help="training epochs of the latency model")
    p.add_argument("--priors", type=float, nargs="*", default=[1.0], help="fold-in prior strengths to compare")
    p.add_argument("--epochs", type=int, default=None, help="max training epochs (default: TrainConfig's)")
    p.add_argument("--folds", type=int, default=5, help="student folds of the accuracy comparison")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--families",
        nargs="*",
        default=["neumf", "bias", "mf", "knn", "ensemble", "blend"],
        help="families timed in the latency part",
    )
    args = p.parse_args()
    # One thread: on a shared 2-core machine more threads make tiny batches far slower, not faster.
    torch.set_num_threads(args.threads)
    config = TrainConfig(epochs=args.epochs, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.part in ("latency", "both"):
            latency(args.calls, work, args.latency_epochs, args.families)
        if args.part in ("rmse", "both"):
            for name in args.datasets:
                if name == "synth":
                    _, result, _ = import_synthetic(SynthConfig(), work / "synth")
                else:
                    if not COLLEGE.exists():
                        print(f"skipping college_grades: {COLLEGE} not found", file=sys.stderr)
                        continue
                    result = import_college()
                rmse_comparison(name, result, config, args.priors, work, folds=args.folds)


if __name__ == "__main__":
    main()
