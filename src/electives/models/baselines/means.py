"""Mean predictors: the floor every grade model must beat. ``GlobalMean`` and ``CourseMean`` do not depend on the
student (their vectors are empty: serving has nothing to fold in); ``StudentMean``'s vector is the student's mean."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import numpy as np

from electives.data.interactions import Interactions
from electives.models.baselines.base import Baseline, graded, saved, shrunk_means
from electives.models.interface import DEFAULT_OPTIONS, FoldIn, FoldInOptions, register

__all__ = ["CourseMean", "GlobalMean", "StudentMean"]


@register("global-mean")
class GlobalMean(Baseline):
    """ŷ = μ, the mean training grade."""

    mu: float = 0.0

    def fit(self, train: Interactions) -> Self:
        self.set_shape(train)
        self.mu = float(graded(train)[2].mean())
        return self

    def pair_scores(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.full(len(s), self.mu)

    def student_vectors(self) -> np.ndarray:
        return np.zeros((self.n_students, 0), dtype=np.float32)

    def scores(self, vector: np.ndarray) -> np.ndarray:
        return np.full(self.n_courses, np.float32(self.mu), dtype=np.float64)

    def fold_in(self, entries: Mapping[int, float], options: FoldInOptions = DEFAULT_OPTIONS) -> FoldIn:
        return self.no_vector(entries)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {**self.base_params(), "mu": self.mu}

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Self:
        _, p = saved(cls, arrays, params, {}, ("mu",))
        model = cls()
        model.restore_shape(p)
        model.mu = float(p["mu"])
        return model


class _ShrunkMean(Baseline):
    """A mean per student or per course (``by``), shrunk towards μ: μ + Σ(r − μ)/(n + reg)."""

    by: str  # "n_students" or "n_courses": which index the means are of
    mu: float = 0.0

    def __init__(self, reg: float = 0.0) -> None:
        self.reg = reg

    def fit(self, train: Interactions) -> Self:
        self.set_shape(train)
        s, c, r = graded(train)
        self.mu = float(r.mean())
        idx, n = (s, train.n_students) if self.by == "n_students" else (c, train.n_courses)
        self.means = shrunk_means(idx, r, n, self.mu, self.reg)
        return self

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"means": self.means}, {**self.base_params(), "mu": self.mu, "reg": self.reg}

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Self:
        a, p = saved(cls, arrays, params, {"means": (cls.by,)}, ("mu", "reg"))
        model = cls(reg=float(p["reg"]))
        model.restore_shape(p)
        model.mu, model.means = float(p["mu"]), a["means"]
        return model


@register("student-mean")
class StudentMean(_ShrunkMean):
    """ŷ_ui = mean of student u's training grades (μ + Σ(r − μ)/(n_u + reg)); μ for unseen students.
    Vector: ``[mean_u]``; fold-in: the same shrunk mean of the entered grades (reg scaled by prior_strength)."""

    by = "n_students"

    def pair_scores(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        return self.means[s]

    def student_vectors(self) -> np.ndarray:
        return self.means[:, None].astype(np.float32)

    def scores(self, vector: np.ndarray) -> np.ndarray:
        return np.full(self.n_courses, float(np.asarray(vector).reshape(-1)[0]), dtype=np.float64)

    def fold_in(self, entries: Mapping[int, float], options: FoldInOptions = DEFAULT_OPTIONS) -> FoldIn:
        c, g = self.check_entries(entries)
        reg = self.reg * options.prior_strength
        mean = self.mu + float((g - self.mu).sum()) / (len(g) + reg) if len(g) + reg > 0 else self.mu
        objective = float(((g - mean) ** 2).sum() + reg * (mean - self.mu) ** 2)
        return FoldIn(np.array([mean], dtype=np.float32), iterations=0, objective=objective, grades_used=len(c))


@register("course-mean")
class CourseMean(_ShrunkMean):
    """ŷ_ui = mean training grade of course i (μ + Σ(r − μ)/(n_i + reg)); μ for unseen courses."""

    by = "n_courses"

    def pair_scores(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        return self.means[c]

    def student_vectors(self) -> np.ndarray:
        return np.zeros((self.n_students, 0), dtype=np.float32)

    def scores(self, vector: np.ndarray) -> np.ndarray:
        return self.means.astype(np.float32).astype(np.float64)

    def fold_in(self, entries: Mapping[int, float], options: FoldInOptions = DEFAULT_OPTIONS) -> FoldIn:
        return self.no_vector(entries)
