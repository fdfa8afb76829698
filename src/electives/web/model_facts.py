"""What the model page says about a model, in words a registrar reads: labelled metrics and the plots worth showing.

The manifest's metrics are keyed for programs (``val_rmse``, ``interval_coverage_measured``); the page shows each as
a label and a value in its own unit: errors in the scale's points ("4.2 percent points"), shares as percentages,
rows as counts. ``GET /api/v1/model`` keeps the keys. A plot is shown only when its file is an image with something
drawn on it: a zero-byte, truncated or single-colour PNG would be an empty frame on the page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from electives.data.scales import GradeScale

__all__ = ["Plot", "error_unit", "format_points", "metric_label", "metric_rows", "plot_title", "plot_worth_showing"]

_MIN_PLOT_PIXELS = 16  # a plot narrower or lower than this has nothing readable on it
_RANKING = re.compile(r"(?:val_)?(hr|ndcg)_at_(\d+)(?:_(full|sampled))?")
_PLOT_TITLES = {
    "loss": "Training loss per epoch",
    "hr_at_k": "Hit rate at K (share of held-out courses in the top K)",
    "ndcg_at_k": "Ranking quality at K (NDCG@K)",
    "predicted_vs_actual": "Predicted against actual grade",
    "error_by_course": "Typical error by course",
}


@dataclass(frozen=True)
class Plot:
    """A plot file to show: its file name (the URL's last part) and a title in words."""

    name: str
    title: str


def error_unit(scale: GradeScale | None) -> str:
    """The unit of an error on ``scale``: "percent points", "grade points" (0–4 scales) or "points on X"."""
    if scale is None:
        return "normalised units (0–1)"
    if scale.name == "percent":
        return "percent points"
    if scale.span <= 5:
        return "grade points"
    return f"points on the {scale.name} scale"


def format_points(value: float, scale: GradeScale | None) -> str:
    """Points as the scale writes them: 87.5 on a percent scale, 3.30 on a 4-point one."""
    if scale is not None and scale.span >= 10:
        return f"{value:.1f}".removesuffix(".0")
    return f"{value:.2f}"


def metric_rows(metrics: Mapping[str, Any], scale: GradeScale | None) -> list[tuple[str, str]]:
    """(label, value) for each of the manifest's ``metrics``, in the manifest's order; no raw key is shown."""
    return [_row(key, float(value), scale) for key, value in metrics.items()]


def metric_label(key: str) -> str:
    """A metric's label in words, as :func:`metric_rows` shows it (``val_ndcg_at_10_sampled`` → "Ranking quality,
    NDCG@10 (against sampled courses)")."""
    return _row(key, 0.0, None)[0]


def _row(key: str, value: float, scale: GradeScale | None) -> tuple[str, str]:
    unit = error_unit(scale)
    if key == "val_rmse":
        return "Typical error (root mean square)", f"{format_points(value, scale)} {unit}"
    if key == "val_mae":
        return "Average error", f"{format_points(value, scale)} {unit}"
    if key == "val_within_one_letter":
        return "Predictions within one letter step", _percent(value)
    if key == "interval_coverage_nominal":
        return "Prediction range, intended coverage", _percent(value)
    if key == "interval_coverage_measured":
        return "Prediction range, measured coverage", _percent(value)
    if key == "validation_rows":
        return "Grades held out to measure it", f"{int(value):,}"
    if key == "refit_rows":
        return "Grades in the final fit", f"{int(value):,}"
    if key == "train_seconds":
        return "Training time", f"{value:,.1f} s"
    ranking = _RANKING.fullmatch(key)
    if ranking:
        kind, k, against = ranking.groups()
        where = {"full": " (full catalogue)", "sampled": " (against sampled courses)"}.get(against or "", "")
        if kind == "hr":
            return f"Held-out course in the top {k}{where}", _percent(value)
        return f"Ranking quality, NDCG@{k}{where}", f"{value:.3f}"
    words = key.removeprefix("val_").replace("_", " ")  # a metric this page does not know yet: its words
    return words[:1].upper() + words[1:], f"{value:.4g}"


def _percent(share: float) -> str:
    return f"{100 * share:.0f}%" if abs(100 * share - round(100 * share)) < 0.05 else f"{100 * share:.1f}%"


def plot_title(path: Path) -> str:
    """The plot's title in words: known report plots by name, others by their file name's words."""
    words = path.stem.replace("_", " ").replace("-", " ")
    return _PLOT_TITLES.get(path.stem) or words[:1].upper() + words[1:]


def plot_worth_showing(path: Path) -> bool:
    """Whether ``path`` is a PNG with something drawn on it: it decodes, is at least 16 pixels each way, and has
    more than one colour (an empty frame has one)."""
    from PIL import Image, UnidentifiedImageError  # matplotlib's own dependency: always there

    try:
        with Image.open(path) as image:
            if image.format != "PNG" or min(image.size) < _MIN_PLOT_PIXELS:
                return False
            image.load()
            low, high = image.convert("L").getextrema()
    except (OSError, UnidentifiedImageError, ValueError):
        return False
    return low != high
