"""The `train` sub-command: fit a model on stored grades (or an export) and save its artifact."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from electives.cli.data import add_export_arguments, read_export_from_args
from electives.data.grade_rows import GradeRows
from electives.data.scales import GradeScale
from electives.defaults import DB_ENV, DEFAULT_DB_URL
from electives.errors import DataError, ElectivesError
from electives.models.config import (
    EXPLICIT_FAMILY_NAMES,
    FAMILY_NAMES,
    FLAGS,
    IMPLICIT_FAMILY_NAMES,
    NCF_NAMES,
    TrainConfig,
    config_from_flags,
    number,
    positive_float,
    positive_int,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_train(subparsers)


# ------------------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class TrainingData:
    """Grades (or enrolments) ready for training, with the scale and course names that go into the artifact."""

    rows: GradeRows  # every row kept: index arrays, grades normalised (NaN if none), term sort keys if any
    scale: GradeScale | None
    course_names: dict[str, str]
    source: str
    # What the model will have seen, for `electives monitor` and `train --challenge`: the last import read
    # (database) and the latest term.
    trained_through: dict[str, Any] = field(default_factory=dict)


def db_url(args: argparse.Namespace) -> str:
    return args.db or os.environ.get(DB_ENV) or DEFAULT_DB_URL


def load_training_data(args: argparse.Namespace, through_import: int | None = None) -> TrainingData:
    """From `--data FILE` (read with the import flags, nothing stored) or from the database (its imports up to
    `through_import`, else all of them). Either way the rows come as index arrays, never a string per row."""
    seen: dict[str, Any] = {}
    if args.data:
        result = read_export_from_args(args, args.data)
        rows, latest = result.rows.grade_rows(), result.rows.latest_term()
        names = result.rows.names_by_course()
        scale = None if result.enrolment_only else result.scale
        source = f"file {Path(args.data).name} (sha256 {result.report.file_sha256[:12]}…)"
    else:
        from electives.data.storage import Store

        with Store(db_url(args)) as store:
            # The import number first, then only its grades: an import landing meanwhile is not counted as seen.
            imports = [r for r in store.imports() if through_import is None or r.id <= through_import]
            if imports:
                seen = {"import": imports[-1].id, "imported_at": imports[-1].imported_at.isoformat(timespec="seconds")}
            stored = store.load_grade_rows(retakes=args.retakes, through_import=seen.get("import", through_import))
            rows, latest = stored.rows, stored.latest_term
            scale = store.scale()
            names = {c.code: c.name for c in store.courses() if c.name}
            source = f"database {store.url}"
        if not len(rows):
            raise DataError(f"{source} holds no grades; import an export first (electives import FILE ...)")
    if latest is not None:
        seen.update(term=latest[0], term_key=latest[1])
    return TrainingData(rows, scale, names, source, seen)


# ----------------------------------------------------------------------------------------------------- train


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="choose and train a model on the stored grades (or a grade file) and save its artifact",
        description=(
            "On past grades (explicit mode, the default) choose the model family that predicts each student's "
            "latest term best — NeuMF, GMF, MLP, the bias model, biased MF, ItemKNN (each at a few settings), a "
            "seed ensemble of NeuMF and a blend of the best NCF model with the best baseline — then fit the winner "
            "again on every grade; --model NAME forces one. On enrolments (implicit mode) choose in the same way "
            "the family that ranks each student's newest course best — EASE, iALS, NeuMF, a seed ensemble of NeuMF "
            "and a blend of two or three families — by NDCG@10 among 99 sampled courses, among the candidates that "
            "rank the whole catalogue (HR@10) as well as the best single one. The validation rows calibrate the "
            "prediction interval. Writes MODEL_DIR with model.safetensors and manifest.json (with every "
            "candidate's validation figures)."
        ),
    )
    add_data_arguments(p)
    p.add_argument("--out", metavar="DIR", help="where to write the model artifact (required without --challenge)")
    p.add_argument(
        "--challenge",
        metavar="MODEL_DIR",
        help="train a challenger on the grades the served model in MODEL_DIR was trained on, compare both on the "
        "grades imported since, and only if the challenger is at least as good refit it on every grade and replace "
        "MODEL_DIR (exit 1 when it is refused; --db only)",
    )
    p.add_argument(
        "--config",
        metavar="FILE.json",
        help="training settings from a JSON file (e.g. written by electives tune); flags given here override it",
    )
    add_training_arguments(p, auto=True)
    add_privacy_arguments(p)
    p.add_argument(
        "--coverage", type=float, default=0.8, metavar="C", help="prediction interval level (default: %(default)s)"
    )
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads for torch (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_export_arguments(p)
    p.set_defaults(func=run_train)


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """--db URL | --data FILE (read by `load_training_data`; the import flags come from add_export_arguments)."""
    src = p.add_argument_group("data (one of)")
    src.add_argument(
        "--db", metavar="URL", help=f"database to read grades from (default: ${DB_ENV}, else {DEFAULT_DB_URL})"
    )
    src.add_argument("--data", metavar="FILE", help="train straight from a grade export (import flags below apply)")


def add_training_arguments(p: argparse.ArgumentParser, auto: bool = False) -> None:
    """The NeuMF training flags (shared by train, evaluate and tune), as TrainConfig's fields declare them
    (models.config.FLAGS). Each defaults to None, meaning "not given": `config_from_flags` then takes the value
    from a --config file, else TrainConfig's default. With `auto` (train), --model also takes "auto" and every
    other family (models.config.FAMILY_NAMES)."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for name, flag in FLAGS.items():
        how: dict[str, Any] = {"default": None, "help": flag.help_text(defaults[name])}
        if flag.action == "boolean":
            how["action"] = argparse.BooleanOptionalAction
        elif flag.action is not None:
            how["action"] = flag.action
        else:
            how.update(type=flag.type, metavar=flag.metavar, choices=flag.choices)
        if name == "model" and auto:
            how["choices"] = ("auto", *FAMILY_NAMES)
            how["help"] = (
                "the model family (default: auto, the best of the mode's families at a few settings on each "
                "student's latest term (grades) or newest course (enrolments), then fitted again on every row). A "
                "name forces that family; neumf, gmf and mlp train with the flags below, ensemble averages NeuMF "
                "seeds, blend mixes families; bias, mf and knn predict grades, ease and ials rank "
                "enrolments"
            )
        p.add_argument(flag.name, dest=flag.dest, **how)


def check_family_fits_mode(family: str | None, mode: str) -> None:
    """Refuse, before any data is read, a family that does not do what the mode asks (grades or rankings)."""
    allowed = EXPLICIT_FAMILY_NAMES if mode == "explicit" else IMPLICIT_FAMILY_NAMES
    if family in (None, "auto", *NCF_NAMES, *allowed):
        return
    does = "ranks enrolments and predicts no grade" if mode == "explicit" else "predicts grades"
    other = "implicit" if mode == "explicit" else "explicit"
    raise DataError(
        f"--model {family} {does}: use --mode {other}, or one of auto, {', '.join(allowed)} with --mode {mode}"
    )


def read_config_file(path: str) -> dict[str, Any]:
    """TrainConfig values from a JSON file (tune's output or a plain object of settings)."""
    import json

    from electives.models.tuning import config_values

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read --config {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"--config {path}: not valid JSON ({exc})") from None
    return config_values(doc, f"--config {path}")


def run_train(args: argparse.Namespace) -> int:
    import torch

    from electives.models import distributed

    if args.db and args.data:
        raise DataError("give either --db or --data, not both")
    if not args.out and not args.challenge:
        raise DataError("give --out DIR (where to write the model) or --challenge MODEL_DIR (the served model)")
    if not 0.5 <= args.coverage < 1:
        raise DataError(f"--coverage {args.coverage}: expected a level in [0.5, 1), e.g. 0.8")
    if args.threads:
        torch.set_num_threads(args.threads)
    file_values = read_config_file(args.config) if args.config else {}
    named = args.model or file_values.get("model")
    if args.dp_epsilon is not None:
        check_private_training(args, named == "auto" or (named or "neumf") not in NCF_NAMES)
    config = config_from_flags(args, file_values)
    resolved = config.resolved()
    # Choose the family unless one is named, or with DP or under torchrun: those train the configured NCF model
    # (selection would spend privacy budget on every candidate, and runs in one process).
    choose = args.dp_epsilon is None and not distributed.context().distributed
    family = named or ("auto" if choose else None)
    if args.challenge:  # it refuses the implicit mode itself
        from electives.cli.challenge import run_challenge

        return run_challenge(args, config, family)
    check_family_fits_mode(family, resolved.mode)
    # Under torchrun every rank trains; only rank 0 reports and writes the artifact.
    ctx = distributed.init(resolved.device)
    data = load_training_data(args)
    train = training_rows(data, resolved.mode)
    what = {"auto": "auto (model selection)", None: resolved.model}.get(family, family)
    print(
        f"{f'rank {ctx.rank}/{ctx.world_size}: ' if ctx.distributed else ''}training {what} ({resolved.mode}) on "
        f"{len(train):,} rows: {train.n_students:,} students × {train.n_courses:,} courses from {data.source}",
        file=sys.stderr,
    )
    result = fit_from_args(args, train, config, family=family, scale=data.scale)
    if not result.is_main:
        return 0
    save_trained(args.out, result, data, args)
    if result.selection is not None:
        selection = result.selection
        failed = [c for c in selection.to_dict()["candidates"] if c.get("error")]
        print(
            f"model selection chose {selection.chosen} ({len(selection.candidates)} candidates compared"
            + (f"; {len(failed)} failed: " + "; ".join(f"{c['name']}: {c['error']}" for c in failed) if failed else "")
            + ")"
        )
    _print_summary(result, data.scale, args.out)
    if (privacy := result.privacy) is not None:
        print(
            f"  differential privacy (per student): ε = {privacy.epsilon:.4g} spent of {privacy.target_epsilon:g}, "
            f"δ = {privacy.delta:.2g}, noise multiplier {privacy.noise_multiplier:.3g}, clipping {privacy.max_grad_norm:g}"
        )
    return 0


def fit_from_args(
    args: argparse.Namespace,
    train: Any,
    config: TrainConfig,
    *,
    family: str | None,
    scale: GradeScale | None,
) -> Any:
    """`train_model` with the flags' coverage, privacy and progress: the `TrainingResult`."""
    from electives.models.pipeline import train_model

    return train_model(
        train,
        config,
        scale=scale,
        coverage=args.coverage,
        model=family,
        privacy=privacy_from_args(args),
        progress=not args.quiet,
        log=_stderr,
    )


def save_trained(
    out: str, result: Any, data: TrainingData, args: argparse.Namespace, extra: dict[str, Any] | None = None
) -> None:
    """Write `result`'s model to `out` (atomically), with what it was trained through and its validation ranking."""
    from electives.data.pseudonyms import existing_pseudonymiser
    from electives.evaluation.monitoring import ranking_figures
    from electives.models.artifact import save_model

    span = data.scale.span if data.scale else 1.0
    checked, val = result.validated or result.fitted, result.validation
    # Recorded so that `electives monitor` can show the ranking figures of new grades next to validation's.
    ranking = None
    if checked.predicts_grades and val.grades is not None and len(val):
        ranking = ranking_figures(val.students, checked.predict(val.students, val.courses), val.grades)
    save_model(
        out,
        result.fitted,
        result.trained_on or result.fit_data,
        scale=data.scale,
        course_names=data.course_names,
        calibration=result.calibration,
        metrics=result.metrics,
        extra={
            "data_source": data.source.split(" (")[0] if args.data else "database",
            **({"trained_through": data.trained_through} if data.trained_through else {}),
            **({"validation_ranking": ranking} if ranking else {}),
            **({"model_selection": result.selection.to_dict(span)} if result.selection else {}),
            **({"privacy": result.privacy.to_dict()} if result.privacy else {}),
            **(extra or {}),
        },
        # Signed with the deployment's key when there is one, so a server requiring signed models accepts it.
        signer=(keyed.model_signature if (keyed := existing_pseudonymiser()) else None),
    )


def training_rows(data: TrainingData, mode: str) -> Any:
    """The `Interactions` to train on in `mode`: graded rows (explicit) or every enrolment without grades."""
    if mode == "explicit" and not data.rows.has_grades:
        raise DataError(f"{data.source} holds enrolments only (no grades): train with --mode implicit")
    return data.rows.interactions(mode)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _print_summary(result: Any, scale: GradeScale | None, out: str) -> None:
    fitted, metrics = result.fitted, result.metrics
    print(f"model written to {out}: {result.family}, {metrics['train_seconds']} s")
    checked = result.validated or fitted
    history = getattr(checked, "history", None)
    if history:  # NCF: its epochs
        print(f"  epochs run: {history[-1].epoch}, best epoch: {checked.best_epoch}")
    if result.validated is not None:
        print(
            f"  then refitted on training + validation ({metrics['refit_rows']:,} rows); the validation "
            "figures below are the model's before the refit"
        )
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


# ------------------------------------------------------------------------------------------- private training


def add_privacy_arguments(p: argparse.ArgumentParser) -> None:
    """--dp-epsilon and friends (see electives.models.privacy)."""
    g = p.add_argument_group(
        "differential privacy",
        "DP-SGD (Opacus): each student's whole record is one protected unit; the noise is set so that the "
        "configured epochs spend at most the budget, and the spent (ε, δ) is stored in the model. With a budget, "
        "--batch-size counts students and unset settings take DP defaults (see electives.models.privacy.DP_DEFAULTS). "
        "The validation split is held out of training (no gradient) and not covered by ε.",
    )
    g.add_argument("--dp-epsilon", type=_dp_epsilon, metavar="E", help="train with privacy budget ε = E (> 0)")
    g.add_argument("--dp-delta", type=_dp_delta, metavar="D", help="δ, in (0, 1) (default: min(1e-5, n_students^-1.1))")
    g.add_argument(
        "--dp-max-grad-norm",
        type=_dp_clip,
        default=None,
        metavar="C",
        help="clipping bound of each student's gradient, > 0 (default: 1.0)",
    )
    g.add_argument("--dp-accountant", choices=("prv", "rdp"), default=None, help="privacy accountant (default: prv)")


def check_private_training(args: argparse.Namespace, auto: bool) -> None:
    """Refuse the combinations DP training does not support, before any data is read."""
    from electives.models import distributed

    if distributed.context().distributed:
        raise ElectivesError(
            "--dp-epsilon cannot be used with distributed training (torchrun): the privacy accounting assumes "
            "one process sampling every student; run `electives train --dp-epsilon ...` without torchrun"
        )
    if auto:
        named = getattr(args, "model", None) or "auto"
        raise ElectivesError(
            f"--dp-epsilon cannot be combined with --model {named} (DP-SGD trains one NCF model: neumf, gmf or mlp; "
            "with model selection every candidate would spend budget)"
        )
    if getattr(args, "refit", None):
        raise ElectivesError(
            "--dp-epsilon cannot be combined with --refit (the second training run would spend budget)"
        )


def privacy_from_args(args: argparse.Namespace) -> Any:
    """The PrivacyConfig the --dp-… flags ask for, or None without --dp-epsilon."""
    if args.dp_epsilon is None:
        return None
    from electives.models.privacy import PrivacyConfig

    return PrivacyConfig(
        epsilon=args.dp_epsilon,
        delta=args.dp_delta,
        max_grad_norm=args.dp_max_grad_norm if args.dp_max_grad_norm is not None else 1.0,
        accountant=args.dp_accountant or "prv",
    )


def _dp_epsilon(text: str) -> float:
    value = positive_float(text)
    if value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: ε must be finite (leave out --dp-epsilon for a non-private model)")
    return value


def _dp_delta(text: str) -> float:
    value = number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: δ must be between 0 and 1 (exclusive), e.g. 1e-5")
    return value


def _dp_clip(text: str) -> float:
    value = positive_float(text)
    if value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: the clipping bound must be finite")
    return value
