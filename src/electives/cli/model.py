"""Model sub-commands: `train` (fit NeuMF and save an artifact) and `score` (score student–course pairs)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from electives.cli.data import DB_ENV, DEFAULT_DB, add_export_arguments, read_export_from_args
from electives.errors import DataError
from electives.grades import GradeScale

# Validation rows are split in two by student: one half calibrates the interval, the other measures its coverage.
_CALIBRATION_SEED = 7


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_train(subparsers)
    _register_score(subparsers)


# ------------------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class TrainingData:
    """Grades (or enrolments) ready for training, with the scale and course names that go into the artifact."""

    frame: pd.DataFrame  # student, course, term (int key, optional), grade (normalised, NaN if none)
    scale: GradeScale | None
    course_names: dict[str, str]
    source: str


def load_training_data(args: argparse.Namespace) -> TrainingData:
    """From `--data FILE` (read with the import flags, nothing stored) or from the database."""
    if args.data:
        result = read_export_from_args(args, args.data)
        frame = result.frame
        names = {c: n for c, n in zip(frame["course"], frame["course_name"], strict=False) if isinstance(n, str) and n}
        scale = None if result.enrolment_only else result.scale
        source = f"file {Path(args.data).name} (sha256 {result.report.file_sha256[:12]}…)"
    else:
        from electives.storage import Store

        url = args.db or os.environ.get(DB_ENV) or DEFAULT_DB
        with Store(url) as store:
            frame = store.load_grades(retakes=args.retakes)
            scale = store.scale()
            names = {c.code: c.name for c in store.courses() if c.name}
            source = f"database {store.url}"
        if frame.empty:
            raise DataError(f"{source} holds no grades; import an export first (electives import FILE ...)")
    out = pd.DataFrame({"student": frame["student"], "course": frame["course"], "grade": frame["grade"]})
    keys = frame["term_key"]
    if keys.notna().all():
        out["term"] = keys.astype("int64")
    elif keys.notna().any():
        # Rows without a term sort before every dated row of the same student (treated as the oldest).
        out["term"] = keys.fillna(keys.min() - 1).astype("int64")
    return TrainingData(out, scale, names, source)


# ----------------------------------------------------------------------------------------------------- train


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    from electives.training import TrainConfig

    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train NeuMF on the stored grades (or a grade file) and save a model artifact",
        description=(
            "Train a NeuMF model (GMF + MLP towers) on past grades (explicit mode, the default) or enrolments "
            "(implicit mode, log loss with sampled negatives). A validation split carved from the training data "
            "stops training early and calibrates the prediction interval. Writes MODEL_DIR with "
            "model.safetensors and manifest.json."
        ),
    )
    src = p.add_argument_group("data (one of)")
    src.add_argument(
        "--db", metavar="URL", help=f"database to read grades from (default: ${DB_ENV}, else {DEFAULT_DB})"
    )
    src.add_argument("--data", metavar="FILE", help="train straight from a grade export (import flags below apply)")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the model artifact")
    p.add_argument("--mode", choices=("explicit", "implicit"), default=d.mode, help="default: %(default)s")
    p.add_argument("--model", choices=("neumf", "gmf", "mlp"), default=d.model, help="default: %(default)s")
    p.add_argument("--epochs", type=_positive_int, metavar="N", help="maximum epochs (default: per mode)")
    p.add_argument("--seed", type=int, default=d.seed, metavar="N", help="random seed (default: %(default)s)")
    p.add_argument("--gmf-dim", type=_positive_int, default=d.gmf_dim, metavar="N", help="default: %(default)s")
    p.add_argument("--mlp-dim", type=_positive_int, default=d.mlp_dim, metavar="N", help="default: %(default)s")
    p.add_argument(
        "--mlp-layers",
        type=_layers,
        default=d.mlp_layers,
        metavar="A,B,C",
        help=f"MLP hidden layer sizes (default: {','.join(map(str, d.mlp_layers))})",
    )
    p.add_argument("--dropout", type=float, default=d.dropout, metavar="P", help="default: %(default)s")
    p.add_argument("--lr", type=_positive_float, metavar="LR", help="learning rate (default: per mode)")
    p.add_argument("--weight-decay", type=float, metavar="W", help="AdamW decay (default: per mode)")
    p.add_argument("--embedding-l2", type=float, default=d.embedding_l2, metavar="W", help="default: %(default)s")
    p.add_argument("--batch-size", type=_positive_int, metavar="N", help="default: per mode")
    p.add_argument("--negatives", type=_positive_int, default=d.n_negatives, metavar="N", help="implicit mode")
    p.add_argument("--loss", choices=("mse", "huber", "l1"), default=d.loss, help="explicit mode (default: mse)")
    p.add_argument("--patience", type=_positive_int, default=d.patience, metavar="N", help="default: %(default)s")
    p.add_argument(
        "--validation", choices=("loo", "temporal", "random"), help="validation split kind (default: per mode)"
    )
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, metavar="F", help="default: %(default)s")
    p.add_argument("--pretrain", action="store_true", help="pre-train GMF and MLP, then NeuMF from both (α = 0.5)")
    p.add_argument("--imbalance", choices=("none", "oversample", "reweight"), default=d.imbalance)
    p.add_argument(
        "--coverage", type=float, default=0.8, metavar="C", help="prediction interval level (default: %(default)s)"
    )
    p.add_argument("--device", default=d.device, help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=_positive_int, metavar="N", help="CPU threads for torch (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_export_arguments(p)
    p.set_defaults(func=run_train)


def config_from_args(args: argparse.Namespace) -> Any:
    from electives.training import TrainConfig

    values = {
        "mode": args.mode,
        "model": args.model,
        "epochs": args.epochs,
        "seed": args.seed,
        "gmf_dim": args.gmf_dim,
        "mlp_dim": args.mlp_dim,
        "mlp_layers": tuple(args.mlp_layers),
        "dropout": args.dropout,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "embedding_l2": args.embedding_l2,
        "batch_size": args.batch_size,
        "n_negatives": args.negatives,
        "loss": args.loss,
        "patience": args.patience,
        "validation": args.validation,
        "val_fraction": args.val_fraction,
        "pretrain": args.pretrain,
        "imbalance": args.imbalance,
        "device": args.device,
    }
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in values.items() if k in known})


def run_train(args: argparse.Namespace) -> int:
    import torch

    from electives.artifact import save_model
    from electives.interactions import Interactions
    from electives.splits import validation_split
    from electives.training import fit

    if args.db and args.data:
        raise DataError("give either --db or --data, not both")
    if not 0.5 <= args.coverage < 1:
        raise DataError(f"--coverage {args.coverage}: expected a level in [0.5, 1), e.g. 0.8")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(args).resolved()
    data = load_training_data(args)
    has_grades = bool(data.frame["grade"].notna().any())
    if config.mode == "explicit" and not has_grades:
        raise DataError(f"{data.source} holds enrolments only (no grades): train with --mode implicit")
    frame = data.frame if config.mode == "implicit" else data.frame[data.frame["grade"].notna()]
    if config.mode == "implicit":
        frame = frame.drop(columns=["grade"])
    train = Interactions.from_frame(frame)
    print(
        f"training {config.model} ({config.mode}) on {len(train):,} rows: {train.n_students:,} students × "
        f"{train.n_courses:,} courses from {data.source}",
        file=sys.stderr,
    )
    fit_data, val = validation_split(train, config.validation, config.val_fraction, config.seed)
    start = time.perf_counter()
    fitted = fit(fit_data, config, validation=val, progress=not args.quiet)
    seconds = time.perf_counter() - start

    metrics: dict[str, Any] = {"train_seconds": round(seconds, 2), "validation_rows": len(val)}
    calibration = None
    if config.mode == "explicit":
        metrics.update(_explicit_validation(fitted, val, data.scale))
        calibration, coverage = _calibrate(fitted, val, args.coverage)
        metrics["interval_coverage_nominal"] = args.coverage
        metrics["interval_coverage_measured"] = coverage
    else:
        metrics.update(_implicit_validation(fitted, fit_data, val))
    # The artifact's index space is the full training set's, which fit_data shares.
    save_model(
        args.out,
        fitted,
        fit_data,
        scale=data.scale,
        course_names=data.course_names,
        calibration=calibration,
        metrics=metrics,
        extra={"data_source": data.source.split(" (")[0] if args.data else "database"},
    )
    _print_summary(fitted, metrics, data.scale, args.out)
    return 0


def _explicit_validation(fitted: Any, val: Any, scale: GradeScale | None) -> dict[str, float]:
    from electives import metrics as m

    pred = fitted.predict(val.students, val.courses)
    span = scale.span if scale else 1.0
    out = {
        "val_rmse": m.rmse(pred, val.grades, span),
        "val_mae": m.mae(pred, val.grades, span),
    }
    if scale is not None:
        out["val_within_one_letter"] = m.within(pred, val.grades, scale.letter_step / span)
    return out


def _implicit_validation(fitted: Any, fit_data: Any, val: Any) -> dict[str, float]:
    from electives.evaluation import evaluate

    result = evaluate({"model": fitted}, fit_data, val, k=10, n_negatives=99, seed=0)
    return {f"val_{k.replace('@', '_at_')}": v for k, v in result.metrics["model"].items()}


def _calibrate(fitted: Any, val: Any, coverage: float) -> tuple[Any, float | None]:
    from electives.calibration import fit_conformal, min_residuals

    pred = fitted.predict(val.students, val.courses)
    residuals = val.grades - pred
    rng = np.random.default_rng(_CALIBRATION_SEED)
    # Split by student, so a student's rows never sit on both sides.
    calib_students = rng.random(val.n_students) < 0.5
    calib = calib_students[val.students]
    if calib.sum() < min_residuals(coverage) or (~calib).sum() < min_residuals(coverage):
        # Too few rows to hold some back: calibrate on all, coverage unmeasured.
        return fit_conformal(residuals, coverage), None
    interval = fit_conformal(residuals[calib], coverage)
    measured = interval.empirical_coverage(val.grades[~calib], pred[~calib])
    return interval, float(measured)


def _print_summary(fitted: Any, metrics: dict[str, Any], scale: GradeScale | None, out: str) -> None:
    last = fitted.history[-1] if fitted.history else None
    print(f"model written to {out}")
    print(f"  epochs run: {last.epoch if last else 0}, best epoch: {fitted.best_epoch}, {metrics['train_seconds']} s")
    if "val_rmse" in metrics:
        unit = f" {scale.name} points" if scale else ""
        print(f"  validation RMSE {metrics['val_rmse']:.4f}, MAE {metrics['val_mae']:.4f}{unit}")
        cov = metrics.get("interval_coverage_measured")
        nominal = metrics["interval_coverage_nominal"]
        if cov is not None:
            print(f"  {nominal:.0%} interval: measured coverage {cov:.1%} on held-back validation students")
    else:
        shown = ", ".join(f"{k[4:]} {v:.4f}" for k, v in metrics.items() if k.startswith("val_"))
        print(f"  validation {shown}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _layers(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected sizes like 128,64,32") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive sizes like 128,64,32")
    return sizes


# ----------------------------------------------------------------------------------------------------- score


def _register_score(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="score student–course pairs with a trained model",
        description=(
            "Read `student<TAB>course` lines (raw student ids, as in the registrar's export) and write them back "
            "with a score column: the predicted grade in the scale's points (explicit mode) or the model's "
            "interaction probability (implicit mode), so anyone can check the metrics with their own evaluator."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="model artifact directory (from electives train)")
    p.add_argument("--pairs", required=True, metavar="FILE", help="tab-separated student, course lines ('-': stdin)")
    p.add_argument("--out", metavar="FILE", help="where to write the scored lines (default: stdout)")
    p.add_argument(
        "--skip-unknown",
        action="store_true",
        help="write an empty score for students or courses the model does not know instead of failing",
    )
    p.set_defaults(func=run_score)


def run_score(args: argparse.Namespace) -> int:
    from electives.artifact import load_model
    from electives.pseudonyms import Pseudonymiser

    model = load_model(args.model)
    pairs = _read_pairs(args.pairs)
    pseudo = Pseudonymiser.from_environment()
    s_index, c_index = model.student_index(), model.course_index()
    pseudonyms = {raw: pseudo.pseudonym(raw) for raw in {s for _, s, _ in pairs}}
    s = np.array([s_index.get(pseudonyms[raw], -1) for _, raw, _ in pairs], dtype=np.int64)
    c = np.array([c_index.get(course, -1) for _, _, course in pairs], dtype=np.int64)
    unknown = (s < 0) | (c < 0)
    if unknown.any() and not args.skip_unknown:
        i = int(np.argmax(unknown))
        line, _, course = pairs[i]
        what = "student" if s[i] < 0 else f"course {course!r}"
        raise DataError(
            f"{args.pairs}, line {line}: the model does not know this {what} "
            f"({int(unknown.sum()):,} unknown pairs in all); use --skip-unknown to score the rest"
        )
    scores = np.full(len(pairs), np.nan)
    ok = ~unknown
    raw_scores = model.fitted.predict(s[ok], c[ok]).astype(np.float64)
    if model.mode == "explicit" and model.scale is not None:
        raw_scores = model.scale.low + raw_scores * model.scale.span
    scores[ok] = raw_scores
    target = open(args.out, "w", encoding="utf-8", newline="") if args.out else contextlib.nullcontext(sys.stdout)  # noqa: SIM115
    with target as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        for (_, student, course), score in zip(pairs, scores, strict=True):
            writer.writerow([student, course, "" if np.isnan(score) else f"{score:.6g}"])
    if args.out:
        print(f"scored {int(ok.sum()):,} of {len(pairs):,} pairs into {args.out}", file=sys.stderr)
    return 0


def _read_pairs(path: str) -> list[tuple[int, str, str]]:
    try:
        source = contextlib.nullcontext(sys.stdin) if path == "-" else open(path, encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise DataError(f"cannot read --pairs {path}: {exc.strerror}") from None
    pairs = []
    try:
        with source as fh:
            for line_no, line in enumerate(fh, start=1):
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                parts = text.split("\t")
                if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
                    raise DataError(f"{path}, line {line_no}: expected 'student<TAB>course', got {text[:60]!r}")
                pairs.append((line_no, parts[0].strip(), parts[1].strip()))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    if not pairs:
        raise DataError(f"{path}: no pairs to score")
    return pairs
