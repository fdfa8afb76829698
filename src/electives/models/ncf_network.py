"""A trained NCF network's frozen weights as NumPy arrays, for scoring one student against every course.

:class:`Network` reads the weights of a GMF, MLP or NeuMF module once (float32, on the CPU) and never touches torch
again: a request is a few small products over these arrays. The course side is folded in ahead of time: the GMF
logit ``wᵀ(p ⊙ q)`` is ``(q ⊙ w)ᵀ p``, linear in the student embedding ``p``, and the MLP's first layer
``W₁[p; q]`` splits into ``W₁ˢ p + W₁ᶜ q``, whose course half is computed for every course here.

Student embeddings are the GMF part first, then the MLP part (``d = dg + dm``), as in the trained student rows.
The tower's pieces (:meth:`Network.tower`, :meth:`Network.tower_logits`, :meth:`Network.tower_gradient`) take the
first layer's pre-activation of any number of courses, so scoring and the fold-in's Jacobian share them.
"""

from __future__ import annotations

import numpy as np
import torch

from electives.models.compute import matmul

__all__ = ["Network", "sigmoid"]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The output link: logits to normalised grades or probabilities, without overflow for any logit."""
    return np.exp(-np.logaddexp(0, -logits))


def _array(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().float().cpu().numpy())


class Network:
    """The frozen network of a GMF, MLP or NeuMF module; see the module docstring."""

    def __init__(self, module: torch.nn.Module) -> None:
        gmf, mlp = getattr(module, "gmf", None), getattr(module, "mlp", None)
        out_w = _array(module.out.weight)[0]
        self.bias = float(module.out.bias.detach().float().cpu()[0])
        self.dg = gmf.student.embedding_dim if gmf is not None else 0
        self.dm = mlp.student.embedding_dim if mlp is not None else 0
        self.d = self.dg + self.dm
        self.n_courses = int(module.n_courses)
        parts = []
        # GMF: the course vectors times the output weights, (n_courses, dg). Absent parts are empty arrays.
        self.gmf_courses = np.zeros((self.n_courses, 0), dtype=np.float32)
        if gmf is not None:
            parts.append(_array(gmf.student.weight))
            self.gmf_courses = np.ascontiguousarray(_array(gmf.course.weight) * out_w[: self.dg])
        # MLP: W₁ˢ (h₁, dm), b₁, W₁ᶜ q for every course (n_courses, h₁), the later layers as (Wᵀ, W, b), and the
        # output weights of the last layer (h_L,).
        self.first_student = np.zeros((0, 0), dtype=np.float32)
        self.first_bias = self.tower_out = np.zeros(0, dtype=np.float32)
        self.course_half = np.zeros((self.n_courses, 0), dtype=np.float32)
        self.layers: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        if mlp is not None:
            parts.append(_array(mlp.student.weight))
            w1 = _array(mlp.layers[0].weight)
            self.first_student = np.ascontiguousarray(w1[:, : self.dm])
            self.first_bias = _array(mlp.layers[0].bias)
            self.course_half = np.ascontiguousarray(_array(mlp.course.weight) @ w1[:, self.dm :].T)
            for lin in mlp.layers[1:]:
                w = _array(lin.weight)
                self.layers.append((np.ascontiguousarray(w.T), w, _array(lin.bias)))
            self.tower_out = np.ascontiguousarray(out_w[self.dg :])
        self.students = np.ascontiguousarray(np.hstack(parts))  # (n_students, d): the trained embeddings

    def logits(self, p: np.ndarray) -> np.ndarray:
        """Logits of one student (embedding ``p``) for every course."""
        z = np.full(self.n_courses, self.bias, dtype=np.float32)
        if self.dg:
            z = z + self.gmf_courses @ p[: self.dg]
        if self.dm:
            first = self.course_half + (self.first_bias + self.first_student @ p[self.dg :])
            z = z + self.tower_logits(self.tower(first))
        return z

    def tower(self, first: np.ndarray) -> list[np.ndarray]:
        """Every layer's pre-activation (n, h_i) from the first layer's, for ``n`` courses."""
        pre = [first]
        for w_t, _, b in self.layers:
            pre.append(matmul(np.maximum(pre[-1], 0), w_t) + b)
        return pre

    def tower_logits(self, pre: list[np.ndarray]) -> np.ndarray:
        """The tower's share of each course's logit."""
        return np.maximum(pre[-1], 0) @ self.tower_out

    def tower_gradient(self, pre: list[np.ndarray]) -> np.ndarray:
        """∂ (tower's share of the logit) / ∂ (first layer's pre-activation), (n, h₁), by hand: no autograd, whose
        graph bookkeeping costs more than these small products."""
        g = self.tower_out * (pre[-1] > 0)
        for (_, w, _), h in zip(reversed(self.layers), reversed(pre[:-1]), strict=True):
            g = matmul(g, w) * (h > 0)
        return g
