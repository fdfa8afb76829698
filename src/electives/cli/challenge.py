"""`electives train … --challenge MODEL_DIR`: a challenger against the served model, on grades neither has seen.

1. The grades the served model has not seen: those imported after the last import it was trained through
   (:func:`~electives.serving.monitoring.unseen_grades`; an older artifact: the imports after it was written).
2. The challenger is trained as ``electives train`` would with the same flags, on the database as the served
   model saw it (its imports up to that one), so neither has seen the grades they are compared on.
3. Both predict exactly the same new grades — those both can predict: students they were trained on, or folded in
   from their earlier grades — and the challenger wins when its RMSE is at most the served model's.
4. A winner is trained again on every grade (its family; an NCF model with its settings) and replaces MODEL_DIR
   atomically (the artifact writer renames; the web app picks the new model up). The manifest's
   ``promotion_history`` keeps the served model's entries and adds this one: the decision, both models' figures
   and the grades compared on. A refused challenger writes nothing: MODEL_DIR stays byte for byte; exit 1.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from electives.cli.model import db_url, fit_from_args, load_training_data, save_trained, training_rows
from electives.cli.monitor import figure_table
from electives.errors import DataError, ElectivesError
from electives.models.config import TrainConfig

RULE = "promote when the challenger's RMSE on the new grades is at most the served model's"


def run_challenge(args: argparse.Namespace, config: TrainConfig, family: str | None) -> int:
    from electives.data.storage import open_store
    from electives.models.artifact import TrainedModel, load_model
    from electives.serving.monitoring import check_explicit, unseen_grades

    served_dir = Path(args.challenge)
    _check_flags(args, config)
    served = load_model(served_dir)
    check_explicit(served, "--challenge")
    with open_store(db_url(args)) as store:
        unseen = unseen_grades(served, store)
    if unseen.after_import is None:
        raise DataError(
            f"{served_dir} was trained from a file: which stored grades it saw is unknown, so no challenger can be "
            "trained without them; train the served model from --db first"
        )
    before = load_training_data(args, through_import=unseen.after_import)
    train = training_rows(before, "explicit")
    print(
        f"challenger: training {family} on {len(train):,} grades through import {unseen.after_import} (what "
        f"{served_dir} was trained on); comparing both on the {len(unseen.new):,} grades imported since",
        file=sys.stderr,
    )
    result = fit_from_args(args, train, config, family=family, scale=before.scale)
    trained = result.trained_on or result.fit_data
    challenger = TrainedModel(
        fitted=result.fitted,
        student_ids=tuple(trained.student_ids),
        course_ids=tuple(trained.course_ids),
        course_names=before.course_names,
        scale=before.scale,
        calibration=result.calibration,
        manifest={"metrics": result.metrics},
        path=Path("challenger"),
    )
    entry = _compare(served, challenger, unseen)
    entry["challenger"]["chosen"] = result.selection.chosen if result.selection is not None else result.family
    _print_comparison(entry, served, served_dir)
    if entry["decision"] == "refused":
        print(f"refused: the challenger's RMSE is above the served model's; {served_dir} is unchanged")
        return 1
    everything = load_training_data(args)
    # Refit the family that won (an NCF model with the settings it won with), not a fresh selection.
    refit_config = result.config if result.config is not None else config
    full = fit_from_args(
        args, training_rows(everything, "explicit"), refit_config, family=result.family, scale=everything.scale
    )
    entry["refit"] = {"rows": full.metrics.get("refit_rows") or len(full.fit_data) + len(full.validation)}
    entry["refit"]["trained_through"] = everything.trained_through
    history = [*(served.manifest.get("promotion_history") or []), entry]
    save_trained(str(served_dir), full, everything, args, extra={"promotion_history": history})
    print(
        f"promoted: {result.family} refitted on every grade ({entry['refit']['rows']:,}) and written to "
        f"{served_dir} (promotion_history: {len(history)} entr{'y' if len(history) == 1 else 'ies'})"
    )
    return 0


def _check_flags(args: argparse.Namespace, config: TrainConfig) -> None:
    """What a challenge cannot do, refused before anything is read or trained."""
    from electives.models import distributed

    if args.data:
        raise DataError("--challenge compares on the grades imported after the served model: give --db, not --data")
    if args.out and Path(args.out).resolve() != Path(args.challenge).resolve():
        raise DataError("--challenge replaces MODEL_DIR itself when the challenger wins; leave out --out")
    if args.dp_epsilon is not None:
        raise ElectivesError(
            "--challenge cannot be combined with --dp-epsilon: the challenger and its refit would each spend budget"
        )
    if config.resolved().mode != "explicit":
        raise ElectivesError(
            "--challenge compares predicted grades: it cannot train an enrolment-only (implicit) model"
        )
    if distributed.context().distributed:
        raise ElectivesError("--challenge runs in one process; run it without torchrun")


def _compare(served: Any, challenger: Any, unseen: Any) -> dict[str, Any]:
    """Both models' figures on exactly the new grades both can predict, and the decision (a history entry)."""
    from electives.serving.monitoring import NothingNewError, figures_on, predict_unseen

    a, b = predict_unseen(served, unseen), predict_unseen(challenger, unseen)
    rows = a.scored & b.scored
    if not rows.any():
        raise NothingNewError(
            f"none of the {len(unseen.new):,} new grades can be predicted by both models (courses neither knows, "
            "or students with no earlier grades)"
        )
    mine, theirs = figures_on(served, unseen, a, rows), figures_on(challenger, unseen, b, rows)
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "decision": "promoted" if theirs["rmse"] <= mine["rmse"] else "refused",
        "rule": RULE,
        "compared_on": {"basis": unseen.basis, "grades": int(rows.sum()), "students": mine["students"]},
        "served": {
            "family": served.family,
            "created_at": served.manifest.get("created_at"),
            "trained_through": served.manifest.get("trained_through"),
            "figures": mine,
        },
        "challenger": {"family": challenger.family, "figures": theirs},
    }


def _print_comparison(entry: dict[str, Any], served: Any, served_dir: Path) -> None:
    on = entry["compared_on"]
    print(
        f"{served_dir}: served model against a challenger on {on['grades']:,} new grades of {on['students']:,} students"
    )
    print(f"  ({on['basis']})")
    header = [f"served ({entry['served']['family']})", f"challenger ({entry['challenger']['chosen']})"]
    columns = [entry["served"]["figures"], entry["challenger"]["figures"]]
    nominal = served.calibration.coverage if served.calibration is not None else None
    for line in figure_table(header, columns, unit=f"{served.scale.name} points", nominal=nominal):
        print(line)
