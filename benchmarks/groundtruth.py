"""Ground truth: how much of the best possible grade gain the top-5 recommendations capture.

The synthetic university (default config: 2,000 students, 80 courses, 30 electives) knows every student's TRUE
expected grade in every course. Models are trained on the whole export (each student's history, imported as
`electives import` would), then for every student still enrolled next term (2023-Fall) the electives eligible
then (catalogue rules: elective, not passed, prerequisites passed, offered in the term) are ranked. Reported per
model: the mean true grade of its top 5, of a random eligible pick (the mean over the eligible set) and of the
oracle's best 5, and the share of the oracle's lift captured, (rec − random) / (oracle − random). Students with
5 or fewer eligible electives have nothing to choose and are left out. Targets: NeuMF ≥ 80%, the served choice
(what `electives train` picks by default) ≥ 90%.

    .venv/bin/python benchmarks/groundtruth.py
    .venv/bin/python benchmarks/groundtruth.py --neumf default "embedding_l2=1e-4" "mlp_layers=64-32-16,lr=0.002"

Each --neumf entry is a NeuMF TrainConfig: "default" or comma-separated FIELD=VALUE overrides (tuples with -).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch
from foldin import KEY, import_synthetic, interactions

from electives.data.synth import SynthConfig
from electives.evaluation.ground_truth import ground_truth_lift
from electives.models import baselines as B
from electives.models.selection import select
from electives.models.training import TrainConfig, fit


def parse_config(text: str) -> TrainConfig:
    if text == "default":
        return TrainConfig()
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    values = {}
    for item in text.split(","):
        name, _, raw = item.partition("=")
        name = name.strip()
        if name not in types:
            raise SystemExit(f"unknown TrainConfig field {name!r}")
        kind = str(types[name])
        if "tuple" in kind:
            values[name] = tuple(int(x) for x in raw.split("-"))
        elif "bool" in kind:
            values[name] = raw.lower() in ("1", "true", "yes")
        elif "int" in kind and "float" not in kind:
            values[name] = int(raw)
        elif "float" in kind:
            values[name] = float(raw)
        else:
            values[name] = raw
    return TrainConfig(**values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--neumf", nargs="*", default=["default"], help="NeuMF configurations to compare")
    p.add_argument("--baselines", nargs="*", default=["bias", "mf", "course-mean", "item-knn"])
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--students", type=int, default=SynthConfig.n_students)
    p.add_argument("--seed", type=int, default=SynthConfig.seed, help="synthetic university seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-served", dest="served", action="store_false", help="skip the served choice (selection)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)  # tiny batches: more threads on a shared 2-core machine only slow it down

    with tempfile.TemporaryDirectory() as tmp:
        config = SynthConfig(n_students=args.students, seed=args.seed)
        university, result, _ = import_synthetic(config, Path(tmp))
    train = interactions(result.frame)
    print(
        f"synthetic university seed {config.seed}: {config.n_students:,} students, {config.n_courses} courses "
        f"({config.n_electives} electives); training on {len(train):,} graded rows"
    )

    models, seconds, notes = {}, {}, {}
    if args.served:
        # What `electives train` serves by default: next-term selection among every family, then a refit.
        t0 = time.perf_counter()
        sel = select(train, TrainConfig(seed=0).resolved(), progress=False, scale_range=100.0)
        name = "served choice (electives train)"
        models[name], seconds[name], notes[name] = sel.model, time.perf_counter() - t0, f"chose {sel.chosen}"
    for text in args.neumf:
        cfg = parse_config(text)
        t0 = time.perf_counter()
        fitted = fit(train, cfg, progress=False)
        name = f"NeuMF {text}"
        models[name], seconds[name] = fitted, time.perf_counter() - t0
        val = [h.val_metric for h in fitted.history if h.val_metric is not None]
        notes[name] = f"best epoch {fitted.best_epoch}, val RMSE {min(val) * 100:.2f}" if val else ""
    factories = {
        "bias": ("BiasModel", B.BiasModel),
        "mf": ("MatrixFactorization", B.MatrixFactorization),
        "course-mean": ("CourseMean", B.CourseMean),
        "item-knn": ("ItemKNN", B.ItemKNN),
    }
    for key in args.baselines:
        name, factory = factories[key]
        t0 = time.perf_counter()
        models[name] = factory().fit(train)
        seconds[name] = time.perf_counter() - t0

    lift = ground_truth_lift(university, train, models, pseudonymiser=KEY, k=args.k)
    first = next(iter(lift.values()))
    print(
        f"\n## ground truth, top-{args.k} next-term electives: {first.students:,} students with more than "
        f"{args.k} eligible; mean TRUE grade in percent points\n"
    )
    print(f"random eligible pick: {first.random:.2f}, oracle's best {args.k}: {first.oracle:.2f}\n")
    print("| model                                    | top-5 true grade | lift captured | fit s | note |")
    print("|------------------------------------------|-----------------:|--------------:|------:|------|")
    for name, r in lift.items():
        print(
            f"| {name:<40} | {r.recommended:16.2f} | {r.share:12.1%} | {seconds[name]:5.0f} | {notes.get(name, '')} |"
        )


if __name__ == "__main__":
    main()
