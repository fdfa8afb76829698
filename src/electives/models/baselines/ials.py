"""iALS: matrix factorisation of enrolments by alternating least squares, trained as Rendle et al. (2022,
"Revisiting the performance of iALS on item recommendation benchmarks") train it.

Objective, with W the students' and H the courses' factors (d each), S the (student, course) pairs taken:

    Σ_(u,i)∈S (w_u·h_i − 1)²  +  α₀ Σ_u Σ_i (w_u·h_i)²  +  λ Σ_u (n_u + α₀·|I|)^ν ‖w_u‖²  +  λ Σ_i (n_i + α₀·|U|)^ν ‖h_i‖²

Every untaken pair pulls its score towards 0 with the small weight α₀ (the "Gramian trick": Σ_i (w·h_i)² = wᵀ(HᵀH)w,
so it costs one d×d matrix, not a sum over the catalogue); the penalty of each row grows with how many terms of
the loss it appears in (frequency-scaled L2, ν = 1 in the reference code). With one side fixed, each row of the
other is a d×d ridge solve: ``(H_uᵀH_u + α₀·HᵀH + λ_u·I) w_u = H_uᵀ1``. Rows are solved in batches (sorted by
their counts, so that padding is small) with torch's batched Cholesky.

A student's vector is w_u; scores are w_u·h_i (they rank; they are not probabilities). Training ends with a
student step, so every trained vector is exactly the solve that folds in that student's courses: fold-in of a
new student is that one solve against the fixed course factors.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import torch

from electives.data.interactions import Interactions
from electives.errors import DataError, ModelError
from electives.models.baselines.base import Baseline, saved
from electives.models.compute import solve_spd
from electives.models.interface import DEFAULT_OPTIONS, FoldIn, FoldInOptions, Mode, register

__all__ = ["IALS"]

SETTINGS = ("factors", "reg", "unobserved_weight", "epochs", "cg_steps", "reg_exponent", "init_std", "seed")
_CELLS = 1 << 23  # padded factor rows × d gathered per batch (32 MiB of float32)
_ROWS = 512  # rows per batch at most: their d×d systems are 512·d²·4 bytes (75 MiB at d = 192)


def _transpose(indptr: np.ndarray, indices: np.ndarray, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """The CSR of the transposed 0/1 matrix: for each column, its rows in ascending order."""
    rows = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
    order = np.argsort(indices, kind="stable")
    t_ptr = np.zeros(n_cols + 1, dtype=np.int64)
    np.cumsum(np.bincount(indices, minlength=n_cols), out=t_ptr[1:])
    return t_ptr, rows[order]


def csr(indptr: np.ndarray, indices: np.ndarray, n_cols: int) -> torch.Tensor:
    """The 0/1 matrix with row r's ones at ``indices[indptr[r]:indptr[r+1]]``, as a torch CSR tensor."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta": the two ops used are stable
        return torch.sparse_csr_tensor(
            torch.from_numpy(indptr),
            torch.from_numpy(indices),
            torch.ones(len(indices)),
            size=(len(indptr) - 1, n_cols),
            check_invariants=True,
        )


def penalties(counts: np.ndarray, n_other: int, *, reg: float, alpha: float, exponent: float) -> torch.Tensor:
    """λ·(n_r + α₀·n_other)^ν per row: the frequency-scaled L2 (each row's weight in the loss)."""
    return torch.from_numpy(reg * (counts + alpha * n_other) ** exponent).float()


def cg_side(
    x: torch.Tensor, start: torch.Tensor, other: torch.Tensor, penalty: torch.Tensor, alpha: float, steps: int
) -> torch.Tensor:
    """One half-step of iALS by ``steps`` conjugate-gradient iterations per row, warm-started at ``start``: every
    row's system ``(O_rᵀO_r + α₀·OᵀO + λ_r·I) v = O_rᵀ1`` at once, where O_r are the rows of ``other`` that row r
    of the 0/1 matrix ``x`` (CSR) has. O_rᵀ(O_r v) is a sampled product (only at x's ones) then a sparse one, so a
    step costs O(nnz·d + rows·d²) instead of the exact solve's O(nnz·d²)."""
    gram = alpha * (other.T @ other)

    def times(v: torch.Tensor) -> torch.Tensor:
        return torch.sparse.sampled_addmm(x, v, other.T, beta=0.0) @ other + v @ gram + penalty[:, None] * v

    v = start.clone()
    r = x @ other - times(v)
    p = r.clone()
    rs = (r * r).sum(1)
    for _ in range(steps):
        ap = times(p)
        step = rs / (p * ap).sum(1).clamp_min(1e-30)
        v += step[:, None] * p
        r -= step[:, None] * ap
        rs_next = (r * r).sum(1)
        p = r + (rs_next / rs.clamp_min(1e-30))[:, None] * p
        rs = rs_next
    return v


def exact_side(
    indptr: np.ndarray, indices: np.ndarray, other: torch.Tensor, penalty: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Every row's system solved exactly (Cholesky, in batches of rows sorted by count, so that padding is small)."""
    n_rows, (n_other, d) = len(indptr) - 1, other.shape
    counts = np.diff(indptr)
    gram = alpha * (other.T @ other)
    padded = torch.cat([other, other.new_zeros(1, d)])  # index n_other: a zero row for padding
    out = other.new_zeros(n_rows, d)
    order = np.argsort(counts, kind="stable")
    start = 0
    while start < n_rows:
        stop = start + 1
        while stop < n_rows and stop - start < _ROWS and (stop - start + 1) * counts[order[stop]] * d <= _CELLS:
            stop += 1
        rows = order[start:stop]
        width = int(counts[rows].max())
        pos = np.minimum(indptr[rows][:, None] + np.arange(width)[None, :], max(0, len(indices) - 1))
        taken = np.arange(width)[None, :] < counts[rows][:, None]
        idx = np.where(taken, indices[pos] if len(indices) else 0, n_other)
        f = padded[torch.from_numpy(idx)]  # (rows, width, d)
        a = f.transpose(1, 2) @ f + gram
        a.diagonal(dim1=1, dim2=2).add_(penalty[torch.from_numpy(rows)][:, None])
        chol, info = torch.linalg.cholesky_ex(a)
        if int(info.max()) > 0:
            raise DataError("iALS: a system is not positive definite; raise the regularisation")
        out[torch.from_numpy(rows)] = torch.cholesky_solve(f.sum(1)[:, :, None], chol)[:, :, 0]
        start = stop
    return out


@register("ials")
class IALS(Baseline):
    """iALS with frequency-scaled L2; see the module docstring. ``factors``: d; ``reg``: λ; ``unobserved_weight``:
    α₀; ``reg_exponent``: ν; ``init_std``: σ of the initial factors times √d (as in the reference code)."""

    mode: Mode = "implicit"

    def __init__(
        self,
        factors: int = 64,
        reg: float = 0.007,
        unobserved_weight: float = 0.3,
        epochs: int = 12,
        cg_steps: int = 3,
        reg_exponent: float = 1.0,
        init_std: float = 0.1,
        seed: int = 0,
    ) -> None:
        if factors < 1 or epochs < 1 or cg_steps < 1 or not (reg > 0 and unobserved_weight > 0 and init_std >= 0):
            raise DataError(
                "iALS needs factors, epochs and cg_steps ≥ 1, reg > 0, unobserved_weight > 0 and init_std ≥ 0"
            )
        self.factors, self.reg, self.unobserved_weight, self.epochs = factors, reg, unobserved_weight, epochs
        self.cg_steps, self.reg_exponent, self.init_std, self.seed = cg_steps, reg_exponent, init_std, seed
        self._gram: np.ndarray | None = None

    def fit(self, train: Interactions) -> Self:
        self.set_shape(train)
        lookup = train.item_lookup()
        t_ptr, t_idx = _transpose(lookup.indptr, lookup.indices, self.n_courses)
        x, xt = csr(lookup.indptr, lookup.indices, self.n_courses), csr(t_ptr, t_idx, self.n_students)
        how = {"reg": self.reg, "alpha": self.unobserved_weight, "exponent": self.reg_exponent}
        pen_w = penalties(lookup.counts(), self.n_courses, **how)
        pen_h = penalties(np.diff(t_ptr), self.n_students, **how)
        gen = torch.Generator().manual_seed(self.seed)
        scale = self.init_std / np.sqrt(self.factors)
        w = torch.randn(self.n_students, self.factors, generator=gen) * scale
        h = torch.randn(self.n_courses, self.factors, generator=gen) * scale
        a = self.unobserved_weight
        for _ in range(self.epochs):
            w = cg_side(x, w, h, pen_w, a, self.cg_steps)
            h = cg_side(xt, h, w, pen_h, a, self.cg_steps)
        # Last, an exact student step: each trained vector is then its student's fold-in.
        w = exact_side(lookup.indptr, lookup.indices, h, pen_w, a)
        self.W, self.H = w.numpy(), h.numpy()
        self._gram = None
        return self

    def pair_scores(self, s: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", self.W[s], self.H[c])

    def score_all(self, students: np.ndarray) -> np.ndarray:
        return self.W[self.check_students(students)] @ self.H.T

    def student_vectors(self) -> np.ndarray:
        return self.W

    def scores(self, vector: np.ndarray) -> np.ndarray:
        # float32 like score_all, so a trained student's vector scores as score_all does.
        return (self.H @ np.asarray(vector, dtype=np.float32).reshape(-1)).astype(np.float64)

    def course_vectors(self) -> np.ndarray | None:
        return self.H

    def fold_in(self, entries: Mapping[int, float], options: FoldInOptions = DEFAULT_OPTIONS) -> FoldIn:
        """The training step's solve for one student (``options.prior_strength`` scales λ)."""
        c, _ = self.check_entries(entries)
        c = np.unique(c)
        if self._gram is None:
            h64 = self.H.astype(np.float64)
            self._gram = self.unobserved_weight * (h64.T @ h64)
        f = self.H[c].astype(np.float64)
        penalty = (
            options.prior_strength * self.reg * (len(c) + self.unobserved_weight * self.n_courses) ** self.reg_exponent
        )
        a = f.T @ f + self._gram + penalty * np.eye(self.factors)
        x = solve_spd(a, f.sum(0))
        objective = float(((f @ x - 1.0) ** 2).sum() + x @ self._gram @ x + penalty * x @ x)
        return FoldIn(x.astype(np.float32), iterations=0, objective=objective, grades_used=len(c))

    # -- persistence -----------------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {"student_factors": self.W, "course_factors": self.H}
        return arrays, {**self.base_params(), **{k: getattr(self, k) for k in SETTINGS}}

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Self:
        shapes = {"student_factors": ("n_students", "factors"), "course_factors": ("n_courses", "factors")}
        a, p = saved(cls, arrays, params, shapes, SETTINGS)
        try:
            model = cls(**{k: p[k] for k in SETTINGS})
        except (DataError, TypeError) as exc:
            raise ModelError(f"ials model: {exc}") from None
        model.restore_shape(p)
        model.W, model.H = a["student_factors"], a["course_factors"]
        return model
