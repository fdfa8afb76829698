"""Fold-in maths against the torch network it stands for: hand-written logits and Jacobians match autograd, for
every model kind and for requests on either side of the size where products move to torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

from electives.models.compute import matmul, solve_spd
from electives.models.ncf import GMF, MLP, NeuMF
from electives.models.ncf_foldin import FoldInSolver, Prior
from electives.models.ncf_network import Network

N_STUDENTS, N_COURSES = 40, 300


def _module(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    module = {
        "neumf": lambda: NeuMF(N_STUDENTS, N_COURSES, gmf_dim=12, mlp_dim=8, layers=(48, 16, 8)),
        "gmf": lambda: GMF(N_STUDENTS, N_COURSES, dim=12),
        "mlp": lambda: MLP(N_STUDENTS, N_COURSES, dim=8, layers=(48, 16, 8)),
    }[kind]()
    with torch.no_grad():  # away from the initialisation's zero biases, so every term is exercised
        for param in module.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return module.eval()


def _torch_logits(module: torch.nn.Module, p: torch.Tensor, courses: torch.Tensor, dg: int) -> torch.Tensor:
    """The module's own forward for one student with embedding ``p`` (GMF part first) on ``courses``."""
    params = {}
    if hasattr(module, "gmf"):
        params["gmf.student.weight"] = p[None, :dg]
    if hasattr(module, "mlp"):
        params["mlp.student.weight"] = p[None, dg:]
    return functional_call(module, params, (torch.zeros_like(courses), courses))


@pytest.mark.parametrize("kind", ["neumf", "gmf", "mlp"])
def test_network_logits_match_the_module(kind: str) -> None:
    module = _module(kind)
    net = Network(module)
    p = np.random.default_rng(1).standard_normal(net.d).astype(np.float32)
    courses = torch.arange(N_COURSES)
    with torch.no_grad():
        expected = _torch_logits(module, torch.from_numpy(p), courses, net.dg).numpy()
    np.testing.assert_allclose(net.logits(p), expected, rtol=1e-5, atol=1e-5)


# 12 rows: every product in NumPy; all 300: the tower's products go to torch (compute.matmul).
@pytest.mark.parametrize("rows", [12, None])
@pytest.mark.parametrize("kind", ["neumf", "gmf", "mlp"])
def test_fold_in_logits_and_jacobian_match_autograd(kind: str, rows: int | None) -> None:
    module = _module(kind)
    net = Network(module)
    rng = np.random.default_rng(2)
    solver = FoldInSolver(net, Prior.of_students(net.students, shrinkage=0.1))
    z = rng.standard_normal(net.d).astype(np.float32)
    picked = None if rows is None else np.sort(rng.choice(N_COURSES, rows, replace=False))
    logits, jac = solver.logits_and_jacobian(z, solver.gather(picked))

    courses = torch.arange(N_COURSES) if picked is None else torch.from_numpy(picked)
    mu, chol = torch.from_numpy(solver.prior.mean), torch.from_numpy(solver.prior.chol)

    def forward(zt: torch.Tensor) -> torch.Tensor:
        return _torch_logits(module, mu + chol @ zt, courses, net.dg)

    zt = torch.from_numpy(z)
    with torch.no_grad():
        expected_logits = forward(zt).numpy()
    expected_jac = torch.autograd.functional.jacobian(forward, zt).numpy()
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jac, expected_jac, rtol=1e-4, atol=1e-5)
    # The starting point's cache is the same function at z = 0.
    start = (solver.logits0, solver.jac0) if picked is None else (solver.logits0[picked], solver.jac0[picked])
    at_zero = solver.logits_and_jacobian(np.zeros(net.d, dtype=np.float32), solver.gather(picked))
    np.testing.assert_allclose(start[0], at_zero[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(start[1], at_zero[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["grades", "enrolments"])
@pytest.mark.parametrize("kind", ["neumf", "gmf", "mlp"])
def test_fold_in_objective_is_the_map_objective_of_the_module(kind: str, mode: str) -> None:
    """The reported objective is −log posterior of the result, recomputed by torch on the module itself, and lower
    than the average student's (the starting point)."""
    module = _module(kind)
    net = Network(module)
    solver = FoldInSolver(net, Prior.of_students(net.students, shrinkage=0.1))
    rng = np.random.default_rng(3)
    picked = [int(c) for c in rng.choice(N_COURSES, 20, replace=False)]
    noise, n_negatives = 0.1, 4
    if mode == "grades":
        grades = dict(zip(picked, rng.uniform(0.3, 0.9, 20).tolist(), strict=True))
        fold = solver.from_grades(np.array(picked), np.array(list(grades.values())), noise=noise)
    else:
        fold = solver.from_enrolments(np.array(picked), n_negatives=n_negatives)
    assert fold.grades_used == 20 and fold.iterations >= 1

    mean = torch.from_numpy(solver.prior.mean)
    chol = torch.from_numpy(solver.prior.chol).double()

    def objective(p: torch.Tensor) -> float:
        """−log posterior (up to a constant) of embedding ``p``, from the module's forward."""
        z = torch.linalg.solve_triangular(chol, (p.double() - mean.double())[:, None], upper=False)
        with torch.no_grad():
            if mode == "grades":
                s = torch.sigmoid(_torch_logits(module, p, torch.tensor(picked), net.dg))
                data = 0.5 * float(((s - torch.tensor(list(grades.values()))) ** 2).sum()) / noise**2
            else:
                logits = _torch_logits(module, p, torch.arange(N_COURSES), net.dg)
                y = torch.zeros(N_COURSES)
                y[picked] = 1.0
                weight = torch.where(y > 0, 1.0, n_negatives * 20 / (N_COURSES - 20))
                bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
                data = float((weight * bce).sum())
        return data + 0.5 * float((z**2).sum())

    assert objective(torch.from_numpy(fold.embedding)) == pytest.approx(fold.objective, rel=1e-4)
    assert fold.objective < objective(mean)


@pytest.mark.parametrize("shape", [(20, 16, 8), (300, 48, 96)])
def test_products_and_systems_agree_on_either_engine(shape: tuple[int, int, int]) -> None:
    m, k, n = shape
    rng = np.random.default_rng(4)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    np.testing.assert_allclose(matmul(a, b), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    g = a.T @ a + np.eye(k, dtype=np.float32) * m
    rhs = rng.standard_normal(k).astype(np.float32)
    np.testing.assert_allclose(solve_spd(g, rhs), np.linalg.solve(g.astype(np.float64), rhs), rtol=1e-4, atol=1e-6)
    big = np.kron(np.eye(8, dtype=np.float32), g)[:100, :100] + np.eye(100, dtype=np.float32)  # ≥ 96 unknowns
    rhs = rng.standard_normal(100).astype(np.float32)
    np.testing.assert_allclose(solve_spd(big, rhs), np.linalg.solve(big.astype(np.float64), rhs), rtol=1e-3, atol=1e-5)
