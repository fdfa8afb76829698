"""MovieLens-100K, explicit mode: RMSE / MAE in stars on the five standard folds u1…u5.

Ratings 1–5 are normalised to [0, 1] as (r − 1) / 4 (as an institution's grade scale would be), models are
trained on u{k}.base and scored on u{k}.test; errors are reported in stars (scale range 4). Anchors (Surprise,
5-fold mean): BaselineOnly 0.946, SVD 0.938. Target for NeuMF: ≤ 0.915.

    .venv/bin/python benchmarks/ml100k.py --folds 1          # one fold
    .venv/bin/python benchmarks/ml100k.py                    # all five
    .venv/bin/python benchmarks/ml100k.py --config best.json # a configuration from `electives tune`

Flags override the configuration file; without either, NeuMF uses the explicit mode's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import fields
from pathlib import Path

import pandas as pd
import torch

from electives.data.interactions import Interactions
from electives.evaluation.evaluate import evaluate
from electives.models import baselines as B
from electives.models.training import TrainConfig, fit
from electives.models.tuning import config_values

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ELECTIVES_DATA", ROOT / "../shared/data")) / "ml-100k"
COLUMNS = ["student", "course", "grade", "term"]


def load_fold(k: int) -> tuple[Interactions, Interactions]:
    base = pd.read_csv(DATA / f"u{k}.base", sep="\t", names=COLUMNS)
    test = pd.read_csv(DATA / f"u{k}.test", sep="\t", names=COLUMNS)
    for df in (base, test):
        df["grade"] = (df["grade"] - 1) / 4.0
    both = pd.concat([base, test])
    s_ids = sorted(set(both["student"].astype(str)))
    c_ids = sorted(set(both["course"].astype(str)))
    return (
        Interactions.from_frame(base, s_ids, c_ids),
        Interactions.from_frame(test, s_ids, c_ids),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folds", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    p.add_argument("--models", nargs="*", default=["mean", "bias", "mf", "knn", "neumf"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--config", metavar="FILE.json", help="NeuMF settings (e.g. from electives tune)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--embedding-l2", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--gmf-dim", type=int)
    p.add_argument("--mlp-dim", type=int)
    p.add_argument("--mlp-layers", type=lambda t: tuple(int(x) for x in t.split(",")))
    p.add_argument("--model", choices=["neumf", "gmf", "mlp"])
    p.add_argument("--pretrain", action="store_true", default=None)
    p.add_argument("--loss", choices=["mse", "huber", "l1"])
    p.add_argument("--seed", type=int)
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    values = config_values(json.loads(Path(args.config).read_text()), args.config) if args.config else {}
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    config = TrainConfig(**{**values, **given, "mode": "explicit"})
    print(f"data: {DATA}\nNeuMF config: {config.resolved()}")
    makers = {
        "mean": lambda: B.GlobalMean(),
        "bias": lambda: B.BiasModel(),
        "mf": lambda: B.MatrixFactorization(),
        "knn": lambda: B.ItemKNN(),
        "neumf": None,
    }
    rows = []
    for k in args.folds:
        train, test = load_fold(k)
        models, fit_seconds, epochs = {}, {}, {}
        for name in args.models:
            t0 = time.perf_counter()
            if name == "neumf":
                fitted = fit(train, config, progress=args.progress)
                epochs[name] = f"{fitted.best_epoch}/{len(fitted.history)}"
                models[name] = fitted
            else:
                models[name] = makers[name]().fit(train)
            fit_seconds[name] = time.perf_counter() - t0
        res = evaluate(models, train, test, scale_range=4.0, n_negatives=0, full_catalogue=False)
        for name, m in res.metrics.items():
            rows.append(
                {
                    "fold": k,
                    "model": name,
                    "rmse": m["rmse"],
                    "mae": m["mae"],
                    "fit_s": fit_seconds[name],
                    "epochs": epochs.get(name, ""),
                }
            )
            print(f"u{k} {name:6s} rmse {m['rmse']:.4f}  mae {m['mae']:.4f}  fit {fit_seconds[name]:.1f}s", flush=True)
    df = pd.DataFrame(rows)
    print("\nper fold:\n" + df.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    summary = df.groupby("model", sort=False)[["rmse", "mae", "fit_s"]].mean()
    print(f"\nmean over folds {args.folds}:\n" + summary.to_string(float_format=lambda x: f"{x:.4f}"))


if __name__ == "__main__":
    main()
