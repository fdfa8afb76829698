"""Neural Collaborative Filtering models (He et al. 2017): GMF, MLP and NeuMF. Math only, no I/O.

Every model maps (student, course) index pairs to a logit. Explicit mode reads it through a sigmoid as a
normalised grade; implicit mode as an interaction probability.

- GMF:   ŷ = wᵀ(p_u ⊙ q_i) + b
- MLP:   ŷ = wᵀ φ_L(… φ_1([p_u; q_i])) + b,  φ_l(x) = ReLU(W_l x + b_l)
- NeuMF: ŷ = wᵀ[p_uᴳ ⊙ q_iᴳ; φ_L(…)] + b with separate GMF and MLP embeddings.

Initialisation follows the paper: embeddings N(0, 0.01²), hidden layers Glorot-uniform, output layer
LeCun-uniform, biases zero. With ``gmf_output="fixed"`` GMF's output weights w start at 1 and training holds them
there (GMF is then a plain dot product): with w learned, p ⊙ q ⊙ w is unchanged by p → a·p, q → a·q, w → w/a², so
an L2 penalty on the embeddings alone can be dodged by shrinking them and growing w (Rendle et al. 2020).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["GMF", "MLP", "NCFModel", "NeuMF", "build_model"]


def _init_embedding(e: nn.Embedding) -> None:
    nn.init.normal_(e.weight, std=0.01)


def _init_output(lin: nn.Linear) -> None:
    bound = math.sqrt(3.0 / lin.in_features)  # LeCun uniform
    nn.init.uniform_(lin.weight, -bound, bound)
    nn.init.zeros_(lin.bias)


class _GMFPart(nn.Module):
    def __init__(self, n_students: int, n_courses: int, dim: int) -> None:
        super().__init__()
        self.student = nn.Embedding(n_students, dim)
        self.course = nn.Embedding(n_courses, dim)
        _init_embedding(self.student)
        _init_embedding(self.course)

    def rows(self, s: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        return self.student(s), self.course(c)

    def combine(self, p: Tensor, q: Tensor) -> Tensor:
        return p * q


class _Tower(nn.Module):
    """MLP tower over [p_u; q_i]. The first layer W₁[p; q] = W₁ˢp + W₁ᶜq is split for batch scoring."""

    def __init__(self, n_students: int, n_courses: int, dim: int, layers: Sequence[int], dropout: float) -> None:
        super().__init__()
        if not layers:
            raise ValueError("the MLP needs at least one hidden layer")
        self.dim = dim
        self.student = nn.Embedding(n_students, dim)
        self.course = nn.Embedding(n_courses, dim)
        _init_embedding(self.student)
        _init_embedding(self.course)
        sizes = [2 * dim, *layers]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        for lin in self.layers:
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def out_dim(self) -> int:
        return self.layers[-1].out_features

    def _rest(self, h: Tensor) -> Tensor:
        h = self.dropout(torch.relu(h))
        for lin in self.layers[1:]:
            h = self.dropout(torch.relu(lin(h)))
        return h

    def rows(self, s: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        return self.student(s), self.course(c)

    def combine(self, p: Tensor, q: Tensor) -> Tensor:
        return self._rest(self.layers[0](torch.cat([p, q], dim=-1)))

    def student_half(self, s: Tensor) -> Tensor:
        """W₁ˢ p_u + b₁ for each student: (B, h₁)."""
        first = self.layers[0]
        return self.student(s) @ first.weight[:, : self.dim].T + first.bias

    def course_half(self) -> Tensor:
        """W₁ᶜ q_i for every course: (n_courses, h₁)."""
        return self.course.weight @ self.layers[0].weight[:, self.dim :].T

    def pairwise(self, student_half: Tensor, course_half: Tensor, workspace: dict | None = None) -> Tensor:
        """Tower output for every (student, course) combination: (B, C, out_dim).

        Without autograd, activations are written in place into buffers kept in `workspace` across calls: fresh
        multi-megabyte tensors per layer cost more in page faults and copies than the matmuls themselves.
        """
        if torch.is_grad_enabled() or (self.training and isinstance(self.dropout, nn.Dropout)):
            return self._rest(student_half[:, None, :] + course_half[None, :, :])
        ws = {} if workspace is None else workspace
        b, c = student_half.shape[0], course_half.shape[0]
        h = _buffer(ws, 0, (b, c, course_half.shape[1]), course_half)
        torch.add(student_half[:, None, :], course_half[None, :, :], out=h)
        x = h.relu_().view(b * c, -1)
        for i, lin in enumerate(self.layers[1:], start=1):
            y = _buffer(ws, i, (b * c, lin.out_features), x)
            x = torch.addmm(lin.bias, x, lin.weight.T, out=y).relu_()
        return x.view(b, c, -1)


def _buffer(ws: dict, key: int, shape: tuple[int, ...], like: Tensor) -> Tensor:
    buf = ws.get(key)
    n = math.prod(shape)
    if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
        buf = ws[key] = torch.empty(n, dtype=like.dtype, device=like.device)
    return buf[:n].view(shape)


class NCFModel(nn.Module):
    """Common interface: `forward(s, c)` → logits (B,), `score_all(s)` → logits (B, n_courses).
    `gmf_fixed`: GMF's output weights (the first `gmf_dim` of `out.weight`) are held at 1 by training."""

    n_students: int
    n_courses: int
    gmf_fixed: bool = False

    def score_all(self, students: Tensor, max_pairs: int = 1 << 14, cache: dict[str, Tensor] | None = None) -> Tensor:
        raise NotImplementedError

    def course_cache(self) -> dict[str, Tensor]:
        """What `score_all` computes per course regardless of the student (the MLP's first-layer course half);
        pass it back as `cache` to score many student chunks with the same weights."""
        return {}

    def forward(self, s: Tensor, c: Tensor) -> Tensor:
        return self._head([part.rows(s, c) for part in self._parts()])

    def forward_with_l2(self, s: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and the mean over the batch of Σ ‖e‖² over the embedding rows its pairs use (frequency-weighted
        L2), from one lookup: a second lookup doubled the embedding backward, the costliest part of a step."""
        rows = [part.rows(s, c) for part in self._parts()]
        l2 = sum(p.pow(2).sum() + q.pow(2).sum() for p, q in rows) / max(1, len(s))
        return self._head(rows), l2

    def layer_weights(self) -> list[Tensor]:
        """The weights past the embeddings that an L2 penalty on the layers covers: the MLP's layers and the output
        layer (GMF's output weights among them unless they are held fixed); biases are left out."""
        out = self.out.weight[:, self.gmf_dim :] if self.gmf_fixed else self.out.weight
        tower = getattr(self, "mlp", None)
        return [lin.weight for lin in tower.layers] + [out] if tower is not None else [out]

    @torch.no_grad()
    def hold_fixed(self, grad: bool = True) -> None:
        """With `gmf_fixed`, set GMF's output weights to 1, or (grad=True) zero their gradient so that no
        optimiser step moves them."""
        if not self.gmf_fixed:
            return
        if grad and self.out.weight.grad is not None:
            self.out.weight.grad[:, : self.gmf_dim] = 0.0
        elif not grad:
            self.out.weight[:, : self.gmf_dim] = 1.0

    @property
    def gmf_dim(self) -> int:
        """Width of the GMF part (0 for MLP)."""
        gmf = getattr(self, "gmf", None)
        return gmf.student.embedding_dim if gmf is not None else 0

    def _parts(self) -> tuple[nn.Module, ...]:
        raise NotImplementedError

    def head(self, rows: list[tuple[Tensor, Tensor]]) -> Tensor:
        """Logits from each part's looked-up (student rows, course rows), in `forward`'s order of parts."""
        return self._head(rows)

    def _head(self, rows: list[tuple[Tensor, Tensor]]) -> Tensor:
        raise NotImplementedError

    def _chunks(self, students: Tensor, max_pairs: int) -> list[Tensor]:
        step = max(1, max_pairs // max(1, self.n_courses))
        return [students[i : i + step] for i in range(0, len(students), step)]


class GMF(NCFModel):
    def __init__(self, n_students: int, n_courses: int, dim: int = 32) -> None:
        super().__init__()
        self.n_students, self.n_courses = n_students, n_courses
        self.gmf = _GMFPart(n_students, n_courses, dim)
        self.out = nn.Linear(dim, 1)
        _init_output(self.out)

    def _parts(self) -> tuple[nn.Module, ...]:
        return (self.gmf,)

    def _head(self, rows: list[tuple[Tensor, Tensor]]) -> Tensor:
        return self.out(self.gmf.combine(*rows[0])).squeeze(-1)

    def score_all(self, students: Tensor, max_pairs: int = 1 << 14, cache: dict[str, Tensor] | None = None) -> Tensor:
        # wᵀ(p ⊙ q) = (p ⊙ w)ᵀ q: one matmul against all course embeddings.
        pw = self.gmf.student(students) * self.out.weight[0]
        return pw @ self.gmf.course.weight.T + self.out.bias


class MLP(NCFModel):
    def __init__(
        self,
        n_students: int,
        n_courses: int,
        dim: int = 64,
        layers: Sequence[int] = (128, 64, 32),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_students, self.n_courses = n_students, n_courses
        self.mlp = _Tower(n_students, n_courses, dim, layers, dropout)
        self.out = nn.Linear(self.mlp.out_dim, 1)
        _init_output(self.out)

    def _parts(self) -> tuple[nn.Module, ...]:
        return (self.mlp,)

    def _head(self, rows: list[tuple[Tensor, Tensor]]) -> Tensor:
        return self.out(self.mlp.combine(*rows[0])).squeeze(-1)

    def course_cache(self) -> dict[str, Tensor]:
        return {"course_half": self.mlp.course_half()}

    def score_all(self, students: Tensor, max_pairs: int = 1 << 14, cache: dict[str, Tensor] | None = None) -> Tensor:
        ch = (cache or self.course_cache())["course_half"]
        ws: dict = {}
        parts = [
            self.out(self.mlp.pairwise(self.mlp.student_half(b), ch, ws)).squeeze(-1)
            for b in self._chunks(students, max_pairs)
        ]
        return torch.cat(parts) if parts else ch.new_zeros((0, self.n_courses))


class NeuMF(NCFModel):
    def __init__(
        self,
        n_students: int,
        n_courses: int,
        gmf_dim: int = 32,
        mlp_dim: int = 64,
        layers: Sequence[int] = (128, 64, 32),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_students, self.n_courses = n_students, n_courses
        self.gmf = _GMFPart(n_students, n_courses, gmf_dim)
        self.mlp = _Tower(n_students, n_courses, mlp_dim, layers, dropout)
        self.out = nn.Linear(gmf_dim + self.mlp.out_dim, 1)
        _init_output(self.out)

    def _parts(self) -> tuple[nn.Module, ...]:
        return (self.gmf, self.mlp)

    def _head(self, rows: list[tuple[Tensor, Tensor]]) -> Tensor:
        g, m = self.gmf.combine(*rows[0]), self.mlp.combine(*rows[1])
        return self.out(torch.cat([g, m], dim=-1)).squeeze(-1)

    def course_cache(self) -> dict[str, Tensor]:
        return {"course_half": self.mlp.course_half()}

    def score_all(self, students: Tensor, max_pairs: int = 1 << 14, cache: dict[str, Tensor] | None = None) -> Tensor:
        w_g, w_m = self.out.weight[0, : self.gmf_dim], self.out.weight[0, self.gmf_dim :]
        ch = (cache or self.course_cache())["course_half"]
        parts, ws = [], {}
        for b in self._chunks(students, max_pairs):
            g = (self.gmf.student(b) * w_g) @ self.gmf.course.weight.T
            m = self.mlp.pairwise(self.mlp.student_half(b), ch, ws) @ w_m
            parts.append(g + m + self.out.bias)
        return torch.cat(parts) if parts else ch.new_zeros((0, self.n_courses))

    @torch.no_grad()
    def load_pretrained(self, gmf: GMF, mlp: MLP, alpha: float = 0.5) -> None:
        """Copy pre-trained GMF and MLP weights; output layer = [α·w_GMF; (1−α)·w_MLP] (paper, eq. 13). With
        GMF's output weights fixed at 1, α scales GMF's student embeddings instead (the same logits)."""
        self.gmf.load_state_dict(gmf.gmf.state_dict())
        self.mlp.load_state_dict(mlp.mlp.state_dict())
        self.out.weight.copy_(torch.cat([alpha * gmf.out.weight, (1 - alpha) * mlp.out.weight], dim=1))
        self.out.bias.copy_(alpha * gmf.out.bias + (1 - alpha) * mlp.out.bias)
        if self.gmf_fixed:
            self.gmf.student.weight.mul_(alpha)
            self.hold_fixed(grad=False)


def build_model(
    kind: str,
    n_students: int,
    n_courses: int,
    gmf_dim: int,
    mlp_dim: int,
    layers: Sequence[int],
    dropout: float = 0.0,
    gmf_output: str = "learned",
) -> NCFModel:
    """Construct "neumf", "gmf" or "mlp" with the given sizes; ``gmf_output="fixed"`` holds GMF's output weights
    at 1 (a plain dot product)."""
    if gmf_output not in ("learned", "fixed"):
        raise ValueError(f"unknown gmf_output {gmf_output!r}; expected 'learned' or 'fixed'")
    model: NCFModel
    if kind == "gmf":
        model = GMF(n_students, n_courses, gmf_dim)
    elif kind == "mlp":
        return MLP(n_students, n_courses, mlp_dim, layers, dropout)
    elif kind == "neumf":
        model = NeuMF(n_students, n_courses, gmf_dim, mlp_dim, layers, dropout)
    else:
        raise ValueError(f"unknown model {kind!r}; expected 'neumf', 'gmf' or 'mlp'")
    model.gmf_fixed = gmf_output == "fixed"
    model.hold_fixed(grad=False)
    return model
