"""The at-risk report's files: the CSV of rows and, beside it, the plot of predicted grades per required course.

CSV columns (:data:`COLUMNS`): student, course, course_name, predicted, low, high (points on the scale, as
rounded by the report), at_risk and high_confidence (``yes``/``no``; low, high and high_confidence are empty when
the model has no interval). The plot (``NAME.png`` beside ``NAME.csv``): one row per required course with due
students, their predicted grades as a box and as points (flagged ones in colour), the pass mark as a line; at most
:data:`MAX_PLOTTED` courses, those with the most flagged rows, and the title says so. Both files are written to
temporary names and renamed only when both are complete: a reader never sees half a report.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from electives.errors import DataError, StorageError
from electives.serving.at_risk import AtRiskReport, CourseCount

__all__ = ["COLUMNS", "MAX_PLOTTED", "plot_path", "write_at_risk"]

COLUMNS = ("student", "course", "course_name", "predicted", "low", "high", "at_risk", "high_confidence")
MAX_PLOTTED = 40  # courses in the plot: beyond that the rows are too thin to read


def plot_path(out: str | Path) -> Path:
    """Where the plot of the report written to ``out`` goes: ``out`` with the suffix .png (checked: ``out`` is not
    itself a .png, and its folder exists)."""
    out = Path(out)
    png = out.with_name(out.stem + ".png")
    if png == out:
        raise DataError(f"--out {out}: the report is a CSV file (e.g. at-risk.csv); its plot is written beside it")
    if not out.parent.is_dir():
        raise StorageError(f"cannot write {out}: the folder {out.parent} does not exist")
    return png


def write_at_risk(report: AtRiskReport, out: str | Path) -> tuple[Path, Path]:
    """Write the CSV to ``out`` and the plot to :func:`plot_path`; returns both paths."""
    out = Path(out)
    png = plot_path(out)
    temps: list[str] = []
    try:
        temps.append(_temp_text(out, _csv_text(report)))
        temps.append(_temp_figure(png, report))
        for tmp, final in zip(temps, (out, png), strict=True):
            os.replace(tmp, final)
    except OSError as exc:
        raise StorageError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)
    return out, png


def _csv_text(report: AtRiskReport) -> str:
    def number(x: float | None) -> str:
        return "" if x is None else f"{x:g}"

    def flag(x: bool | None) -> str:
        return "" if x is None else ("yes" if x else "no")

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in report.rows:
        writer.writerow(
            (
                r.student,
                r.course,
                r.course_name,
                number(r.predicted),
                number(r.low),
                number(r.high),
                flag(r.at_risk),
                flag(r.high_confidence),
            )
        )
    return buffer.getvalue()


def _temp_text(path: Path, text: str) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be shared
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    return tmp


def _temp_figure(path: Path, report: AtRiskReport) -> str:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    os.chmod(tmp, 0o644)
    fig = _figure(plt, report)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return tmp


def _figure(plt: Any, report: AtRiskReport) -> Any:
    courses = _plotted(report.courses)
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.32 * max(len(courses), 3)))
    scale, bar = report.scale, report.pass_points
    title = f"Predicted grades in required courses due in {report.term}"
    if len(courses) < len(report.courses):
        title += f" ({len(courses)} of {len(report.courses)} courses: those with the most flagged)"
    ax.set_title(title, fontsize=10)
    ax.axvline(bar, color="C3", linestyle="--", linewidth=1, label=f"pass ({bar:g})")
    if not courses:
        ax.text(0.5, 0.5, "no student is due a required course", transform=ax.transAxes, ha="center")
    else:
        positions = np.arange(len(courses), 0, -1)
        ax.boxplot(
            [c.predicted for c in courses], positions=positions, orientation="horizontal", widths=0.6, showfliers=False
        )
        rng = np.random.default_rng(0)  # jitter only; the same picture every run
        for y, c in zip(positions, courses, strict=True):
            values = np.asarray(c.predicted)
            colours = np.where(values < bar - 1e-9, "C3", "0.55")
            size = 18 if values.size <= 20 else 6  # a few students: each dot must show beside the box
            ax.scatter(values, y + rng.uniform(-0.22, 0.22, values.size), s=size, c=colours, alpha=0.6, linewidths=0)
        ax.set_yticks(positions, [f"{c.course} ({c.at_risk} of {c.due} at risk)" for c in courses], fontsize=8)
    # From a little below the lowest prediction (or the pass) to the top: the empty bottom of a scale says nothing.
    lowest = min([bar, *(min(c.predicted) for c in courses)])
    ax.set_xlim(max(scale.low, lowest - 0.05 * scale.span), scale.high)
    ax.set_xlabel(f"predicted grade (scale {scale.name})")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def _plotted(courses: tuple[CourseCount, ...]) -> list[CourseCount]:
    """The courses shown, in the report's (catalogue) order: all of them, or the most flagged."""
    if len(courses) <= MAX_PLOTTED:
        return list(courses)
    keep = sorted(courses, key=lambda c: (-c.at_risk, -c.due, c.course))[:MAX_PLOTTED]
    chosen = {c.course for c in keep}
    return [c for c in courses if c.course in chosen]
