"""The `monitor` sub-command: the served model on the grades imported since it was trained, against its validation
figures, with a verdict (holding / drifting / uncertain; the rule: electives.evaluation.monitoring)."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from electives.cli.model import db_url
from electives.defaults import DB_ENV, DEFAULT_DB_URL

# Rows of the figure table: (label, figure key, kind) — kind "points", "share" or "ratio".
FIGURE_ROWS = (
    ("RMSE ({unit})", "rmse", "points"),
    ("MAE ({unit})", "mae", "points"),
    ("within one letter step", "within_one_letter", "share"),
    ("{nominal} interval coverage", "interval_coverage", "share"),
    ("ranking NDCG (grade as gain)", "grade_ndcg", "ratio"),
    ("ranking Spearman", "spearman", "ratio"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "monitor",
        help="score the served model on grades imported after it was trained: holding or drifting?",
        description=(
            "Score MODEL on the stored grades it has not seen — those imported after the last import it was "
            "trained on (recorded at training; older models: imports after the model was written) — and print "
            "RMSE/MAE, interval coverage and the ranking figures next to its own validation figures, with a "
            "verdict: drifting when the new RMSE exceeds validation's by more than 10% even at its 95% lower "
            "bound (or the intervals cover 5 points too few), holding when within 10% at its upper bound, "
            "uncertain otherwise. Students the model was not trained on are folded in from their earlier grades. "
            "Exit 0 with a verdict, 2 when there is nothing new to score."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="the served model directory")
    p.add_argument(
        "--db", metavar="URL", help=f"the grade database (default: ${DB_ENV}, else {DEFAULT_DB_URL}); must exist"
    )
    p.add_argument(
        "--since",
        metavar="TERM",
        help="score every stored grade of TERM and later terms instead (e.g. for a model trained from a file)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_monitor)


def run_monitor(args: argparse.Namespace) -> int:
    from electives.data.storage import open_store
    from electives.models.artifact import load_model
    from electives.serving.monitoring import monitor

    model = load_model(args.model)
    with open_store(db_url(args)) as store:
        report = monitor(model, store, since=args.since)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False, default=_plain))
        return 0
    seen = report.trained_through
    through = f"trained through import {seen['import']}" if "import" in seen else "no import recorded"
    if seen.get("term"):
        through += f", latest term {seen['term']}"
    print(f"{report.model} ({report.family}; {through})")
    print(f"new grades: {report.new_grades:,} ({report.basis})")
    print("  scored: " + _scored_by(report.scored_by))
    for warning in report.warnings:
        print(f"  warning: {warning}")
    print()
    unit = f"{model.scale.name} points" if model.scale else "points"  # type: ignore[union-attr]
    nominal = report.validation.get("interval_coverage_nominal")
    val_rows = report.validation.get("grades")
    header = [f"new grades ({report.figures['grades']:,})", f"validation ({f'{val_rows:,}' if val_rows else '?'})"]
    for line in figure_table(header, [report.figures, report.validation], unit=unit, nominal=nominal):
        print(line)
    print()
    print(f"verdict: {report.verdict} — {report.reason}")
    return 0


def figure_table(
    header: Sequence[str], columns: Sequence[Mapping[str, Any]], *, unit: str, nominal: float | None
) -> list[str]:
    """Aligned lines: a label column and one column per figure set (— where a figure is missing)."""
    labels = [label.format(unit=unit, nominal=f"{nominal:.0%}" if nominal else "") for label, _, _ in FIGURE_ROWS]
    width = max(map(len, labels))
    cells = [[_cell(column.get(key), kind) for column in columns] for _, key, kind in FIGURE_ROWS]
    widths = [max(len(header[i]), *(len(row[i]) for row in cells)) for i in range(len(columns))]
    lines = [" " * width + "".join(f"  {h:>{w}}" for h, w in zip(header, widths, strict=True))]
    for label, row in zip(labels, cells, strict=True):
        lines.append(f"{label:<{width}}" + "".join(f"  {c:>{w}}" for c, w in zip(row, widths, strict=True)))
    return lines


def _cell(value: Any, kind: str) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "—"
    return {"points": f"{value:.2f}", "share": f"{value:.1%}", "ratio": f"{value:.3f}"}[kind]


def _scored_by(counts: Mapping[str, int]) -> str:
    words = {
        "trained": "of students the model was trained on",
        "folded": "folded in from the student's earlier grades",
        "no-history": "left out: student with no earlier grade the model can use",
        "unknown-course": "left out: course the model does not know",
    }
    return "; ".join(f"{counts[k]:,} {words[k]}" for k in words if counts.get(k))


def _plain(value: Any) -> Any:
    """numpy scalars in the report → Python numbers (JSON)."""
    return value.item() if hasattr(value, "item") else str(value)
