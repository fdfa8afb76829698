"""A seat plan on disk: the students' planned electives (``plan.csv``), the per-course table
(``plan-courses.csv``) and the demand-vs-seats bar chart (``plan-seats.png``), side by side.

All three are written to temporary files in the target folder and renamed only when every one is complete, so
a failed run leaves no half-written plan. ``plan.csv`` holds one row per student and elective and may carry the
student numbers an advisor gave, so it is readable by its owner only (0600); the per-course files hold counts and
are shared (0644).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from electives.errors import DataError, StorageError
from electives.serving.plan import CourseLine, SeatPlan

__all__ = ["COURSE_COLUMNS", "PLAN_COLUMNS", "PlanFiles", "plan_paths", "write_plan"]

PLAN_COLUMNS = ("student", "course", "course_name", "predicted", "letter", "rank")
COURSE_COLUMNS = ("course", "course_name", "seats", "demand", "allocated", "predicted_mean", "likely_full")
_PLOTTED = 60  # courses in the chart at most: the most oversubscribed when there are more


@dataclass(frozen=True)
class PlanFiles:
    """The files written and the number of student rows in ``plan``."""

    plan: Path
    courses: Path
    chart: Path
    rows: int


def plan_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """``plan.csv`` → (plan.csv, plan-courses.csv, plan-seats.png) beside it; a DataError when the folder is
    missing or ``out`` is not a .csv name."""
    path = Path(out)
    if path.suffix.lower() != ".csv":
        raise DataError(f"--out {out}: expected a .csv file name (e.g. plan.csv)")
    if not path.parent.is_dir():
        raise DataError(f"--out {out}: the folder {path.parent} does not exist")
    return path, path.with_name(f"{path.stem}-courses.csv"), path.with_name(f"{path.stem}-seats.png")


def write_plan(plan: SeatPlan, out: str | Path, *, labels: Mapping[str, str] | None = None) -> PlanFiles:
    """Write the plan's three files (see the module docstring); ``labels`` as in
    :meth:`~electives.serving.plan.SeatPlan.student_lines`."""
    plan_path, courses_path, chart_path = plan_paths(out)
    students = plan.student_lines(labels)
    courses = plan.course_lines()
    rows = [(s.student, s.course, s.name, _points(s.points), s.letter, s.rank) for s in students]
    texts = {
        plan_path: (_csv(PLAN_COLUMNS, rows), 0o600),
        courses_path: (_csv(COURSE_COLUMNS, [_course_row(c) for c in courses]), 0o644),
    }
    staged: list[tuple[str, Path]] = []
    try:
        for path, (text, mode) in texts.items():
            staged.append((_stage(path, text.encode("utf-8"), mode), path))
        staged.append((_stage(chart_path, _chart(plan, courses), 0o644), chart_path))
        for tmp, path in staged:
            os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"cannot write the plan beside {plan_path}: {exc.strerror or exc}") from None
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
    return PlanFiles(plan_path, courses_path, chart_path, len(rows))


def _course_row(c: CourseLine) -> tuple[Any, ...]:
    mean = "" if c.mean_predicted is None else _points(c.mean_predicted)
    seats = "" if c.seats is None else c.seats
    return (c.course, c.name, seats, c.demand, c.allocated, mean, "yes" if c.likely_full else "no")


def _points(x: float) -> str:
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _csv(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _stage(path: Path, data: bytes, mode: int) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _chart(plan: SeatPlan, courses: list[CourseLine]) -> bytes:
    """Demand (everyone's own top k), seats and allocated per course, most demanded first, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt
    import numpy as np

    shown = sorted(courses, key=lambda c: (-c.demand, c.course))
    title = f"Demand vs seats, {plan.term} (k = {plan.k})"
    if len(shown) > _PLOTTED:
        shown = sorted(shown, key=lambda c: (-(c.demand - (c.seats if c.seats is not None else c.demand)), c.course))
        shown = sorted(shown[:_PLOTTED], key=lambda c: (-c.demand, c.course))
        title += f": the {_PLOTTED} most oversubscribed of {len(courses)} courses"
    x = np.arange(len(shown))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.32 * len(shown) + 2), 4.5))
    try:
        ax.bar(x - 0.27, [c.demand for c in shown], width=0.27, label="demand (own top k)", color="#d95f02")
        limited = [i for i, c in enumerate(shown) if c.seats is not None]
        ax.bar(x[limited], [shown[i].seats for i in limited], width=0.27, label="seats", color="#bbbbbb")
        ax.bar(x + 0.27, [c.allocated for c in shown], width=0.27, label="allocated", color="#1b9e77")
        ax.set_xticks(x, [c.course + ("*" if c.seats is None else "") for c in shown], rotation=90, fontsize=8)
        ax.set_ylabel("students")
        ax.set_title(title, fontsize=10)
        note = "; * no seat limit" if len(limited) < len(shown) else ""
        ax.legend(fontsize=8, title=f"{len(plan.students)} students{note}", title_fontsize=8)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()
