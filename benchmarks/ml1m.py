"""MovieLens-1M, implicit mode, leave-one-out: HR@10 / NDCG@10 sampled and over the full catalogue.

Data: ${ELECTIVES_DATA:-../shared/data}/ml-1m/loo/ (train.tsv.gz user<TAB>movie; test.tsv one held-out movie
per user; negatives.tsv.gz 99 negatives per user in test.tsv's order). Sampled metrics rank the test movie
among itself and its 99 given negatives (He et al. 2017); full-catalogue metrics rank it among every movie
not in the user's training pairs. Anchors: EASE λ=1000 0.722 / 0.451 sampled. Target for NeuMF from the
implicit TrainConfig defaults: HR@10 ≥ 0.73, NDCG@10 ≥ 0.45 sampled, HR@10 ≥ 0.107 full, ≤ 15 min on 2 cores.

    .venv/bin/python benchmarks/ml1m.py --epochs 2            # time a few epochs
    .venv/bin/python benchmarks/ml1m.py                       # NeuMF from the defaults, EASE, popularity

The served choice (issue 14): `--served` runs what `electives train --mode implicit` does with its defaults
(`train_model(…, model="auto")`: EASE, iALS, NeuMF, a NeuMF seed ensemble and a blend chosen on each user's
newest training movie, the winner refitted on every row) once per `--seeds`, and scores the served model beside
the best EASE, iALS and NeuMF of its selection (each refitted on every row at the settings validation chose).
Target: the served model's HR@10 ≥ 0.73 and NDCG@10 ≥ 0.45 sampled and full-catalogue HR@10 ≥ EASE's, mean of
3 seeds, the whole `train` ≤ 15 minutes on 2 cores.

    .venv/bin/python benchmarks/ml1m.py --served --seeds 0 1 2 --threads 2
"""

from __future__ import annotations

import os

# As the CLI does (electives.cli): on shared cores OpenMP's spin-waiting threads stall each other.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import dataclasses
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from electives.data.interactions import Interactions
from electives.evaluation.evaluate import evaluate
from electives.models import baselines as B
from electives.models.pipeline import train_model
from electives.models.training import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ELECTIVES_DATA", ROOT / "../shared/data")) / "ml-1m" / "loo"


def load() -> tuple[Interactions, Interactions, np.ndarray]:
    train = pd.read_csv(DATA / "train.tsv.gz", sep="\t", names=["student", "course"], dtype=str)
    test = pd.read_csv(DATA / "test.tsv", sep="\t", names=["student", "course"], dtype=str)
    neg = pd.read_csv(DATA / "negatives.tsv.gz", sep="\t", header=None, dtype=str)
    if not (neg[0].to_numpy() == test["student"].to_numpy()).all():
        raise SystemExit("negatives.tsv.gz is not in test.tsv's user order")
    neg_items = neg.iloc[:, 1:].to_numpy()
    s_ids = sorted(set(train["student"]) | set(test["student"]))
    c_ids = sorted(set(train["course"]) | set(test["course"]) | set(neg_items.ravel()))
    tr = Interactions.from_frame(train, s_ids, c_ids)
    te = Interactions.from_frame(test, s_ids, c_ids)
    negatives = pd.Index(c_ids).get_indexer(neg_items.ravel()).reshape(neg_items.shape)
    return tr, te, negatives


def fit_probe(model, train: Interactions, test: Interactions, negatives: np.ndarray) -> float:
    """Sampled HR@10 on the test users with the fixed negatives, straight from the network."""
    from electives.evaluation import metrics

    was = model.training
    model.eval()
    with torch.no_grad():
        s = torch.as_tensor(np.repeat(test.students, 1 + negatives.shape[1]))
        c = torch.as_tensor(np.concatenate([test.courses[:, None], negatives], axis=1).ravel())
        scores = model(s, c).reshape(len(test), -1).numpy()
    model.train(was)
    return metrics.hit_rate(metrics.sampled_ranks(scores[:, 0], scores[:, 1:]), 10)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["neumf", "ease", "pop"], help="neumf, ease, ials, pop")
    p.add_argument("--served", action="store_true", help="the served choice of `train --mode implicit` (see above)")
    p.add_argument(
        "--seeds", type=int, nargs="*", default=[0], help="--served: one train per seed; else NeuMF once per seed"
    )
    p.add_argument(
        "--rows", nargs="*", default=["ease", "ials", "neumf"], help="--served: the families scored beside it"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--embedding-l2", type=float, default=None)
    p.add_argument("--n-negatives", type=int, default=TrainConfig.n_negatives)
    p.add_argument("--gmf-dim", type=int, default=TrainConfig.gmf_dim)
    p.add_argument("--mlp-dim", type=int, default=TrainConfig.mlp_dim)
    p.add_argument("--mlp-layers", type=int, nargs="*", default=None)
    p.add_argument("--model", default="neumf", choices=["neumf", "gmf", "mlp"])
    p.add_argument("--patience", type=int, default=TrainConfig.patience)
    p.add_argument("--pretrain", action="store_true")
    p.add_argument("--pretrain-lr", type=float, default=None)
    p.add_argument("--dropout", type=float, default=TrainConfig.dropout)
    p.add_argument("--layer-l2", type=float, default=None)
    p.add_argument("--gmf-output", choices=["learned", "fixed"], default=None)
    p.add_argument("--training-step", choices=["rows", "dense"], default=None)
    p.add_argument("--embedding-lr", type=float, default=None)
    p.add_argument("--validation", choices=["loo", "none"], default=None, help="none: train on all, fixed --epochs")
    p.add_argument("--ease-lambda", type=float, default=1000.0)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args()


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        mode="implicit",
        model=args.model,
        gmf_dim=args.gmf_dim,
        mlp_dim=args.mlp_dim,
        mlp_layers=None if args.mlp_layers is None else tuple(args.mlp_layers),
        lr=args.lr,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
        embedding_l2=args.embedding_l2,
        epochs=args.epochs,
        n_negatives=args.n_negatives,
        patience=args.patience,
        pretrain=args.pretrain,
        pretrain_lr=args.pretrain_lr,
        validation=args.validation,
        dropout=args.dropout,
        layer_l2=args.layer_l2,
        gmf_output=args.gmf_output,
        training_step=args.training_step,
        embedding_lr=args.embedding_lr,
    )


def fit_neumf(
    config: TrainConfig, train: Interactions, test: Interactions, negatives: np.ndarray, progress: bool
) -> tuple[object, float]:
    """Fit NeuMF, printing time-to-target and each epoch; the fitted model and its mean seconds per epoch."""
    print(f"NeuMF config: {config.resolved()}", flush=True)
    # Time-to-target: after each epoch, the test HR@10 (sampled) and the training seconds so far; the
    # evaluation itself is not counted, and the test plays no part in training or early stopping.
    trace: list[tuple[int, float, float, float]] = []
    clock = {"train": 0.0, "cpu": time.process_time()}

    def on_epoch(h, model, trace=trace, clock=clock):
        clock["train"] += h.seconds
        cpu = time.process_time() - clock["cpu"]
        probe = fit_probe(model, train, test, negatives)
        trace.append((h.epoch, clock["train"], cpu, probe))
        print(f"    epoch {h.epoch}: test hr@10 {probe:.4f} after {clock['train']:.0f} s ({cpu:.0f} CPU s)")
        clock["cpu"] = time.process_time() - cpu  # exclude the probe's CPU time

    fitted = fit(train, config, progress=progress, on_epoch=on_epoch)
    hit = [t for t in trace if t[3] >= 0.73]
    ttt = f"{hit[0][1]:.0f} s wall, {hit[0][2]:.0f} s CPU (epoch {hit[0][0]})" if hit else "not reached"
    print(f"  time to test HR@10 ≥ 0.73: {ttt}")
    secs = [h.seconds for h in fitted.history]
    for h in fitted.history:
        val = "" if h.val_metric is None else f" val hr@10 {h.val_metric:.4f}"
        print(f"  {h.phase} epoch {h.epoch}: loss {h.train_loss:.4f}{val} {h.seconds:.1f}s")
    print(f"  best epoch {fitted.best_epoch} of {len(fitted.history)}", flush=True)
    return fitted, float(np.mean(secs))


def fit_models(
    args: argparse.Namespace, train: Interactions, test: Interactions, negatives: np.ndarray
) -> tuple[dict[str, object], dict[str, float], dict[str, float]]:
    """The fitted models by name, their fitting seconds, and NeuMF's seconds per epoch."""
    config = train_config(args)
    models, fit_s, per_epoch = {}, {}, {}
    for name in args.models:
        t0 = time.perf_counter()
        if name == "neumf":
            for seed in args.seeds:
                key = name if len(args.seeds) == 1 else f"{name} seed {seed}"
                t0 = time.perf_counter()
                seeded = dataclasses.replace(config, seed=seed)
                models[key], per_epoch[key] = fit_neumf(seeded, train, test, negatives, args.progress)
                fit_s[key] = time.perf_counter() - t0
            continue
        elif name == "ease":
            models[f"ease{args.ease_lambda:g}"] = B.EASE(lam=args.ease_lambda).fit(train)
        elif name == "ials":
            models[name] = B.IALS(factors=192).fit(train)
        elif name == "pop":
            models[name] = B.Popularity().fit(train)
        else:
            raise SystemExit(f"unknown model {name}")
        fit_s[list(models)[-1]] = time.perf_counter() - t0
    return models, fit_s, per_epoch


def family_best(selection, family: str, train: Interactions, seed: int) -> tuple[str, object]:
    """The selection's best candidate of ``family`` (by its validation metric), fitted again on every row."""
    tried = [c for c in selection.candidates if c.family == family and c.value is not None]
    best = max(tried, key=lambda c: c.value)
    if family == "ease":
        return best.name, B.EASE(lam=best.settings["lam"]).fit(train)
    if family == "ials":
        return best.name, B.IALS(**best.settings).fit(train)
    # NeuMF: the implicit defaults for the epochs its early stopping chose, as the selection's refit trains it.
    config = replace(TrainConfig(mode="implicit", seed=seed).resolved(), validation="none", refit=False)
    return best.name, fit(train, replace(config, epochs=best.settings["epochs"]), progress=False)


def served_run(args: argparse.Namespace, seed: int, data: tuple) -> dict[str, dict[str, float]]:
    """One `train --mode implicit --seed SEED` (the CLI's `train_model` call) and the test figures of its served
    model and of its best EASE, iALS and NeuMF; prints the candidates and the table."""
    train, test, negatives = data
    t0 = time.perf_counter()
    result = train_model(
        train, TrainConfig(mode="implicit", seed=seed), model="auto", progress=args.progress, log=print
    )
    train_s = time.perf_counter() - t0
    selection = result.selection
    models = {f"served: {selection.chosen}": result.fitted}
    for family in args.rows:
        name, model = family_best(selection, family, train, seed)
        models[f"{family}: {name}"] = model
    res = evaluate(models, train, test, k=10, negatives=negatives)
    settings = next(c.settings for c in selection.candidates if c.name == selection.chosen)
    print(
        f"\nseed {seed}: train {train_s:.0f} s (selection {selection.seconds:.0f} s), chose {selection.chosen} {settings}"
    )
    print(pd.DataFrame(res.metrics).T.to_string(float_format=lambda x: f"{x:.4f}"), flush=True)
    out = {name.split(":")[0]: figures for name, figures in res.metrics.items()}
    out["served"]["train_s"] = train_s
    return out


def served_main(args: argparse.Namespace, data: tuple) -> None:
    runs = {seed: served_run(args, seed, data) for seed in args.seeds}
    rows = ["served", *args.rows]
    mean = {r: pd.DataFrame([runs[s][r] for s in args.seeds]).mean() for r in rows}
    print(f"\nmean of {len(args.seeds)} seed(s) {args.seeds}:")
    print(pd.DataFrame(mean).T.to_string(float_format=lambda x: f"{x:.4f}"))
    served, ease = mean["served"], mean.get("ease")
    checks = [served["hr@10_sampled"] >= 0.73, served["ndcg@10_sampled"] >= 0.45, served["train_s"] <= 900]
    if ease is not None:
        checks.append(served["hr@10_full"] >= ease["hr@10_full"])
    print(f"targets (HR ≥ 0.73, NDCG ≥ 0.45, train ≤ 900 s, full HR ≥ EASE's): {'met' if all(checks) else checks}")
    if args.json:
        args.json.write_text(json.dumps({str(s): r for s, r in runs.items()}, indent=2, default=float))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    train, test, negatives = load()
    print(
        f"data: {DATA} ({len(train)} train pairs, {len(test)} test users, {train.n_courses} movies), "
        f"loaded in {time.perf_counter() - t0:.1f}s"
    )
    if args.served:
        served_main(args, (train, test, negatives))
        return
    models, fit_s, per_epoch = fit_models(args, train, test, negatives)

    t0 = time.perf_counter()
    res = evaluate(models, train, test, k=10, negatives=negatives)
    print(f"evaluated in {time.perf_counter() - t0:.1f}s\n")
    table = pd.DataFrame(res.metrics).T
    table["fit_s"] = pd.Series(fit_s)
    table["s_per_epoch"] = pd.Series(per_epoch)
    seeded = [k for k in table.index if k.startswith("neumf seed ")]
    if seeded:
        table.loc[f"neumf mean of {len(seeded)} seeds"] = table.loc[seeded].mean()
    print(table.to_string(float_format=lambda x: f"{x:.4f}", na_rep=""))
    if args.json:
        out = res.to_dict() | {"fit_seconds": fit_s, "seconds_per_epoch": per_epoch}
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
