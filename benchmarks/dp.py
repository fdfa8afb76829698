"""The accuracy cost of differential privacy: NeuMF trained with DP-SGD (`electives.models.privacy`) at ε ∈ {1, 3, 8}
against the plain model (ε = ∞), on the synthetic university (default size) and college_grades.

Protocol: each data set's graded rows are split at random into train (80%) and test (20%); training carves its own
validation split (random 10% of train) for early stopping, as `electives train` does. Privacy unit: a student
(their whole record); δ = min(1e-5, n^-1.1) over the students trained on; PRV accountant; clipping C = 1. DP runs
use the DP defaults (batch = 128 students, 15 epochs, lr 1e-2, Poisson sampling); ε = ∞ is `fit` with the plain
defaults (the product's non-private training). Every row uses small towers (GMF 8, MLP 8 → 16,8) to keep the
run short. The DP noise uses a fixed seed here so the table can be reproduced
(the product draws it from OS entropy).

Metrics on the test rows: RMSE (explicit model) in the scale's points (percent for the synthetic university,
letter-us points for college_grades). HR@10/NDCG@10 come from the IMPLICIT model (the same train rows as
enrolments, no grades): each held-out enrolment is ranked among up to 99 sampled courses the student never took
(fewer when the catalogue is small; "negatives" says how many). Ranking held-out courses by an explicit model's
predicted GRADE measures nothing useful (a course one took is not one predicted to go well: it scores about the
random 10%), so the ranking metric comes from the model trained to rank. "epochs" is run/best (early stopping
on the validation split, which ends the run before the planned steps and so spends less than the budget).
Training time includes the noise calibration.

    .venv/bin/python benchmarks/dp.py                         # both data sets, ε = 1, 3, 8, ∞ (~10 min, 1 thread)
    .venv/bin/python benchmarks/dp.py --datasets college --epsilons 1 8
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from foldin import import_college, import_synthetic

from electives.data.interactions import Interactions
from electives.data.splits import random_split
from electives.data.synth import SynthConfig
from electives.evaluation.evaluate import evaluate
from electives.models.baselines import BiasModel, GlobalMean, Popularity
from electives.models.privacy import PrivacyConfig, default_delta, fit_private
from electives.models.training import TrainConfig, fit

# Small towers for every row (DP and plain alike): the per-student gradients of DP-SGD cost ~4× less than with
# the default sizes, and accuracy at these budgets is the same (measured at ε = 8 on the synthetic university).
SIZES = {"gmf_dim": 8, "mlp_dim": 8, "mlp_layers": (16, 8)}


def load(name: str, workdir: Path) -> tuple[Interactions, float]:
    """Graded interactions and the scale's span (points per normalised unit)."""
    result = import_synthetic(SynthConfig(), workdir)[1] if name == "synth" else import_college()
    frame = result.frame[result.frame["grade"].notna()]
    df = pd.DataFrame({"student": frame["student"], "course": frame["course"], "grade": frame["grade"]})
    if frame["term_key"].notna().all():
        df["term"] = frame["term_key"].astype("int64")
    return Interactions.from_frame(df), result.scale.span


def run(name: str, epsilons: list[float], seed: int) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        data, span = load(name, Path(tmp))
    train, test = random_split(data, 0.2, seed)
    # Implicit mode sees the same rows as enrolments (no grades).
    enrolled = [Interactions(d.students, d.courses, None, d.terms, d.student_ids, d.course_ids) for d in (train, test)]
    rows = []
    for eps in epsilons:
        row: dict[str, object] = {"data": name, "ε": "∞" if np.isinf(eps) else f"{eps:g}"}
        for mode, (tr, te) in (("explicit", (train, test)), ("implicit", tuple(enrolled))):
            config = TrainConfig(
                mode=mode, seed=seed, validation="random" if mode == "explicit" else None, **SIZES
            )  # fmt: skip
            start = time.perf_counter()
            if np.isinf(eps):
                fitted, spent, sigma = fit(tr, config, progress=False), float("inf"), 0.0
            else:
                fitted, report = fit_private(tr, config, PrivacyConfig(epsilon=eps), progress=False, noise_seed=seed)
                spent, sigma = report.epsilon, report.noise_multiplier
            seconds = time.perf_counter() - start
            result = evaluate({"m": fitted}, tr, te, k=10, n_negatives=99, scale_range=span, seed=seed)
            m = result.metrics["m"]
            spent_text = "∞" if np.isinf(spent) else f"{spent:.2f}"
            if mode == "explicit":
                row.update(RMSE=f"{m['rmse']:.3f}", **{"ε spent (expl.)": spent_text, "σ (expl.)": f"{sigma:.2f}"})
                row.update(
                    **{
                        "epochs (expl.)": f"{len(fitted.history)}/{fitted.best_epoch}",
                        "train s (expl.)": f"{seconds:.0f}",
                    }
                )
            else:
                row.update(**{"HR@10": f"{m['hr@10_sampled']:.3f}", "NDCG@10": f"{m['ndcg@10_sampled']:.3f}"})
                row.update(**{"ε spent (impl.)": spent_text, "σ (impl.)": f"{sigma:.2f}"})
                row.update(
                    **{
                        "epochs (impl.)": f"{len(fitted.history)}/{fitted.best_epoch}",
                        "train s (impl.)": f"{seconds:.0f}",
                    }
                )
                row["negatives"] = str(result.info["n_negatives"])
        rows.append(row)
        print(" | ".join(str(v) for v in row.values()), flush=True)
    # For scale: the trivial models a DP model must beat to be worth anything (not private themselves).
    gm = evaluate({"m": GlobalMean().fit(train)}, train, test, k=10, n_negatives=0, scale_range=span).metrics["m"]
    pop = evaluate({"m": Popularity().fit(enrolled[0])}, *enrolled, k=10, n_negatives=99, seed=seed).metrics["m"]
    bias = evaluate({"m": BiasModel().fit(train)}, train, test, k=10, n_negatives=0, scale_range=span).metrics["m"]
    rows.append({"data": name, "ε": "bias model (not private)", "RMSE": f"{bias['rmse']:.3f}"})
    rows.append(
        {"data": name, "ε": "global mean / popularity", "RMSE": f"{gm['rmse']:.3f}", "HR@10": f"{pop['hr@10_sampled']:.3f}",
         "NDCG@10": f"{pop['ndcg@10_sampled']:.3f}"}
    )  # fmt: skip
    print(" | ".join(str(v) for v in rows[-1].values()), flush=True)
    n_students = int(np.count_nonzero(np.bincount(train.students, minlength=train.n_students)))
    print(f"{name}: {len(train):,} train rows, {len(test):,} test rows, {n_students:,} students in train, "
          f"δ ≈ {default_delta(n_students):.2g}")  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", choices=("synth", "college"), default=["synth", "college"])
    p.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 3.0, 8.0, float("inf")])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1, the machine is shared)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.datasets:
        rows += run(name, args.epsilons, args.seed)
    table = pd.DataFrame(rows).astype(object).fillna("")
    print()
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, torch threads {args.threads}")
    print(table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
