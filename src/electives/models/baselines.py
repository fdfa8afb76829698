"""Baselines with the fitted-model interface of `training.FittedNCF`.

Each has `fit(train) -> self`, `predict(students, courses) -> np.ndarray`, `score_all(students) -> (n, n_courses)`
and `predicts_grades` (whether `predict` returns normalised grades, i.e. whether RMSE means anything).

Grade predictors (explicit data): GlobalMean, StudentMean, CourseMean, BiasModel, MatrixFactorization,
ItemKNN. Ranking-only (implicit data): Popularity, EASE, and MatrixFactorization / ItemKNN with
mode="implicit".
"""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
import torch

from electives.data.interactions import Interactions, sorted_unique
from electives.errors import DataError

__all__ = [
    "EASE",
    "BiasModel",
    "CourseMean",
    "GlobalMean",
    "ItemKNN",
    "MatrixFactorization",
    "Popularity",
    "StudentMean",
]


def _graded(train: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if train.grades is None:
        raise DataError("this baseline predicts grades and needs graded training rows")
    keep = ~np.isnan(train.grades)
    if not keep.any():
        raise DataError("no graded training rows")
    return train.students[keep], train.courses[keep], train.grades[keep].astype(np.float64)


class _Baseline:
    predicts_grades: bool = True
    n_students: int = 0
    n_courses: int = 0
    train_fingerprint: str = ""

    def _shape(self, train: Interactions) -> None:
        self.n_students, self.n_courses = train.n_students, train.n_courses
        self.train_fingerprint = train.fingerprint()

    def predict(self, students: np.ndarray, courses: np.ndarray) -> np.ndarray:
        s, c = np.asarray(students, dtype=np.int64), np.asarray(courses, dtype=np.int64)
        if len(s) != len(c):
            raise ValueError(f"{len(s)} students but {len(c)} courses")
        step = 4096  # bounds the (pairs × n_courses) temporaries of the neighbourhood models
        parts = [self._predict(s[i : i + step], c[i : i + step]) for i in range(0, len(s), step)]
        return np.concatenate(parts).astype(np.float32) if parts else np.empty(0, dtype=np.float32)

    def _predict(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score_all(self, students: np.ndarray) -> np.ndarray:
        s = np.asarray(students, dtype=np.int64)
        c = np.arange(self.n_courses, dtype=np.int64)
        return self.predict(np.repeat(s, self.n_courses), np.tile(c, len(s))).reshape(len(s), self.n_courses)


class GlobalMean(_Baseline):
    """ŷ = μ, the mean training grade."""

    def fit(self, train: Interactions) -> Self:
        self._shape(train)
        self.mu = float(_graded(train)[2].mean())
        return self

    def _predict(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.full(len(s), self.mu)


def _shrunk_means(idx: np.ndarray, r: np.ndarray, n: int, mu: float, reg: float) -> np.ndarray:
    # μ + Σ(r − μ) / (count + reg): the plain mean when reg = 0, μ for ids without rows.
    count = np.bincount(idx, minlength=n).astype(np.float64)
    total = np.bincount(idx, r - mu, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count + reg > 0, mu + total / (count + reg), mu)


class StudentMean(_Baseline):
    """ŷ_ui = mean of student u's training grades (μ + Σ(r − μ)/(n_u + reg)); μ for unseen students."""

    def __init__(self, reg: float = 0.0) -> None:
        self.reg = reg

    def fit(self, train: Interactions) -> Self:
        self._shape(train)
        s, _, r = _graded(train)
        self.mu = float(r.mean())
        self.means = _shrunk_means(s, r, train.n_students, self.mu, self.reg)
        return self

    def _predict(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        return self.means[s]


class CourseMean(_Baseline):
    """ŷ_ui = mean training grade of course i (μ + Σ(r − μ)/(n_i + reg)); μ for unseen courses."""

    def __init__(self, reg: float = 0.0) -> None:
        self.reg = reg

    def fit(self, train: Interactions) -> Self:
        self._shape(train)
        _, c, r = _graded(train)
        self.mu = float(r.mean())
        self.means = _shrunk_means(c, r, train.n_courses, self.mu, self.reg)
        return self

    def _predict(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        return self.means[c]


class BiasModel(_Baseline):
    """ŷ_ui = μ + b_u + b_i, fitted by alternating closed-form ridge steps (Koren 2010, §2.1):

    b_i = Σ_u (r_ui − μ − b_u) / (λ_i + n_i),  b_u = Σ_i (r_ui − μ − b_i) / (λ_u + n_u).
    The regularisers count pseudo-ratings, so they do not depend on the grade scale.
    """

    def __init__(self, reg_student: float = 15.0, reg_course: float = 10.0, iterations: int = 10) -> None:
        self.reg_student, self.reg_course, self.iterations = reg_student, reg_course, iterations

    def fit(self, train: Interactions) -> Self:
        self._shape(train)
        s, c, r = _graded(train)
        self.mu = float(r.mean())
        n_s = np.bincount(s, minlength=self.n_students) + self.reg_student
        n_c = np.bincount(c, minlength=self.n_courses) + self.reg_course
        bu, bi = np.zeros(self.n_students), np.zeros(self.n_courses)
        for _ in range(self.iterations):
            bi = np.bincount(c, r - self.mu - bu[s], self.n_courses) / n_c
            bu = np.bincount(s, r - self.mu - bi[c], self.n_students) / n_s
        self.bu, self.bi = bu, bi
        return self

    def _predict(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.clip(self.mu + self.bu[s] + self.bi[c], 0.0, 1.0)

    def score_all(self, students: np.ndarray) -> np.ndarray:
        s = np.asarray(students, dtype=np.int64)
        return np.clip(self.mu + self.bu[s, None] + self.bi[None, :], 0.0, 1.0).astype(np.float32)


class MatrixFactorization(_Baseline):
    """Biased MF, ŷ_ui = μ + b_u + b_i + p_uᵀq_i (explicit) or σ(b_i + p_uᵀq_i) (implicit), by mini-batch SGD.

    Explicit: minimise ½Σ(r − ŷ)² + ½λ(b_u² + b_i² + ‖p_u‖² + ‖q_i‖²) per observed row, as Funk-SVD does (the
    sum over a small batch makes each row's step the same as in per-row SGD). Implicit: log loss with
    `n_negatives` sampled negatives per positive, resampled every epoch, same per-row L2.
    """

    def __init__(
        self,
        factors: int = 100,
        epochs: int = 30,
        lr: float = 0.03,
        reg: float = 0.02,
        init_std: float = 0.05,
        batch_size: int = 64,
        mode: Literal["explicit", "implicit"] = "explicit",
        n_negatives: int = 4,
        seed: int = 0,
    ) -> None:
        self.factors, self.epochs, self.lr, self.reg = factors, epochs, lr, reg
        self.init_std, self.batch_size, self.mode, self.n_negatives, self.seed = (
            init_std,
            batch_size,
            mode,
            n_negatives,
            seed,
        )
        self.predicts_grades = mode == "explicit"

    def fit(self, train: Interactions) -> Self:
        from electives.data.sampling import sample_negatives

        self._shape(train)
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        if self.mode == "explicit":
            s, c, r = _graded(train)
            self.mu = float(r.mean())
        else:
            lookup = train.item_lookup()
            s = np.repeat(np.arange(self.n_students, dtype=np.int64), lookup.counts())
            c, r, self.mu = lookup.indices, np.ones(len(s)), 0.0
        P = torch.randn(self.n_students, self.factors, generator=gen) * self.init_std
        Q = torch.randn(self.n_courses, self.factors, generator=gen) * self.init_std
        bu, bi = torch.zeros(self.n_students), torch.zeros(self.n_courses)
        lr, reg = self.lr, self.reg
        for _ in range(self.epochs):
            es, ec, er = s, c, r
            if self.mode == "implicit":
                neg = sample_negatives(s, lookup, self.n_negatives, rng).ravel()
                es = np.concatenate([s, np.repeat(s, self.n_negatives)])
                ec = np.concatenate([c, neg])
                er = np.concatenate([r, np.zeros(len(neg))])
            perm = rng.permutation(len(es))
            st, ct = torch.from_numpy(es[perm]), torch.from_numpy(ec[perm])
            rt = torch.from_numpy(er[perm]).float()
            for i in range(0, len(st), self.batch_size):
                sb, cb, rb = st[i : i + self.batch_size], ct[i : i + self.batch_size], rt[i : i + self.batch_size]
                p, q, b_u, b_i = P[sb], Q[cb], bu[sb], bi[cb]
                x = self.mu + b_u + b_i + (p * q).sum(1)
                # d(loss)/dx for ½(r − x)² or log loss; gradients written out, as autograd's dense
                # updates of the whole tables cost more than the step itself.
                g = (x - rb) if self.mode == "explicit" else (torch.sigmoid(x) - rb)
                bu.index_add_(0, sb, -lr * (g + reg * b_u))
                bi.index_add_(0, cb, -lr * (g + reg * b_i))
                P.index_add_(0, sb, -lr * (g[:, None] * q + reg * p))
                Q.index_add_(0, cb, -lr * (g[:, None] * p + reg * q))
        self.P, self.Q, self.bu, self.bi = P.numpy(), Q.numpy(), bu.numpy(), bi.numpy()
        return self

    def _predict(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        x = self.mu + self.bu[s] + self.bi[c] + np.einsum("ij,ij->i", self.P[s], self.Q[c])
        return self._out(x)

    def score_all(self, students: np.ndarray) -> np.ndarray:
        s = np.asarray(students, dtype=np.int64)
        return self._out(self.mu + self.bu[s, None] + self.bi[None, :] + self.P[s] @ self.Q.T)

    def _out(self, x: np.ndarray) -> np.ndarray:
        if self.mode == "explicit":
            return np.clip(x, 0.0, 1.0).astype(np.float32)
        return x.astype(np.float32)  # logits rank the same as probabilities


class ItemKNN(_Baseline):
    """Item-based k-nearest neighbours with cosine similarity (Sarwar et al. 2001), k neighbours per item.

    Implicit: s_ij = cos(x_i, x_j) on binary columns, score_ui = Σ_{j ∈ N_k(i)} s_ij x_uj.
    Explicit: cosine on item-centred grades d_uj = r_uj − μ_j, ŷ_ui = μ_i + Σ s_ij d_uj / Σ |s_ij| over the
    neighbours j ∈ N_k(i) that u has graded (μ_i alone when there are none).
    Similarities are shrunk by n_ij / (n_ij + shrink), n_ij the number of students who have both (Koren 2008),
    so that a pair seen together once does not count as a perfect neighbour.
    """

    def __init__(self, k: int = 200, shrink: float = 100.0, mode: Literal["explicit", "implicit"] = "explicit") -> None:
        self.k, self.shrink, self.mode = k, shrink, mode
        self.predicts_grades = mode == "explicit"

    def fit(self, train: Interactions) -> Self:
        self._shape(train)
        if self.mode == "explicit":
            s, c, r = _graded(train)
            self.item_mean = CourseMean().fit(train).means
            vals = r - self.item_mean[c]
        else:
            lookup = train.item_lookup()
            s = np.repeat(np.arange(self.n_students, dtype=np.int64), lookup.counts())
            c, vals = lookup.indices, np.ones(len(lookup.indices))
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
        s = np.asarray(students, dtype=np.int64)
        num = self.X[s] @ self.sim.T
        if self.mode == "implicit":
            return num
        den = self.M[s] @ np.abs(self.sim).T
        with np.errstate(invalid="ignore", divide="ignore"):
            dev = np.where(den > 0, num / den, 0.0)
        return np.clip(self.item_mean[None, :] + dev, 0.0, 1.0).astype(np.float32)

    def _predict(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        num = np.einsum("ij,ij->i", self.X[s], self.sim[c])
        if self.mode == "implicit":
            return num.astype(np.float32)
        den = np.einsum("ij,ij->i", self.M[s], np.abs(self.sim[c]))
        with np.errstate(invalid="ignore", divide="ignore"):
            dev = np.where(den > 0, num / den, 0.0)
        return np.clip(self.item_mean[c] + dev, 0.0, 1.0).astype(np.float32)


class Popularity(_Baseline):
    """score_ui = n_i / max_j n_j, the share of the most-taken course's enrolments. Ranking only."""

    predicts_grades = False

    def fit(self, train: Interactions) -> Self:
        self._shape(train)
        n = np.bincount(sorted_unique(train.keys()) % self.n_courses, minlength=self.n_courses).astype(np.float64)
        self.pop = (n / max(1.0, n.max())).astype(np.float32)
        return self

    def _predict(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        return self.pop[c]

    def score_all(self, students: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.pop, (len(np.asarray(students)), self.n_courses)).copy()


class EASE(_Baseline):
    """EASE (Steck 2019): B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹; score_u = x_u B. Ranking only."""

    predicts_grades = False

    def __init__(self, lam: float = 500.0) -> None:
        self.lam = lam

    def fit(self, train: Interactions) -> Self:
        self._shape(train)
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

    def _predict(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", self.X[s], self.B.T[c])

    def score_all(self, students: np.ndarray) -> np.ndarray:
        return self.X[np.asarray(students, dtype=np.int64)] @ self.B
