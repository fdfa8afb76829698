"""Evaluation reports: report.json, report.md and PNG plots from an `EvaluationResult` (details=True).

Plots (matplotlib, Agg backend, so no display is needed):
- loss.png — training loss per epoch and the validation metric for each trained model (best epoch marked);
- hr_at_k.png, ndcg_at_k.png — HR@K and NDCG@K for K = 1…20, every model, full catalogue and sampled;
- predicted_vs_actual.png — predicted against actual grade in scale points, one panel per grade model;
- error_by_course.png — RMSE per held-out course for the first model and the best other grade model.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from electives.data.scales import GradeScale
from electives.errors import StorageError
from electives.evaluation.evaluate import EvaluationResult

__all__ = ["EpochStats", "markdown_table", "write_report"]


class EpochStats(Protocol):
    """What a report reads of one training epoch (`electives.models.epochs.EpochStats` provides it; evaluation
    sits below models, so it names the shape rather than importing the class)."""

    @property
    def phase(self) -> str: ...
    @property
    def epoch(self) -> int: ...
    @property
    def train_loss(self) -> float: ...
    @property
    def val_metric(self) -> float | None: ...
    @property
    def seconds(self) -> float: ...


# Courses shown in the error-by-course plot: those with the most held-out rows (a long tail is unreadable).
MAX_COURSES_PLOTTED = 30
# Points drawn per predicted-vs-actual panel; beyond this a seeded random subset (the plot stays readable).
MAX_POINTS = 5000


def markdown_table(result: EvaluationResult, digits: int = 4) -> str:
    """The comparison table (one row per model, one column per metric) as GitHub Markdown."""
    names = result.metric_names()
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for model, m in result.metrics.items():
        cells = ["" if n not in m or math.isnan(m[n]) else f"{m[n]:.{digits}f}" for n in names]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    out_dir: Path | str,
    result: EvaluationResult,
    *,
    histories: Mapping[str, Sequence[EpochStats]] | None = None,
    val_metric: str = "rmse",
    scale: GradeScale | None = None,
    title: str = "Evaluation",
    context: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write report.json, report.md and the plots into `out_dir`; returns {name: path}.

    `histories` maps a trained model's name to its epoch history, whose validation metric is `val_metric`
    ("rmse" of normalised grades, drawn as MSE next to the training loss, or e.g. "hr@10"); `context` (data source, split, training
    configuration, …) is copied into the JSON and listed in the Markdown.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create report folder {out}: {exc.strerror}") from None
    histories = dict(histories or {})
    written: dict[str, Path] = {}
    plots = _plots(out, result, histories, val_metric, scale)
    written.update(plots)
    doc = {
        "title": title,
        "context": dict(context or {}),
        **result.to_dict(),
        "histories": {k: [_epoch_dict(h) for h in v] for k, v in histories.items()},
        "plots": {k: p.name for k, p in plots.items()},
    }
    written["json"] = _write_text(out / "report.json", json.dumps(doc, indent=2, default=_json_default) + "\n")
    written["markdown"] = _write_text(out / "report.md", _markdown(result, histories, scale, title, context, plots))
    return written


# -- files ----------------------------------------------------------------------------------------------------


def _write_text(path: Path, text: str) -> Path:
    # Atomic: a reader never sees half a report.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc.strerror}") from None
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _epoch_dict(h: EpochStats) -> dict[str, Any]:
    return {
        "phase": h.phase,
        "epoch": h.epoch,
        "train_loss": h.train_loss,
        "val_metric": h.val_metric,
        "seconds": round(h.seconds, 3),
    }


def _markdown(
    result: EvaluationResult,
    histories: Mapping[str, Sequence[EpochStats]],
    scale: GradeScale | None,
    title: str,
    context: Mapping[str, Any] | None,
    plots: Mapping[str, Path],
) -> str:
    info = result.info
    unit = f"{scale.name} points" if scale is not None else "normalised units"
    lines = [f"# {title}", ""]
    for key, value in (context or {}).items():
        if not isinstance(value, Mapping | list):
            lines.append(f"- {key}: {value}")
    lines += [
        f"- training rows: {info.get('n_train', '?'):,}; test rows: {info.get('n_test', '?'):,} "
        f"({info.get('n_test_students', '?'):,} students); catalogue: {info.get('n_courses', '?'):,} courses",
        f"- ranking: HR/NDCG@{info.get('k')} over the full catalogue (training courses excluded) and against "
        f"{info.get('n_negatives', 0)} sampled untaken courses; RMSE and MAE in {unit}",
        "",
        "## Comparison",
        "",
        markdown_table(result),
        "",
        "HR and NDCG count a hit when a held-out course (one the student did take) ranks in the top K: they "
        "measure predicting enrolment, not grades, which is why popularity does well there. Ties count against "
        "the held-out course, so a model that scores every course alike for a student (global or student mean) "
        "gets no ranking credit.",
        "",
    ]
    lines += _served_lines((context or {}).get("served_choice"))
    for name, hist in histories.items():
        validated = [h for h in hist if not h.phase.endswith(" refit")]
        final = [h for h in validated if h.phase == (validated[-1].phase if validated else "")]
        if final:
            pre = len(validated) - len(final)
            refit = len(hist) - len(validated)
            lines.append(
                f"- {name}: {len(final)} epochs run"
                + (f" after {pre} pre-training epochs" if pre else "")
                + (f"; then refitted on training + validation rows ({refit} epochs)" if refit else "")
            )
    captions = {
        "loss": "Training loss and validation metric per epoch",
        "hr_at_k": "HR@K, K = 1…20",
        "ndcg_at_k": "NDCG@K, K = 1…20",
        "predicted_vs_actual": "Predicted against actual grade",
        "error_by_course": "Error by course",
    }
    for key, path in plots.items():
        lines += ["", f"## {captions.get(key, key)}", "", f"![{captions.get(key, key)}]({path.name})"]
    worst = _worst_courses(result)
    if worst:
        model, rows = worst
        lines += ["", f"## Courses with the largest {model} error", "", "| course | n | RMSE | MAE | bias |"]
        lines.append("|---|---:|---:|---:|---:|")
        for r in rows:
            lines.append(f"| {r['course']} | {r['n']} | {r['rmse']:.3f} | {r['mae']:.3f} | {r['bias']:+.3f} |")
    return "\n".join(lines) + "\n"


def _served_lines(served: Any) -> list[str]:
    """The served choice (what `electives train` would pick from the training part): each candidate it weighed."""
    if not isinstance(served, Mapping) or not isinstance(served.get("candidates"), list):
        return []
    metric = str(served.get("metric") or "val_rmse")
    shown = "RMSE" if metric == "val_rmse" else metric.removeprefix("val_").replace("_at_", "@")
    lines = [
        "## Served choice",
        "",
        f"`electives train` on the training part alone would serve **{served.get('chosen')}**, chosen by {shown} "
        f"on {served.get('validation', 'validation rows')} of the training part (the test part unseen), then fitted "
        "again on the whole training part; its row in the table above is marked *served choice*.",
        "",
        f"| candidate | family | validation {shown} | seconds |",
        "|---|---|---:|---:|",
    ]
    for c in served["candidates"]:
        value = f"failed: {c.get('error')}" if c.get("error") else f"{c.get(metric) or 0:.4f}"
        value = f"skipped: {c.get('skipped')}" if c.get("skipped") else value
        mark = " (chosen)" if c.get("name") == served.get("chosen") else ""
        lines.append(f"| {c.get('name')}{mark} | {c.get('family')} | {value} | {c.get('seconds', 0):.1f} |")
    return [*lines, ""]


def _worst_courses(result: EvaluationResult, n: int = 10) -> tuple[str, list[dict[str, Any]]] | None:
    if not result.by_course:
        return None
    model = next(iter(result.by_course))
    rows = [r for r in result.by_course[model] if r["n"] >= 3] or result.by_course[model]
    return model, sorted(rows, key=lambda r: -r["rmse"])[:n]


# -- plots ----------------------------------------------------------------------------------------------------


def _plots(
    out: Path,
    result: EvaluationResult,
    histories: Mapping[str, Sequence[EpochStats]],
    val_metric: str,
    scale: GradeScale | None,
) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    written: dict[str, Path] = {}
    makers = (
        ("loss", lambda: _plot_loss(plt, histories, val_metric)),
        ("hr_at_k", lambda: _plot_curves(plt, result, "hr", "HR@K")),
        ("ndcg_at_k", lambda: _plot_curves(plt, result, "ndcg", "NDCG@K")),
        ("predicted_vs_actual", lambda: _plot_predicted(plt, result, scale)),
        ("error_by_course", lambda: _plot_by_course(plt, result, scale)),
    )
    for name, make in makers:
        fig = make()
        if fig is None:
            continue
        path = out / f"{name}.png"
        try:
            fig.savefig(path, dpi=110, bbox_inches="tight")
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}") from None
        finally:
            plt.close(fig)
        written[name] = path
    return written


def _plot_loss(plt: Any, histories: Mapping[str, Sequence[EpochStats]], val_metric: str) -> Any:
    runs = {name: list(h) for name, h in histories.items() if h}
    if not runs:
        return None
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for ax, (name, hist) in zip(axes[0], runs.items(), strict=True):
        phases = list(dict.fromkeys(h.phase for h in hist))
        offset = 0
        val_ax = None
        for phase in phases:
            hs = [h for h in hist if h.phase == phase]
            x = [offset + h.epoch for h in hs]
            ax.plot(x, [h.train_loss for h in hs], "o-", ms=3, label=f"{phase} training loss")
            vals = [(xi, h.val_metric) for xi, h in zip(x, hs, strict=True) if h.val_metric is not None]
            if vals:
                if val_metric == "rmse":
                    # Validation MSE (RMSE²) shares the training loss's axis and units.
                    ax.plot(
                        [v[0] for v in vals], [v[1] ** 2 for v in vals], "s--", ms=3, label=f"{phase} validation MSE"
                    )
                else:
                    val_ax = val_ax or ax.twinx()
                    val_ax.plot([v[0] for v in vals], [v[1] for v in vals], "s--", ms=3, color="C3")
                    val_ax.set_ylabel(f"validation {val_metric} (dashed)")
            offset = x[-1] if x else offset
        ax.set_xlabel("epoch" + (" (phases back to back)" if len(phases) > 1 else ""))
        ax.set_ylabel("loss")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot_curves(plt: Any, result: EvaluationResult, metric: str, label: str) -> Any:
    kinds = [k for k in ("full", "sampled") if any(f"{metric}_{k}" in c for c in result.curves.values())]
    if not kinds:
        return None
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for i, (model, curves) in enumerate(result.curves.items()):
            ys = curves.get(f"{metric}_{kind}")
            if ys:
                style = "-" if i == 0 else "--"
                ax.plot(range(1, len(ys) + 1), ys, style, marker="o", ms=2, lw=2 if i == 0 else 1, label=model)
        what = (
            "full catalogue" if kind == "full" else f"against {result.info.get('n_negatives', '?')} sampled negatives"
        )
        ax.set_title(f"{label}, {what}")
        ax.set_xlabel("K")
        ax.set_ylabel(label)
        ax.set_xticks(range(0, len(ys or []) + 1, 5))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _points(values: np.ndarray, scale: GradeScale | None) -> np.ndarray:
    return values if scale is None else scale.low + values * scale.span


def _plot_predicted(plt: Any, result: EvaluationResult, scale: GradeScale | None) -> Any:
    if not result.predictions or result.actual is None:
        return None
    models = list(result.predictions)
    cols = min(4, len(models))
    rows = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows), squeeze=False)
    actual = _points(result.actual, scale)
    keep = np.arange(len(actual))
    if len(keep) > MAX_POINTS:
        keep = np.sort(np.random.default_rng(0).choice(len(actual), MAX_POINTS, replace=False))
    lo, hi = (scale.low, scale.high) if scale is not None else (0.0, 1.0)
    unit = scale.name if scale is not None else "normalised"
    for ax in axes.ravel()[len(models) :]:
        ax.axis("off")
    for ax, model in zip(axes.ravel(), models, strict=False):
        pred = _points(result.predictions[model], scale)
        ax.scatter(actual[keep], pred[keep], s=4, alpha=0.25)
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        rmse = result.metrics.get(model, {}).get("rmse", float("nan"))
        ax.set_title(f"{model} (RMSE {rmse:.3f})", fontsize=9)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"actual ({unit})", fontsize=8)
        ax.set_ylabel(f"predicted ({unit})", fontsize=8)
    fig.tight_layout()
    return fig


def _plot_by_course(plt: Any, result: EvaluationResult, scale: GradeScale | None) -> Any:
    if not result.by_course:
        return None
    models = list(result.by_course)
    first = models[0]
    others = [m for m in models[1:] if "rmse" in result.metrics.get(m, {})]
    other = min(others, key=lambda m: result.metrics[m]["rmse"]) if others else None
    rows = sorted(result.by_course[first], key=lambda r: -r["n"])[:MAX_COURSES_PLOTTED]
    rows.sort(key=lambda r: r["rmse"])
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(rows) + 1.5))
    ax.barh(y, [r["rmse"] for r in rows], color="C0", alpha=0.8, label=first)
    if other is not None:
        theirs = {r["course"]: r["rmse"] for r in result.by_course[other]}
        ax.plot([theirs.get(r["course"], np.nan) for r in rows], y, "D", color="C3", ms=4, label=other)
    ax.set_yticks(y, [f"{r['course']} (n={r['n']})" for r in rows], fontsize=7)
    unit = f"{scale.name} points" if scale is not None else "normalised units"
    ax.set_xlabel(f"RMSE ({unit})")
    shown = f"the {len(rows)} courses with the most held-out grades" if len(rows) < len(result.by_course[first]) else ""
    ax.set_title(f"Error by course: {shown}" if shown else "Error by course", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
