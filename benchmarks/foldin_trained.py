"""Fold-in of a trained student from the very courses they were trained on, per training step (issue 14): does it
rank the untaken courses as the trained vector does, and does it reach the MAP objective the trained vector is one
candidate for?

The implicit checkerboard of tests/checkerboard.py (60 students, each taking 7 of the 10 courses of their own parity)
and the contract test's NeuMF (tests/test_model_contract.py: GMF 8, MLP 8 → [16, 8], 30 epochs, lr 5e-3, batch 64),
one fit per training step and seed. Per fit: the contract test's figures over students 0, 6, …, 54 (mean correlation
of trained and folded-in scores over the untaken courses, > 0.9 to pass; students whose top 3 agree, all 10 to
pass); how many of those 10 the trained vector and the fold-in each rank with their own group's 3 untaken courses
on top; and over all 60 students the fold-in's objective over the trained vector's (−log posterior under the
fold-in's prior; > 1: the fold-in stopped above a point it could have reached) and its Gauss–Newton steps.

    .venv/bin/python benchmarks/foldin_trained.py --threads 1
    .venv/bin/python benchmarks/foldin_trained.py --steps rows --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from checkerboard import checkerboard, implicit_fold_in_objective

from electives.data.interactions import Interactions
from electives.models.config import TrainConfig
from electives.models.interface import FoldInOptions
from electives.models.ncf_foldin import Prior
from electives.models.training import NCF

SMALL = {
    "gmf_dim": 8,
    "mlp_dim": 8,
    "mlp_layers": (16, 8),
    "epochs": 30,
    "lr": 5e-3,
    "batch_size": 64,
    "validation": "none",
    "mode": "implicit",
}


def one_fit(data: Interactions, step: str, seed: int) -> dict[str, object]:
    """The figures of one fit (see the module docstring)."""
    model = NCF(TrainConfig(model="neumf", seed=seed, training_step=step, **SMALL)).fit(data)
    vectors = model.student_vectors()
    prior = Prior.of_students(vectors, shrinkage=FoldInOptions().shrinkage)
    group = np.array([int(c[1:]) % 2 for c in data.course_ids])
    correlations, same, trained_own, folded_own, ratios, steps = [], 0, 0, 0, [], []
    for u in range(data.n_students):
        taken = sorted({int(c) for c in data.courses[data.students == u]})
        fold = model.fold_in(dict.fromkeys(taken, 1.0))
        ratios.append(fold.objective / implicit_fold_in_objective(model, prior, vectors[u], taken))
        steps.append(fold.iterations)
        if u % 6:
            continue
        untaken = np.setdiff1d(np.arange(data.n_courses), taken)
        trained, folded = model.scores(vectors[u])[untaken], model.scores(fold.embedding)[untaken]
        correlations.append(np.corrcoef(trained, folded)[0, 1])
        top_trained, top_folded = set(np.argsort(-trained)[:3]), set(np.argsort(-folded)[:3])
        own = set(np.flatnonzero(group[untaken] == u % 2))
        same += top_trained == top_folded
        trained_own += top_trained == own
        folded_own += top_folded == own
    return {
        "step": step,
        "seed": seed,
        "mean corr": round(float(np.mean(correlations)), 3),
        "same top 3": same,
        "test passes": "yes" if np.mean(correlations) > 0.9 and same == len(correlations) else "no",
        "trained top 3 = own group": trained_own,
        "folded top 3 = own group": folded_own,
        "objective ratio max": round(max(ratios), 2),
        "objective ratio mean": round(float(np.mean(ratios)), 2),
        "steps mean": round(float(np.mean(steps)), 2),
    }


def print_markdown(frame: pd.DataFrame) -> None:
    """``frame`` as a markdown table (the index as the first column when it is named)."""
    if frame.index.name:
        frame = frame.reset_index()
    print("| " + " | ".join(map(str, frame.columns)) + " |")
    print("|" + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in frame.columns) + "|")
    for row in frame.itertuples(index=False):
        print("| " + " | ".join(map(str, row)) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", nargs="*", default=["dense", "rows"], choices=["dense", "rows"])
    p.add_argument("--seeds", type=int, nargs="*", default=list(range(10)))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = checkerboard(implicit=True, n_students=60)
    rows = [one_fit(data, step, seed) for step in args.steps for seed in args.seeds]
    table = pd.DataFrame(rows)
    print_markdown(table)
    summary = table.groupby("step").agg(
        passes=("test passes", lambda x: f"{(x == 'yes').sum()}/{len(x)}"),
        mean_corr=("mean corr", "mean"),
        same_top3=("same top 3", "sum"),
        trained_own=("trained top 3 = own group", "sum"),
        folded_own=("folded top 3 = own group", "sum"),
        ratio_max=("objective ratio max", "max"),
        steps=("steps mean", "mean"),
    )
    print()
    print_markdown(summary.round(3))


if __name__ == "__main__":
    main()
