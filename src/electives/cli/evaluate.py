"""Evaluation sub-commands: `evaluate` (NeuMF against every baseline on one split, with a report) and `tune`
(Optuna search over a validation split carved from the training data)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from electives.cli.data import add_export_arguments
from electives.cli.model import (
    TrainingData,
    add_data_arguments,
    add_privacy_arguments,
    add_training_arguments,
    check_private_training,
    load_training_data,
    privacy_from_args,
    read_config_file,
)
from electives.errors import DataError, StorageError
from electives.models.config import config_from_flags, positive_float, positive_int


def _baselines() -> dict[str, tuple[bool, Callable[[str], Any]]]:
    """name → (predicts grades only, factory(mode)); the ranking-only baselines fit either mode."""
    from electives.models import baselines as B

    return {
        "global-mean": (True, lambda mode: B.GlobalMean()),
        "student-mean": (True, lambda mode: B.StudentMean()),
        "course-mean": (True, lambda mode: B.CourseMean()),
        "bias": (True, lambda mode: B.BiasModel()),
        "mf": (False, lambda mode: B.MatrixFactorization(mode=mode)),
        "knn": (False, lambda mode: B.ItemKNN(mode=mode)),
        "popularity": (False, lambda mode: B.Popularity()),
        "ease": (False, lambda mode: B.EASE()),
        "ials": (False, lambda mode: B.IALS()),
    }


BASELINE_NAMES = ("global-mean", "student-mean", "course-mean", "bias", "mf", "knn", "popularity", "ease", "ials")
DEFAULT_BASELINES = {
    "explicit": ("global-mean", "student-mean", "course-mean", "bias", "mf", "knn", "popularity"),
    "implicit": ("popularity", "knn", "mf", "ease", "ials"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_evaluate(subparsers)
    _register_tune(subparsers)


# -------------------------------------------------------------------------------------------------- evaluate


def _register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="compare NeuMF with every baseline on one train/test split and write a report",
        description=(
            "Split the grades (by default each student's latest term is held out), train NeuMF on the training "
            "part (early stopping on a validation split carved from it), fit the baselines on the same training "
            "part, and score all on the held-out part: RMSE/MAE in the scale's points, per-student ranking of "
            "held-out grades, HR@K and NDCG@K over the full catalogue and against sampled negatives. Prints one "
            "table; with --out also writes report.json, report.md and PNG plots."
        ),
    )
    add_data_arguments(p)
    p.add_argument("--out", metavar="DIR", help="write report.json, report.md and plots here")
    _add_split_arguments(p, default_help="temporal when the data has terms, else random")
    p.add_argument(
        "--baselines",
        type=_names,
        metavar="A,B,…",
        help=(
            f"baselines to compare, from {', '.join(BASELINE_NAMES)}; 'none' for NeuMF alone (default: all that "
            f"fit the mode: explicit {','.join(DEFAULT_BASELINES['explicit'])}; "
            f"implicit {','.join(DEFAULT_BASELINES['implicit'])})"
        ),
    )
    p.add_argument("--k", type=positive_int, default=10, metavar="K", help="cut-off for HR/NDCG (default: 10)")
    p.add_argument(
        "--eval-negatives",
        type=int,
        default=99,
        metavar="N",
        help="sampled untaken courses per held-out row for the sampled HR/NDCG (default: 99; 0: none)",
    )
    p.add_argument(
        "--served",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=(
            "also report the served choice: what `electives train` would pick from the training part alone (the "
            "same selection, then fitted on the whole training part), scored on the test part like the rest "
            "(default: on)"
        ),
    )
    p.add_argument("--config", metavar="FILE.json", help="NeuMF settings from a JSON file (e.g. from electives tune)")
    add_training_arguments(p)
    add_privacy_arguments(p)
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads for torch (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_export_arguments(p)
    p.set_defaults(func=run_evaluate)


def _add_split_arguments(p: argparse.ArgumentParser, default_help: str) -> None:
    p.add_argument(
        "--split",
        choices=("temporal", "loo", "random"),
        help=f"test split: each student's latest term, latest course, or a random share (default: {default_help})",
    )
    p.add_argument(
        "--test-fraction",
        type=_fraction,
        default=0.2,
        metavar="F",
        help="share of rows held out by --split random (default: %(default)s)",
    )


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in BASELINE_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: unknown baseline {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(BASELINE_NAMES)} or 'none'"
        )
    return names


def _fraction(text: str) -> float:
    value = positive_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def _prepare(args: argparse.Namespace) -> tuple[Any, TrainingData, Any]:
    """(resolved TrainConfig, the data, its Interactions) — shared by evaluate and tune."""
    import torch

    if args.db and args.data:
        raise DataError("give either --db or --data, not both")
    if args.threads:
        torch.set_num_threads(args.threads)
    file_values = read_config_file(args.config) if args.config else {}
    config = config_from_flags(args, file_values).resolved()
    data = load_training_data(args)
    if config.mode == "explicit" and not data.rows.has_grades:
        raise DataError(f"{data.source} holds enrolments only (no grades): use --mode implicit")
    return config, data, data.rows.interactions(config.mode)


def _split(args: argparse.Namespace, data: TrainingData, everything: Any, seed: int) -> tuple[str, Any, Any]:
    from electives.data.splits import split

    has_terms = data.rows.term_count > 1
    kind = args.split or ("temporal" if has_terms else "random")
    if kind == "temporal" and not has_terms:
        raise DataError(f"--split temporal needs terms, and {data.source} has none; use --split random or loo")
    train, test = split(everything, kind, args.test_fraction, seed)
    if len(test) == 0:
        raise DataError(
            f"a {kind} split of {data.source} holds nothing out (every student has a single "
            f"{'term' if kind == 'temporal' else 'row'}); use --split random"
        )
    return kind, train, test


def _fit_neumf(args: argparse.Namespace, config: Any, train: Any) -> tuple[Any, Any]:
    """(fitted model, privacy report or None) on the training part."""
    from electives.models.privacy import fit_private
    from electives.models.training import fit

    if args.dp_epsilon is None:
        return fit(train, config, progress=not args.quiet), None
    # The same DP-SGD path as `train --dp-epsilon`, so the report shows what such a model costs in accuracy.
    check_private_training(args, auto=False)
    # DP fills the settings left unset with its own defaults, so it starts from the unresolved configuration.
    unresolved = config_from_flags(args, read_config_file(args.config) if args.config else {})
    return fit_private(train, unresolved, privacy_from_args(args), progress=not args.quiet)


def served_label(family: str) -> str:
    """The served choice's row in the table and report: marked apart from the family rows beside it."""
    return f"served choice ({family})"


def _served_choice(args: argparse.Namespace, config: Any, train: Any, span: float) -> Any:
    """What `electives train` would serve if given only the training part: the same selection on it (its own
    validation split is each student's latest *training* term, or newest training course in the implicit mode;
    the test part is never seen), then refitted on the whole training part. None with DP or with --no-served."""
    if not args.served or args.dp_epsilon is not None:
        return None
    from electives.models.implicit_selection import select_implicit
    from electives.models.selection import select

    def log(line: str) -> None:
        if not args.quiet:
            print(f"served choice: {line.strip()}", file=sys.stderr)

    if config.mode == "implicit":
        return select_implicit(train, config, progress=False, log=log)
    return select(train, config, progress=False, log=log, scale_range=span)


def run_evaluate(args: argparse.Namespace) -> int:
    from electives.evaluation.evaluate import evaluate

    config, data, everything = _prepare(args)
    names = DEFAULT_BASELINES[config.mode] if args.baselines is None else args.baselines
    makers = _baselines()
    if config.mode == "implicit":
        grade_only = [n for n in names if makers[n][0]]
        if grade_only:
            raise DataError(f"baseline(s) {', '.join(grade_only)} predict grades; they need --mode explicit")
    kind, train, test = _split(args, data, everything, config.seed)
    print(
        f"evaluating on {data.source}: {kind} split, {len(train):,} training rows, {len(test):,} held out "
        f"({train.n_students:,} students × {train.n_courses:,} courses)",
        file=sys.stderr,
    )
    models: dict[str, Any] = {}
    fit_seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    fitted, privacy = _fit_neumf(args, config, train)
    fit_seconds[config.model] = time.perf_counter() - t0
    models[config.model] = fitted
    for name in names:
        t0 = time.perf_counter()
        models[name] = makers[name][1](config.mode).fit(train)
        fit_seconds[name] = time.perf_counter() - t0
    scale = data.scale
    span = scale.span if scale is not None else 1.0
    served = _served_choice(args, config, train, span)
    if served is not None:
        models[served_label(served.family)], fit_seconds[served_label(served.family)] = served.model, served.seconds
    result = evaluate(
        models,
        train,
        test,
        k=args.k,
        n_negatives=max(0, args.eval_negatives),
        scale_range=span,
        step=scale.letter_step / span if scale is not None else None,
        seed=config.seed,
        details=True,
    )
    unit = f"{scale.name} points" if scale is not None else "normalised units"
    print(f"{kind} split: {len(test):,} held-out rows of {result.info['n_test_students']:,} students; errors in {unit}")
    print(result.table())
    print("fit seconds: " + ", ".join(f"{n} {s:.1f}" for n, s in fit_seconds.items()))
    if served is not None:
        print(f"served choice: {served.chosen} — what `electives train` would pick from the training part alone")
    if args.out:
        from electives.evaluation.reports import write_report

        context = {
            "data": data.source,
            "mode": config.mode,
            "split": kind,
            "scale": scale.name if scale is not None else None,
            "model": config.model,
            "best_epoch": fitted.best_epoch,
            **({"served choice": served.chosen, "served_choice": served.to_dict(span)} if served is not None else {}),
            "fit_seconds": {n: round(s, 2) for n, s in fit_seconds.items()},
            "config": config.to_dict(),
            "differential privacy": "none"
            if privacy is None
            else f"ε = {privacy.epsilon:.4g} spent of {privacy.target_epsilon:g}, δ = {privacy.delta:.2g} (per student)",
            **({"privacy": privacy.to_dict()} if privacy is not None else {}),
        }
        title = f"{config.model} against baselines ({kind} split)"
        write_report(
            args.out,
            result,
            histories={config.model: fitted.history},
            val_metric=fitted.val_metric_name,
            scale=scale,
            title=title,
            context=context,
        )
        print(f"report written to {args.out} (report.md, report.json, plots)")
    return 0


# ------------------------------------------------------------------------------------------------------ tune


def _register_tune(subparsers: argparse._SubParsersAction) -> None:
    from electives.models.config import TUNABLE

    p = subparsers.add_parser(
        "tune",
        help="search NeuMF training settings with Optuna on a validation split of the training data",
        description=(
            "Optuna TPE search (seeded) over learning rate, weight decay, embedding L2, sizes, dropout, batch "
            "size and (explicit mode) imbalance handling. Every trial trains on the same split carved from the "
            "training data and is scored on its validation part (RMSE, or HR@10 in implicit mode); no test set "
            "is used. Writes the best settings as JSON for `electives train --config FILE`."
        ),
    )
    add_data_arguments(p)
    p.add_argument("--out", required=True, metavar="FILE.json", help="where to write the best configuration")
    p.add_argument("--trials", type=positive_int, default=20, metavar="N", help="number of trials (default: 20)")
    p.add_argument("--timeout", type=positive_float, metavar="S", help="stop starting trials after S seconds")
    p.add_argument(
        "--space",
        type=lambda t: tuple(x.strip() for x in t.split(",") if x.strip()),
        default=TUNABLE,
        metavar="A,B,…",
        help=f"settings to search (default: all of {','.join(TUNABLE)}); the others come from the flags",
    )
    p.add_argument(
        "--tune-seed", type=int, default=0, metavar="N", help="seed of the TPE sampler (default: %(default)s)"
    )
    p.add_argument(
        "--holdout",
        choices=("temporal", "loo", "random"),
        dest="split",
        help=(
            "first remove the test split `electives evaluate --split …` would hold out, and tune on the rest "
            "(so that a tuned configuration can then be evaluated honestly on it)"
        ),
    )
    p.add_argument("--test-fraction", type=_fraction, default=0.2, metavar="F", help="for --holdout random")
    p.add_argument("--config", metavar="FILE.json", help="starting settings from a JSON file")
    add_training_arguments(p)
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads for torch (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines on stderr")
    add_export_arguments(p)
    p.set_defaults(func=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from electives.models.tuning import tune

    out = Path(args.out)
    if out.is_dir():
        raise DataError(f"--out {out} is a folder; give a file name such as {out / 'best.json'}")
    config, data, everything = _prepare(args)
    train, source = everything, data.source
    if args.split:
        kind, train, _ = _split(args, data, everything, config.seed)
        source += f", without its {kind} test split"
    print(f"tuning {config.model} ({config.mode}) on {len(train):,} rows of {source}", file=sys.stderr)
    result = tune(
        train,
        config,
        trials=args.trials,
        timeout=args.timeout,
        seed=args.tune_seed,
        space=args.space,
        log=None if args.quiet else lambda m: print(m, file=sys.stderr, flush=True),
    )
    scale = data.scale
    span = scale.span if (scale is not None and config.mode == "explicit") else 1.0
    doc = result.to_dict()
    doc["info"].update({"data": source, "scale": scale.name if scale is not None else None, "holdout": args.split})
    if config.mode == "explicit":
        doc["best_value_points"] = result.best_value * span
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        raise StorageError(f"cannot write {out}: {exc.strerror}") from None
    unit = f" ({scale.name} points)" if span != 1.0 and scale is not None else ""
    print(result.table(scale_range=span))
    print(f"best trial: {result.metric}{unit} {result.best_value * span:.4f}; configuration written to {out}")
    print(f"use it with: electives train --config {out} …")
    return 0
