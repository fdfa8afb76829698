"""The bias model: a student's offset plus a course's offset, the baseline every interaction model must beat."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import numpy as np

from electives.data.interactions import Interactions
from electives.models.baselines.base import Baseline, graded, saved
from electives.models.interface import DEFAULT_OPTIONS, FoldIn, FoldInOptions, register

__all__ = ["BiasModel"]


@register("bias")
class BiasModel(Baseline):
    """ŷ_ui = μ + b_u + b_i, fitted by alternating closed-form ridge steps (Koren 2010, §2.1):

    b_i = Σ_u (r_ui − μ − b_u) / (λ_i + n_i),  b_u = Σ_i (r_ui − μ − b_i) / (λ_u + n_u).
    The regularisers count pseudo-ratings, so they do not depend on the grade scale.

    A student's vector is ``[b_u]``; folding one in is the b_u step above with the course biases fixed (λ_u scaled
    by ``prior_strength``), so a trained student's own grades give back their trained b_u.
    """

    mu: float = 0.0

    def __init__(self, reg_student: float = 15.0, reg_course: float = 10.0, iterations: int = 10) -> None:
        self.reg_student, self.reg_course, self.iterations = reg_student, reg_course, iterations

    def fit(self, train: Interactions) -> Self:
        self.set_shape(train)
        s, c, r = graded(train)
        self.mu = float(r.mean())
        n_s = np.bincount(s, minlength=self.n_students) + self.reg_student
        n_c = np.bincount(c, minlength=self.n_courses) + self.reg_course
        bu, bi = np.zeros(self.n_students), np.zeros(self.n_courses)
        for _ in range(self.iterations):
            bi = np.bincount(c, r - self.mu - bu[s], self.n_courses) / n_c
            bu = np.bincount(s, r - self.mu - bi[c], self.n_students) / n_s
        self.bu, self.bi = bu, bi
        return self

    def pair_scores(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.clip(self.mu + self.bu[s] + self.bi[c], 0.0, 1.0)

    def score_all(self, students: np.ndarray) -> np.ndarray:
        s = self.check_students(students)
        return np.clip(self.mu + self.bu[s, None] + self.bi[None, :], 0.0, 1.0).astype(np.float32)

    # -- students as vectors ---------------------------------------------------------------------------------
    def student_vectors(self) -> np.ndarray:
        return self.bu[:, None].astype(np.float32)

    def scores(self, vector: np.ndarray) -> np.ndarray:
        return np.clip(self.mu + float(np.asarray(vector).reshape(-1)[0]) + self.bi, 0.0, 1.0)

    def fold_in(self, entries: Mapping[int, float], options: FoldInOptions = DEFAULT_OPTIONS) -> FoldIn:
        c, g = self.check_entries(entries)
        residual = g - self.mu - self.bi[c]
        reg = self.reg_student * options.prior_strength
        bu = float(residual.sum()) / (len(g) + reg) if len(g) + reg > 0 else 0.0
        # The ridge objective the closed form minimises: Σ(r − μ − b_i − b_u)² + λ_u·b_u².
        objective = float(((residual - bu) ** 2).sum() + reg * bu**2)
        return FoldIn(np.array([bu], dtype=np.float32), iterations=0, objective=objective, grades_used=len(c))

    # -- persistence -----------------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        params = {
            **self.base_params(),
            "mu": self.mu,
            "reg_student": self.reg_student,
            "reg_course": self.reg_course,
            "iterations": self.iterations,
        }
        return {"student_bias": self.bu, "course_bias": self.bi}, params

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Self:
        shapes = {"student_bias": ("n_students",), "course_bias": ("n_courses",)}
        a, p = saved(cls, arrays, params, shapes, ("mu", "reg_student", "reg_course", "iterations"))
        model = cls(float(p["reg_student"]), float(p["reg_course"]), int(p["iterations"]))
        model.restore_shape(p)
        model.mu, model.bu, model.bi = float(p["mu"]), a["student_bias"], a["course_bias"]
        return model
