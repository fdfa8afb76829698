"""Item-based k-nearest neighbours: a student is their row of (centred) grades, so fold-in needs no solver."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

import numpy as np

from electives.data.interactions import Interactions
from electives.models.baselines.base import Baseline, graded, saved, shrunk_means
from electives.models.interface import DEFAULT_OPTIONS, FoldIn, FoldInOptions, register

__all__ = ["ItemKNN"]


@register("knn")
class ItemKNN(Baseline):
    """Item-based k-nearest neighbours with cosine similarity (Sarwar et al. 2001), k neighbours per item.

    Implicit: s_ij = cos(x_i, x_j) on binary columns, score_ui = Σ_{j ∈ N_k(i)} s_ij x_uj.
    Explicit: cosine on item-centred grades d_uj = r_uj − μ_j, ŷ_ui = μ_i + Σ s_ij d_uj / Σ |s_ij| over the
    neighbours j ∈ N_k(i) that u has graded (μ_i alone when there are none).
    Similarities are shrunk by n_ij / (n_ij + shrink), n_ij the number of students who have both (Koren 2008),
    so that a pair seen together once does not count as a perfect neighbour.

    A student's vector is ``[X_u, M_u]`` (length 2·n_courses): their centred grades (implicit: 1 per course taken)
    and the mask of the courses they have. A new student's vector is built the same way from the entered grades;
    the similarities do not change, which is why fold-in is exact for this family.
    """

    def __init__(self, k: int = 200, shrink: float = 100.0, mode: Literal["explicit", "implicit"] = "explicit") -> None:
        self.k, self.shrink, self.mode = k, shrink, mode

    def fit(self, train: Interactions) -> Self:
        self.set_shape(train)
        if self.mode == "explicit":
            s, c, r = graded(train)
            self.item_mean = shrunk_means(c, r, self.n_courses, float(r.mean()), 0.0)  # CourseMean's means
            vals = r - self.item_mean[c]
        else:
            lookup = train.item_lookup()
            s = np.repeat(np.arange(self.n_students, dtype=np.int64), lookup.counts())
            c, vals = lookup.indices, np.ones(len(lookup.indices))
            self.item_mean = np.zeros(self.n_courses)
        X = np.zeros((self.n_students, self.n_courses), dtype=np.float32)
        X[s, c] = vals  # a retaken course keeps its last grade
        M = np.zeros_like(X)
        M[s, c] = 1.0
        norms = np.linalg.norm(X, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = (X.T @ X) / np.outer(norms, norms)
        sim = np.nan_to_num(sim, nan=0.0)
        if self.shrink > 0:
            common = M.T @ M
            sim *= common / (common + self.shrink)
        np.fill_diagonal(sim, 0.0)
        k = min(self.k, self.n_courses - 1)
        if k < self.n_courses - 1:
            # Keep the k largest similarities in each row (item i's neighbourhood).
            drop = np.argpartition(-np.abs(sim), k, axis=1)[:, k:]
            np.put_along_axis(sim, drop, 0.0, axis=1)
        self.sim, self.X, self.M = sim.astype(np.float32), X, M
        return self

    def score_all(self, students: np.ndarray) -> np.ndarray:
        s = self.check_students(students)
        return self._rows(self.X[s], self.M[s])

    def _rows(self, X: np.ndarray, M: np.ndarray) -> np.ndarray:
        num = X @ self.sim.T
        if self.mode == "implicit":
            return num
        den = M @ np.abs(self.sim).T
        with np.errstate(invalid="ignore", divide="ignore"):
            dev = np.where(den > 0, num / den, 0.0)
        return np.clip(self.item_mean[None, :] + dev, 0.0, 1.0).astype(np.float32)

    def pair_scores(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        num = np.einsum("ij,ij->i", self.X[s], self.sim[c])
        if self.mode == "implicit":
            return num.astype(np.float32)
        den = np.einsum("ij,ij->i", self.M[s], np.abs(self.sim[c]))
        with np.errstate(invalid="ignore", divide="ignore"):
            dev = np.where(den > 0, num / den, 0.0)
        return np.clip(self.item_mean[c] + dev, 0.0, 1.0).astype(np.float32)

    # -- students as vectors ---------------------------------------------------------------------------------
    def student_vectors(self) -> np.ndarray:
        return np.concatenate([self.X, self.M], axis=1)

    def scores(self, vector: np.ndarray) -> np.ndarray:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        n = self.n_courses
        return self._rows(v[None, :n], v[None, n:])[0].astype(np.float64)

    def course_vectors(self) -> np.ndarray | None:
        return self.sim

    def fold_in(self, entries: Mapping[int, float], options: FoldInOptions = DEFAULT_OPTIONS) -> FoldIn:
        c, g = self.check_entries(entries)
        vector = np.zeros(2 * self.n_courses, dtype=np.float32)
        vector[c] = g - self.item_mean[c] if self.mode == "explicit" else 1.0
        vector[self.n_courses + c] = 1.0
        return FoldIn(vector, iterations=0, objective=0.0, grades_used=len(c))

    # -- persistence -----------------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {"similarity": self.sim, "grades": self.X, "taken": self.M, "course_mean": self.item_mean}
        return arrays, {**self.base_params(), "k": self.k, "shrink": self.shrink}

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Self:
        shapes = {
            "similarity": ("n_courses", "n_courses"),
            "grades": ("n_students", "n_courses"),
            "taken": ("n_students", "n_courses"),
            "course_mean": ("n_courses",),
        }
        a, p = saved(cls, arrays, params, shapes, ("k", "shrink"))
        model = cls(k=int(p["k"]), shrink=float(p["shrink"]), mode=p["mode"])
        model.restore_shape(p)
        model.sim, model.X, model.M, model.item_mean = a["similarity"], a["grades"], a["taken"], a["course_mean"]
        return model
