"""Fold-in: the embedding of a student the model was not trained on, fitted to their grades or enrolments.

The student's GMF and MLP embeddings ``p`` are fitted with everything else frozen, as a MAP estimate: the data term
plus a Gaussian prior whose mean and (shrunk) covariance are those of the trained students' embeddings
(:class:`Prior`). Writing ``p = μ + L z`` (``Σ = L Lᵀ``) the prior term is ``½λ‖z‖²``; a few Gauss–Newton steps
from ``z = 0`` (the average student) in a trust region converge, each solving an ``n × n`` system for ``n`` courses
(or the ``d × d`` one when ``n > d``). The trust region matters for NeuMF: its tower is piecewise linear, and an
unbounded first step (the Gauss–Newton model is only good up to the ReLUs' kinks) could land where units are off for
every course and the objective is flat, far above the optimum (benchmarks/RESULTS.md, issue 14).

- Grades (:meth:`FoldInSolver.from_grades`): squared error of the predicted normalised grades over the noise
  variance ``σ²`` (serving passes the model's validation RMSE).
- Enrolments (:meth:`FoldInSolver.from_enrolments`, enrolment-only models, which predict no grade): log loss of
  "taken" (1) against every other course (0, weighted like the training negatives).

Both run the same steps (:meth:`FoldInSolver.fit`), in NumPy float32 on :class:`~electives.models.ncf_network.Network`'s
arrays, for any number of courses (:mod:`~electives.models.compute` keeps large products on one thread). In
whitened coordinates the course side is computed once per solver (the GMF logit ``base + (A L_g) z``, the MLP's
first layer ``first_base + (W₁ˢ L_m) z``, and every course's logit and Jacobian at ``z = 0``), so a step is a few
small products: no autograd, no optimiser state, deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from electives.models.compute import matmul, solve_spd
from electives.models.interface import FoldIn
from electives.models.ncf_network import Network, sigmoid

__all__ = ["FoldInSolver", "Prior"]

_TOLERANCE = 1e-2  # fold-in stops once a full step is expected to lower the objective by less than this share
# The first step's trust radius in whitened coordinates, in prior standard deviations (see `_trust`; measured on the
# checkerboard, 1 to 2 avoid the bad optima an unbounded first step lands in; 2 costs grade fold-ins 0.1 step more).
_FIRST_RADIUS = 2.0
Loss = Literal["squared", "log"]


@dataclass(frozen=True)
class Prior:
    """Gaussian prior over student embeddings: ``mean`` (d,) and the Cholesky factor ``chol`` (d, d) of the
    covariance, float32."""

    mean: np.ndarray
    chol: np.ndarray

    @classmethod
    def of_students(cls, students: np.ndarray, *, shrinkage: float) -> Prior:
        """Mean and covariance of the trained ``students`` (n, d), the covariance shrunk by ``shrinkage`` ∈ [0, 1]
        towards the average variance: a few hundred students do not pin down every direction."""
        s = students.astype(np.float64)
        d = s.shape[1]
        cov = np.cov(s.T).reshape(d, d) if len(s) > 1 else np.eye(d) * 1e-4
        avg = float(np.diagonal(cov).mean()) or 1e-4
        cov = (1 - shrinkage) * cov + (shrinkage + 1e-8) * avg * np.eye(d)
        return cls(s.mean(0).astype(np.float32), np.linalg.cholesky(cov).astype(np.float32))


# The per-course arrays of the courses being fitted: GMF base logits, GMF Jacobian in z, MLP course halves.
_Gathered = tuple[np.ndarray, np.ndarray, np.ndarray]


class FoldInSolver:
    """Folds students into one network under one prior; see the module docstring. ``prior_strength`` is ``λ``
    (1 = the Bayesian weight), ``max_steps`` bounds the Gauss–Newton steps."""

    def __init__(self, network: Network, prior: Prior, *, prior_strength: float = 1.0, max_steps: int = 8) -> None:
        net = self.network = network
        self.prior = prior
        self.prior_strength = float(prior_strength)
        self.max_steps = int(max_steps)
        mu, chol, dg = prior.mean, prior.chol, net.dg
        self.base = np.full(net.n_courses, net.bias, dtype=np.float32) + net.gmf_courses @ mu[:dg]
        self.z_gmf = np.ascontiguousarray(net.gmf_courses @ chol[:dg])  # (n_courses, d)
        self.first_base = net.first_bias + net.first_student @ mu[dg:]
        self.z_first = np.ascontiguousarray(net.first_student @ chol[dg:])  # (h₁, d)
        # Every fold-in starts at the average student (z = 0): its logits and Jacobian for all courses, once.
        self.logits0, self.jac0 = self.logits_and_jacobian(np.zeros(net.d, dtype=np.float32), self.gather(None))

    def gather(self, rows: np.ndarray | None) -> _Gathered:
        """The per-course arrays of the courses ``rows`` (all when None), gathered once per fold-in."""
        if rows is None:
            return self.base, self.z_gmf, self.network.course_half
        return self.base[rows], self.z_gmf[rows], self.network.course_half[rows]

    def logits_and_jacobian(self, z: np.ndarray, gathered: _Gathered) -> tuple[np.ndarray, np.ndarray]:
        """Logits of the gathered courses at whitened ``z`` and their Jacobian (n, d) in ``z``."""
        base, jac, course_half = gathered
        net = self.network
        logits = base + jac @ z if net.dg else base
        if net.dm:
            pre = net.tower(course_half + (self.first_base + self.z_first @ z))
            logits = logits + net.tower_logits(pre)
            tower_jac = matmul(net.tower_gradient(pre), self.z_first)
            jac = jac + tower_jac if net.dg else tower_jac
        return logits, jac

    def embedding(self, z: np.ndarray) -> np.ndarray:
        """``p = μ + L z``."""
        return (self.prior.mean + self.prior.chol @ z).astype(np.float32)

    def from_grades(self, rows: np.ndarray, grades: np.ndarray, *, noise: float) -> FoldIn:
        """Fold in the normalised ``grades`` of the courses ``rows`` (indices) with Gaussian noise ``noise``."""
        if not len(rows):
            return FoldIn(self.prior.mean.copy(), 0, 0.0, 0)
        y = np.asarray(grades, dtype=np.float32)
        weight = np.full(len(rows), 1.0 / noise**2, dtype=np.float32)
        return self.fit(rows, y, weight, loss="squared", used=len(rows))

    def from_enrolments(self, taken: np.ndarray, *, n_negatives: int) -> FoldIn:
        """Fold in the courses ``taken`` (distinct course indices) against every other course, each of those weighted so
        that they add up to ``n_negatives`` per taken course, as the sampled negatives of training do."""
        n = self.network.n_courses
        y = np.zeros(n, dtype=np.float32)
        y[taken] = 1.0
        used = len(taken)
        if used == 0 or used == n:
            return FoldIn(self.prior.mean.copy(), 0, 0.0, used)
        weight = np.where(y > 0, 1.0, min(1.0, n_negatives * used / (n - used))).astype(np.float32)
        return self.fit(None, y, weight, loss="log", used=used)

    def fit(self, rows: np.ndarray | None, y: np.ndarray, weight: np.ndarray, *, loss: Loss, used: int) -> FoldIn:
        """MAP fit of the targets ``y`` of courses ``rows`` (all when None), per-course ``weight``; ``loss``:
        ``"squared"`` (½·w·(s − y)², Gaussian grades) or ``"log"`` (w · log loss); ``used``: the grades or taken
        courses behind the targets, for the result."""
        lam = self.prior_strength
        gathered = self.gather(rows)
        z = np.zeros(self.network.d, dtype=np.float32)
        logits, jac = (self.logits0, self.jac0) if rows is None else (self.logits0[rows], self.jac0[rows])
        current, s = _objective(z, logits, y, weight, lam, loss)
        radius, steps = _FIRST_RADIUS, 0
        for _ in range(self.max_steps):
            steps += 1
            if loss == "squared":
                slope = s * (1 - s)
                g_coef = weight * (s - y) * slope  # ∂/∂logit of ½·w·(s − y)²
                h_sqrt = np.sqrt(weight) * slope  # √ of its Gauss–Newton curvature
            else:
                g_coef = weight * (s - y)
                h_sqrt = np.sqrt(weight * s * (1 - s))
            grad = lam * z + jac.T @ g_coef
            b = jac * h_sqrt[:, None]
            step = _solve_ridge(b, grad, lam)  # the Gauss–Newton step (its matrix BᵀB + λI)
            length = float(np.linalg.norm(step))
            clipped = length > radius
            if clipped:
                step *= radius / length
            bs = b @ step
            # What the Gauss–Newton model expects the step to gain: gᵀδ − ½δᵀ(BᵀB + λI)δ (> 0).
            expected = float(grad @ step) - 0.5 * (float(bs @ bs) + lam * float(step @ step))
            z_new = (z - step).astype(np.float32, copy=False)
            logits_new, jac_new = self.logits_and_jacobian(z_new, gathered)
            value, s_new = _objective(z_new, logits_new, y, weight, lam, loss)
            radius, converged = _trust(current - value, expected, min(length, radius), radius, clipped, value)
            if value <= current:
                z, jac, s, current = z_new, jac_new, s_new, value
            if converged:
                break
        return FoldIn(self.embedding(z), steps, current, used)


def _objective(
    z: np.ndarray, logits: np.ndarray, y: np.ndarray, weight: np.ndarray, lam: float, loss: Loss
) -> tuple[float, np.ndarray]:
    """−log posterior (up to a constant) and the predicted ``s = σ(logits)``."""
    s = sigmoid(logits)
    if loss == "squared":
        r = s - y
        data = 0.5 * float(weight @ (r * r))
    else:
        data = float(weight @ (np.logaddexp(0, logits) - y * logits))  # log loss from the logits, stably
    return data + 0.5 * lam * float(z @ z), s


def _solve_ridge(b: np.ndarray, grad: np.ndarray, c: float) -> np.ndarray:
    """(BᵀB + cI)⁻¹ grad, through the n × n system when B has fewer rows than columns (push-through identity)."""
    n, d = b.shape
    if n < d:
        gram = matmul(b, b.T)
        gram[np.diag_indices(n)] += c
        return (grad - b.T @ solve_spd(gram, b @ grad)) / c
    gram = matmul(b.T, b)
    gram[np.diag_indices(d)] += c
    return solve_spd(gram, grad)


def _trust(
    gain: float, expected: float, length: float, radius: float, clipped: bool, value: float
) -> tuple[float, bool]:
    """Trust-region bookkeeping after a step of ``length`` that gained ``gain`` where the model expected
    ``expected``: (next radius, converged).

    Where the model held (gain ≥ ¾ of the expected) a clipped step doubles the radius; where it did not (< ¼, a
    rejected step among them) the radius falls to a quarter of the step. Converged: the full Gauss–Newton step was
    expected to gain less than `_TOLERANCE` of the objective (the point is nearly stationary). A small actual gain is
    no such sign: the old rule, which stopped on one, stopped after a step shortened by damping (short, so it gains
    little) or after one that overshot across the ReLUs' kinks and gained little by chance, both far from the
    optimum."""
    ratio = gain / expected if expected > 0 else 0.0
    if ratio < 0.25:
        radius = length / 4
    elif ratio > 0.75 and clipped:
        radius *= 2
    small = _TOLERANCE * max(value, 1e-12)
    return radius, not clipped and expected <= small
