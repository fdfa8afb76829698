"""Ranking-only baselines (implicit data): they order courses and predict no grade."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import numpy as np

from electives.data.interactions import Interactions, sorted_unique
from electives.models.baselines.base import Baseline, saved
from electives.models.interface import DEFAULT_OPTIONS, FoldIn, FoldInOptions, Mode, register

__all__ = ["EASE", "Popularity"]


@register("popularity")
class Popularity(Baseline):
    """score_ui = n_i / max_j n_j, the share of the most-taken course's enrolments. Ranking only; the same for
    every student, so its vectors are empty."""

    mode: Mode = "implicit"

    def fit(self, train: Interactions) -> Self:
        self.set_shape(train)
        n = np.bincount(sorted_unique(train.keys()) % self.n_courses, minlength=self.n_courses).astype(np.float64)
        self.pop = (n / max(1.0, n.max())).astype(np.float32)
        return self

    def pair_scores(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        return self.pop[c]

    def score_all(self, students: np.ndarray) -> np.ndarray:
        s = self.check_students(students)
        return np.broadcast_to(self.pop, (len(s), self.n_courses)).copy()

    def student_vectors(self) -> np.ndarray:
        return np.zeros((self.n_students, 0), dtype=np.float32)

    def scores(self, vector: np.ndarray) -> np.ndarray:
        return self.pop.astype(np.float64)

    def fold_in(self, entries: Mapping[int, float], options: FoldInOptions = DEFAULT_OPTIONS) -> FoldIn:
        return self.no_vector(entries)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"popularity": self.pop}, self.base_params()

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Self:
        a, p = saved(cls, arrays, params, {"popularity": ("n_courses",)}, ())
        model = cls()
        model.restore_shape(p)
        model.pop = a["popularity"]
        return model


@register("ease")
class EASE(Baseline):
    """EASE (Steck 2019): B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹; score_u = x_u B. Ranking only.
    A student's vector is x_u, their 0/1 row of courses taken; a new one's is built from the courses entered."""

    mode: Mode = "implicit"

    def __init__(self, lam: float = 500.0) -> None:
        self.lam = lam

    def fit(self, train: Interactions) -> Self:
        self.set_shape(train)
        lookup = train.item_lookup()
        X = np.zeros((self.n_students, self.n_courses), dtype=np.float64)
        X[np.repeat(np.arange(self.n_students), lookup.counts()), lookup.indices] = 1.0
        G = X.T @ X
        G[np.diag_indices_from(G)] += self.lam
        P = np.linalg.inv(G)
        B = -P / np.diag(P)[None, :]
        np.fill_diagonal(B, 0.0)
        self.X, self.B = X.astype(np.float32), B.astype(np.float32)
        return self

    def pair_scores(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", self.X[s], self.B.T[c])

    def score_all(self, students: np.ndarray) -> np.ndarray:
        return self.X[self.check_students(students)] @ self.B

    def student_vectors(self) -> np.ndarray:
        return self.X

    def scores(self, vector: np.ndarray) -> np.ndarray:
        return (np.asarray(vector, dtype=np.float32).reshape(-1) @ self.B).astype(np.float64)

    def course_vectors(self) -> np.ndarray | None:
        return self.B

    def fold_in(self, entries: Mapping[int, float], options: FoldInOptions = DEFAULT_OPTIONS) -> FoldIn:
        c, _ = self.check_entries(entries)
        vector = np.zeros(self.n_courses, dtype=np.float32)
        vector[c] = 1.0
        return FoldIn(vector, iterations=0, objective=0.0, grades_used=len(c))

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"courses_taken": self.X, "weights": self.B}, {**self.base_params(), "lam": self.lam}

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Self:
        shapes = {"courses_taken": ("n_students", "n_courses"), "weights": ("n_courses", "n_courses")}
        a, p = saved(cls, arrays, params, shapes, ("lam",))
        model = cls(lam=float(p["lam"]))
        model.restore_shape(p)
        model.X, model.B = a["courses_taken"], a["weights"]
        return model
