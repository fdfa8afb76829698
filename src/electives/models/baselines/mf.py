"""Biased matrix factorisation trained by SGD, with a fold-in that solves the same objective for one new student."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

import numpy as np
import torch

from electives.data.interactions import Interactions
from electives.models.baselines.base import Baseline, graded, saved
from electives.models.compute import solve_spd
from electives.models.interface import DEFAULT_OPTIONS, FoldIn, FoldInOptions, register

__all__ = ["MatrixFactorization"]

SETTINGS = ("factors", "epochs", "lr", "reg", "init_std", "batch_size", "n_negatives", "seed")


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings for large |x|


@register("mf")
class MatrixFactorization(Baseline):
    """Biased MF, ŷ_ui = μ + b_u + b_i + p_uᵀq_i (explicit) or σ(b_i + b_u + p_uᵀq_i) (implicit), by mini-batch SGD.

    Explicit: minimise ½Σ(r − ŷ)² + ½λ(b_u² + b_i² + ‖p_u‖² + ‖q_i‖²) per observed row, as Funk-SVD does (the
    sum over a small batch makes each row's step the same as in per-row SGD). Implicit: log loss with
    `n_negatives` sampled negatives per positive, resampled every epoch, same per-row L2.

    A student's vector is ``[b_u, p_u…]``. Fold-in keeps μ, b_i and Q fixed and minimises the student's part of the
    training objective: the penalty is per row in training, so a student with n rows carries n·λ (times
    ``prior_strength``). Explicit: that is a ridge regression, solved in closed form. Implicit: log loss against
    the taken courses and every untaken one weighted by the negatives training would have sampled there
    (``n_negatives``·n_taken spread over the untaken courses), solved by damped Newton steps.
    """

    mu: float = 0.0

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

    def fit(self, train: Interactions) -> Self:
        from electives.data.sampling import sample_negatives

        self.set_shape(train)
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        if self.mode == "explicit":
            s, c, r = graded(train)
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

    def pair_scores(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        x = self.mu + self.bu[s] + self.bi[c] + np.einsum("ij,ij->i", self.P[s], self.Q[c])
        return self._out(x)

    def score_all(self, students: np.ndarray) -> np.ndarray:
        s = self.check_students(students)
        return self._out(self.mu + self.bu[s, None] + self.bi[None, :] + self.P[s] @ self.Q.T)

    def _out(self, x: np.ndarray) -> np.ndarray:
        if self.mode == "explicit":
            return np.clip(x, 0.0, 1.0).astype(np.float32)
        return x.astype(np.float32)  # logits rank the same as probabilities

    # -- students as vectors ---------------------------------------------------------------------------------
    def student_vectors(self) -> np.ndarray:
        return np.concatenate([self.bu[:, None], self.P], axis=1).astype(np.float32)

    def scores(self, vector: np.ndarray) -> np.ndarray:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        # float32 like score_all, so a trained student's vector scores as score_all does.
        return self._out(self.mu + v[0] + self.bi + self.Q @ v[1:]).astype(np.float64)

    def course_vectors(self) -> np.ndarray | None:
        return self.Q

    def fold_in(self, entries: Mapping[int, float], options: FoldInOptions = DEFAULT_OPTIONS) -> FoldIn:
        c, g = self.check_entries(entries)
        if not len(c):
            return FoldIn(np.zeros(self.factors + 1, dtype=np.float32), iterations=0, objective=0.0, grades_used=0)
        if self.mode == "explicit":
            return self._ridge(c, g, options)
        return self._newton(c, options)

    def _design(self, courses: np.ndarray) -> np.ndarray:
        """Rows [1, q_i]: the features that multiply [b_u, p_u]."""
        return np.concatenate([np.ones((len(courses), 1)), self.Q[courses].astype(np.float64)], axis=1)

    def _ridge(self, c: np.ndarray, g: np.ndarray, options: FoldInOptions) -> FoldIn:
        A, y = self._design(c), g - self.mu - self.bi[c].astype(np.float64)
        lam = self.reg * options.prior_strength * len(c)
        # solve_spd: a 101-unknown system through OpenBLAS threads stalls a busy server (p90 90 ms measured).
        x = solve_spd(A.T @ A + lam * np.eye(A.shape[1]), A.T @ y)
        objective = 0.5 * float(((y - A @ x) ** 2).sum() + lam * (x**2).sum())
        return FoldIn(x.astype(np.float32), iterations=0, objective=objective, grades_used=len(c))

    def _newton(self, c: np.ndarray, options: FoldInOptions) -> FoldIn:
        taken = np.zeros(self.n_courses, dtype=bool)
        taken[c] = True
        untaken = np.flatnonzero(~taken)
        A = self._design(np.concatenate([c, untaken]))
        offset = self.bi[np.concatenate([c, untaken])].astype(np.float64)
        target = np.concatenate([np.ones(len(c)), np.zeros(len(untaken))])
        # Training samples n_negatives untaken courses per taken one, each epoch: their expected weight.
        w_neg = options.n_negatives * len(c) / max(1, len(untaken))
        weight = np.concatenate([np.ones(len(c)), np.full(len(untaken), w_neg)])
        lam = self.reg * options.prior_strength * len(c) * (1 + options.n_negatives)

        def loss(x: np.ndarray) -> float:
            z = offset + A @ x
            return float((weight * np.where(target > 0, _softplus(-z), _softplus(z))).sum() + 0.5 * lam * x @ x)

        x, steps = np.zeros(A.shape[1]), 0
        value = loss(x)
        while steps < options.max_steps:
            steps += 1
            p = _sigmoid(offset + A @ x)
            grad = A.T @ (weight * (p - target)) + lam * x
            hess = (A * (weight * p * (1 - p))[:, None]).T @ A + lam * np.eye(len(x))
            step = solve_spd(hess, grad)
            t = 1.0
            while loss(x - t * step) > value and t > 1e-4:  # halve until the loss does not rise
                t *= 0.5
            x = x - t * step
            value = loss(x)
            if np.abs(t * step).max() < 1e-6:
                break
        return FoldIn(x.astype(np.float32), iterations=steps, objective=value, grades_used=len(c))

    # -- persistence -----------------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {"P": self.P, "Q": self.Q, "student_bias": self.bu, "course_bias": self.bi}
        return arrays, {**self.base_params(), "mu": self.mu, **{k: getattr(self, k) for k in SETTINGS}}

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Self:
        shapes = {
            "P": ("n_students", "factors"),
            "Q": ("n_courses", "factors"),
            "student_bias": ("n_students",),
            "course_bias": ("n_courses",),
        }
        a, p = saved(cls, arrays, params, shapes, (*SETTINGS, "mu"))
        model = cls(**{k: p[k] for k in SETTINGS}, mode=p["mode"])
        model.restore_shape(p)
        model.mu = float(p["mu"])
        model.P, model.Q, model.bu, model.bi = a["P"], a["Q"], a["student_bias"], a["course_bias"]
        return model
