"""Where a request's arithmetic runs: one thread, whatever the size of the products.

Serving works on NumPy arrays (a request is a handful of small products, where NumPy's per-operation cost is a
fraction of torch's). NumPy's OpenBLAS, though, spreads a product over every core once it is large enough, which
on shared cores is far slower than one thread (measured: 5 ms instead of 40 µs) and cannot be told otherwise from
here. So :func:`matmul` and :func:`solve_spd` hand products and systems above OpenBLAS's threading thresholds to
torch, whose thread count :func:`torch_threads` sets for the request; below them they stay in NumPy. Either way the
caller sees NumPy arrays in and out: the maths is written once, on NumPy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["matmul", "solve_spd", "torch_threads"]

# OpenBLAS runs a matrix–matrix product on one thread below m·k·n = 65536 · 4 (its GEMM threading threshold).
_THREADED_PRODUCT = 262_144
# np.linalg.solve of this many unknowns or more was measured slower than torch's Cholesky on one thread.
_THREADED_SYSTEM = 96


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (None: leave the count alone), restoring the count afterwards."""
    # One request is a handful of small matrix products: extra threads only add scheduling jitter (on a loaded
    # 2-core machine, 2 threads gave a 36 ms p99 for what takes 0.3 ms on one).
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if before != n:
            torch.set_num_threads(before)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``; a matrix–matrix product large enough for OpenBLAS to thread runs in torch instead."""
    if a.ndim == 2 and b.ndim == 2 and a.shape[0] * a.shape[1] * b.shape[1] >= _THREADED_PRODUCT:
        return (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()
    return a @ b  # matrix–vector products stay below OpenBLAS's threshold at serving sizes (measured)


def solve_spd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a⁻¹ b`` for a symmetric positive-definite ``a``; large systems by Cholesky in torch."""
    if len(a) < _THREADED_SYSTEM:
        return np.linalg.solve(a, b)
    chol, _ = torch.linalg.cholesky_ex(torch.from_numpy(a))
    return torch.cholesky_solve(torch.from_numpy(b)[:, None], chol)[:, 0].numpy()
