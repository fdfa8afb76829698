"""What the baselines share: graded training rows, shrunk means, pair-wise prediction in bounded chunks, and the
checks that rebuild a fitted baseline from its saved state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from electives.data.interactions import Interactions
from electives.errors import DataError, ModelError
from electives.models.interface import FoldIn, Model

__all__ = ["Baseline", "graded", "saved", "shrunk_means"]


def graded(train: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Students, courses and grades (float64) of the graded rows; a DataError when there are none."""
    if train.grades is None:
        raise DataError("this baseline predicts grades and needs graded training rows")
    keep = ~np.isnan(train.grades)
    if not keep.any():
        raise DataError("no graded training rows")
    return train.students[keep], train.courses[keep], train.grades[keep].astype(np.float64)


def shrunk_means(idx: np.ndarray, r: np.ndarray, n: int, mu: float, reg: float) -> np.ndarray:
    """μ + Σ(r − μ) / (count + reg) per id: the plain mean when reg = 0, μ for ids without rows."""
    count = np.bincount(idx, minlength=n).astype(np.float64)
    total = np.bincount(idx, r - mu, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count + reg > 0, mu + total / (count + reg), mu)


def saved(
    cls: type[Model],
    arrays: Mapping[str, np.ndarray],
    params: Mapping[str, Any],
    shapes: Mapping[str, tuple[str | int, ...]],
    names: tuple[str, ...],
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and parameters ``from_state`` needs, checked: each array of ``shapes`` present with that shape
    (dimensions named by a parameter, e.g. ``("n_students", "factors")``), each of ``names`` in params; a
    ModelError naming what is missing or mismatched, so a damaged artifact never loads as a wrong model."""
    what = f"{cls.family or cls.__name__} model"
    missing = [n for n in ("mode", "n_students", "n_courses", *names) if n not in params]
    if missing:
        raise ModelError(f"{what}: parameters {', '.join(missing)} are missing")
    absent = [n for n in shapes if n not in arrays]
    if absent:
        raise ModelError(f"{what}: arrays {', '.join(absent)} are missing")
    out = {}
    for name, dims in shapes.items():
        want = tuple(int(params[d]) if isinstance(d, str) else d for d in dims)
        got = np.asarray(arrays[name])
        if got.shape != want:
            raise ModelError(f"{what}: array {name} has shape {got.shape}, expected {want}")
        out[name] = got
    return out, dict(params)


class Baseline(Model):
    """A baseline in the :class:`Model` interface: ``predict`` goes through ``pair_scores`` in chunks."""

    def set_shape(self, train: Interactions) -> None:
        self.n_students, self.n_courses = train.n_students, train.n_courses
        self.train_fingerprint = train.fingerprint()

    def base_params(self) -> dict[str, Any]:
        return {"mode": self.mode, "n_students": self.n_students, "n_courses": self.n_courses}

    def restore_shape(self, params: Mapping[str, Any]) -> None:
        self.mode = params["mode"]
        self.n_students, self.n_courses = int(params["n_students"]), int(params["n_courses"])

    def predict(self, students: np.ndarray, courses: np.ndarray) -> np.ndarray:
        s, c = self.check_pairs(students, courses)
        step = 4096  # bounds the (pairs × n_courses) temporaries of the neighbourhood models
        parts = [self.pair_scores(s[i : i + step], c[i : i + step]) for i in range(0, len(s), step)]
        return np.concatenate(parts).astype(np.float32) if parts else np.empty(0, dtype=np.float32)

    def pair_scores(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Outputs for checked index pairs (the family's own formula; ``predict`` chunks and checks)."""
        raise NotImplementedError

    def score_all(self, students: np.ndarray) -> np.ndarray:
        s = self.check_students(students)
        c = np.arange(self.n_courses, dtype=np.int64)
        return self.predict(np.repeat(s, self.n_courses), np.tile(c, len(s))).reshape(len(s), self.n_courses)

    def no_vector(self, entries: Mapping[int, float]) -> FoldIn:
        """The fold-in of a family whose outputs do not depend on the student: an empty vector."""
        c, _ = self.check_entries(entries)
        return FoldIn(embedding=np.zeros(0, dtype=np.float32), iterations=0, objective=0.0, grades_used=len(c))
