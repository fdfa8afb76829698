"""Fold-in per baseline family on real grades: does a student the model never saw, folded in from their grades,
get predictions as good as a trained student's?

Data and split as benchmarks/grades.py: each student's latest term is the test set (students with one term stay in
training). Then 20% of the students are held out of training entirely (seeded; `--splits` draws); the model is
fitted on the other students' training terms. Trained RMSE: the model on the trained students' latest-term grades.
Folded RMSE: each held-out student folded in from their training-term grades (``fold_in`` with the default
options), then scored on their latest-term grades. "No fold-in" scores held-out students from an empty fold-in
(the family's cold start), for scale. RMSE in grade points (0–4), the mean over splits; target: folded within 10%
of trained.

    .venv/bin/python benchmarks/foldin_families.py
    .venv/bin/python benchmarks/foldin_families.py --sets college_grades --splits 10 --families mf
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grades import ANCHORS, load

from electives.data.interactions import Interactions
from electives.data.splits import temporal
from electives.models import baselines as B
from electives.models.interface import Model

FAMILIES: dict[str, Callable[[], Model]] = {
    "bias": B.BiasModel,
    "mf": B.MatrixFactorization,
    "knn": B.ItemKNN,
}


def entries(train: Interactions, student: int) -> dict[int, float]:
    """A student's training-term grades as a fold-in would get them (a retaken course: the later row)."""
    rows = np.flatnonzero(train.students == student)
    rows = rows[np.argsort(train.terms[rows], kind="stable")]
    return {int(train.courses[r]): float(train.grades[r]) for r in rows}


def rmse(errors: list[np.ndarray]) -> float:
    e = np.concatenate(errors) if errors else np.zeros(0)
    return float(np.sqrt(np.mean(e**2))) if len(e) else float("nan")


def one_split(make: Callable[[], Model], train: Interactions, test: Interactions, seed: int) -> dict[str, float]:
    """Fit without 20% of the students; their latest term scored after fold-in, the others' as trained."""
    rng = np.random.default_rng(seed)
    held = rng.random(train.n_students) < 0.2
    t0 = time.perf_counter()
    model = make().fit(train.subset(~held[train.students]))
    fit_s = time.perf_counter() - t0
    seen = ~held[test.students]
    trained = [model.predict(test.students[seen], test.courses[seen]) - test.grades[seen]]
    folded, cold, steps, t_fold = [], [], [], 0.0
    empty = model.scores(model.fold_in({}).embedding)
    for u in np.unique(test.students[~seen]):
        rows = test.students == u
        t0 = time.perf_counter()
        fold = model.fold_in(entries(train, u))
        t_fold += time.perf_counter() - t0
        steps.append(fold.iterations)
        folded.append(model.scores(fold.embedding)[test.courses[rows]] - test.grades[rows])
        cold.append(empty[test.courses[rows]] - test.grades[rows])
    return {
        "trained": rmse(trained),
        "folded": rmse(folded),
        "no fold-in": rmse(cold),
        "held-out students": float(len(folded)),
        "fit_s": fit_s,
        "fold_ms": 1000 * t_fold / max(1, len(folded)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="*", default=list(ANCHORS), choices=list(ANCHORS))
    p.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--splits", type=int, default=5, help="held-out student draws (seeds 0..N-1), averaged")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.sets:
        data, span = load(name)
        train, test = temporal(data)
        for family in args.families:
            runs = pd.DataFrame([one_split(FAMILIES[family], train, test, seed) for seed in range(args.splits)])
            mean = runs.mean()
            ratios = runs["folded"] / runs["trained"]
            rows.append(
                {
                    "set": name,
                    "family": family,
                    "trained": mean["trained"] * span,
                    "folded": mean["folded"] * span,
                    "no fold-in": mean["no fold-in"] * span,
                    "folded/trained": float(ratios.mean()),
                    "ratio min–max": f"{ratios.min():.3f}–{ratios.max():.3f}",
                    "held-out": f"{mean['held-out students']:.0f}",
                    "fit_s": mean["fit_s"],
                    "fold_ms": mean["fold_ms"],
                }
            )
    table = pd.DataFrame(rows)
    print(f"RMSE in grade points, mean over {args.splits} held-out-student draws (20% of students each)")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))


if __name__ == "__main__":
    main()
