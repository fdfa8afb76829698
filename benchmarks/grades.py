"""Real grades, explicit mode: each student's latest term held out; RMSE / MAE in grade points (0–4).

Data (see ../shared/data/README.md):
- college_grades: College_grades.csv, course = dept+level, grade = gradepoint (0–4; NC counts as 0), read with
  the importer exactly as `electives import` would (duplicates dropped, latest attempt of a retake kept);
- karypis_sample: sample.train + sample.val + sample.test joined (3,000 rows), grades 0–4 in thirds.
Each student's latest term is the test set (students with one term stay in training). NeuMF is trained on the
rest (early stopping on a validation split carved from it); so are the baselines. Anchors measured with
independent code: college_grades best 0.542 (bias model), karypis_sample best 0.599 (SVD).

    .venv/bin/python benchmarks/grades.py                        # NeuMF defaults
    .venv/bin/python benchmarks/grades.py --auto                 # --model auto: best of neumf/gmf/mlp on validation
    .venv/bin/python benchmarks/grades.py --tune 30              # Optuna on each set's training part, then fit
    .venv/bin/python benchmarks/grades.py --neumf "embedding_l2=1e-3,gmf_dim=8" --seeds 0 1 2
    .venv/bin/python benchmarks/grades.py --biases --seeds 0 1 2   # probe: student + course bias terms on NeuMF
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from groundtruth import parse_config

from electives.data.importing import read_export
from electives.data.interactions import Interactions
from electives.data.pseudonyms import Pseudonymiser
from electives.data.splits import temporal, validation_split
from electives.evaluation.evaluate import evaluate
from electives.models import baselines as B
from electives.models.training import fit
from electives.models.tuning import compare, tune

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ELECTIVES_DATA", ROOT / "../shared/data")) / "student-grades"
ANCHORS = {"college_grades": ("bias", 0.542), "karypis_sample": ("SVD", 0.599)}
# Pseudonyms only need to be consistent within a run.
PSEUDO = Pseudonymiser(b"benchmark-grades-not-a-secret")

BASELINES = {
    "global-mean": B.GlobalMean,
    "student-mean": B.StudentMean,
    "course-mean": B.CourseMean,
    "bias": B.BiasModel,
    "mf": B.MatrixFactorization,
    "knn": B.ItemKNN,
}


def load(name: str) -> tuple[Interactions, float]:
    """All graded rows of one set as Interactions with terms, and the scale's span (4 grade points)."""
    if name == "college_grades":
        path = DATA / "college_grades" / "College_grades.csv"
        result = read_export(
            path, mapping={"course": "dept+level", "grade": "gradepoint"}, scale="gpa4", pseudonymiser=PSEUDO
        )
    elif name == "karypis_sample":
        parts = [(DATA / "karypis_sample" / f"sample.{p}").read_text() for p in ("train", "val", "test")]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "karypis_sample.txt"
            path.write_text("".join(p if p.endswith("\n") else p + "\n" for p in parts))
            result = read_export(
                path, header=False, columns=["student", "course", "term", "grade"], scale="gpa4", pseudonymiser=PSEUDO
            )
    else:
        raise SystemExit(f"unknown set {name!r}")
    f = result.frame
    frame = pd.DataFrame(
        {"student": f["student"], "course": f["course"], "grade": f["grade"], "term": f["term_key"].astype("int64")}
    )
    assert result.scale is not None
    return Interactions.from_frame(frame[frame["grade"].notna()]), result.scale.span


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="*", default=list(ANCHORS), choices=list(ANCHORS))
    p.add_argument("--neumf", default="default", help="TrainConfig overrides, e.g. 'embedding_l2=1e-3,gmf_dim=8'")
    p.add_argument("--auto", action="store_true", help="pick neumf/gmf/mlp (and imbalance) on validation")
    p.add_argument("--tune", type=int, default=0, metavar="N", help="Optuna trials on each set's training part")
    p.add_argument("--seeds", type=int, nargs="*", default=[0], help="NeuMF training seeds (mean reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--biases", action="store_true", help="probe: add student and course bias terms to NeuMF")
    args = p.parse_args()
    if args.biases:
        # A probe, not a product option: NeuMF with bias terms stands in wherever training builds a NeuMF.
        from ml1m_probes import BiasedNeuMF

        import electives.models.training as training

        plain = training.build_model
        training.build_model = lambda kind, *a, **k: BiasedNeuMF(*a, **k) if kind == "neumf" else plain(kind, *a, **k)
    torch.set_num_threads(args.threads)
    base = parse_config(args.neumf)
    print(f"data: {DATA}\nNeuMF starting config: {base.resolved()}")
    summary = []
    for name in args.sets:
        data, span = load(name)
        train, test = temporal(data)
        print(
            f"\n{name}: {len(data):,} graded rows, {data.n_students} students, {data.n_courses} courses; "
            f"train {len(train):,}, test {len(test):,} (latest term of {len(np.unique(test.students))} students)"
        )
        config, label, t_tune = base.resolved(), "neumf", 0.0
        if args.tune:
            t0 = time.perf_counter()
            tuned = tune(train, config, trials=args.tune, seed=0)
            t_tune = time.perf_counter() - t0
            config, label = tuned.best_config, "neumf (tuned)"
            print(tuned.table(scale_range=span))
            print(f"tuned config: {config}")
        models, seconds, epochs = {}, {}, {}
        neumf_rmse, neumf_mae = [], []
        for seed in args.seeds:
            cfg = replace(config, seed=seed)
            t0 = time.perf_counter()
            seen = train  # the set the model was fitted on (the evaluator checks its fingerprint)
            if args.auto:
                fit_data, val = validation_split(train, cfg.validation, cfg.val_fraction, cfg.seed)
                sel = compare(fit_data, val, cfg)
                fitted, seen = sel.best, fit_data
                print(
                    f"  seed {seed}: --model auto chose {sel.chosen}: "
                    + ", ".join(f"{c.name} {c.value * span:.4f}" for c in sel.candidates)
                )
            else:
                fitted = fit(train, cfg, progress=args.progress)
            seconds_fit = time.perf_counter() - t0
            res = evaluate({"neumf": fitted}, seen, test, scale_range=span, n_negatives=0, full_catalogue=False)
            neumf_rmse.append(res.metrics["neumf"]["rmse"])
            neumf_mae.append(res.metrics["neumf"]["mae"])
            seconds[label] = seconds.get(label, 0.0) + seconds_fit
            epochs[label] = f"{fitted.best_epoch}/{len(fitted.history)}"
        for bname, make in BASELINES.items():
            t0 = time.perf_counter()
            models[bname] = make().fit(train)
            seconds[bname] = time.perf_counter() - t0
        res = evaluate(models, train, test, scale_range=span, n_negatives=0, full_catalogue=False)
        rows = [
            {
                "model": label + (" auto" if args.auto else ""),
                "rmse": float(np.mean(neumf_rmse)),
                "rmse_sd": float(np.std(neumf_rmse)) if len(neumf_rmse) > 1 else float("nan"),
                "mae": float(np.mean(neumf_mae)),
                "fit_s": seconds[label] / len(args.seeds) + t_tune,
                "epochs": epochs[label],
            }
        ]
        for bname, m in res.metrics.items():
            rows.append(
                {"model": bname, "rmse": m["rmse"], "rmse_sd": float("nan"), "mae": m["mae"], "fit_s": seconds[bname]}
            )
        df = pd.DataFrame(rows)
        print(df.to_string(index=False, float_format=lambda x: f"{x:.4f}", na_rep=""))
        best_base = df.iloc[1:].sort_values("rmse").iloc[0]
        anchor_name, anchor = ANCHORS[name]
        verdict = "below" if df.iloc[0]["rmse"] < best_base["rmse"] else "NOT below"
        summary.append(
            f"{name}: NeuMF {df.iloc[0]['rmse']:.4f} is {verdict} the best baseline of this run "
            f"({best_base['model']} {best_base['rmse']:.4f}); anchor {anchor_name} {anchor:.3f}"
        )
    print("\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
