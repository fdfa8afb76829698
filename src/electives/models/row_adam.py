"""Lazy Adam for embedding tables: each step updates only the rows a batch touched.

A dense Adam step reads and writes every row of every table (and autograd first builds a dense gradient of the
whole table), although a batch of B pairs touches at most B rows. :class:`RowAdam` keeps Adam's two moments per row
and, per step, (1) sums the gradients of a row's occurrences (a student appears once per pair it is in), (2)
gathers the touched rows' moments, (3) applies Adam's update to those rows alone and (4) writes them back. Rows a
batch does not touch keep their weights and their moments exactly — the "lazy" semantics of TensorFlow's
``LazyAdam``: a touched row gets the update ``torch.optim.Adam`` would give it, with the step count t of the whole
optimiser in the bias corrections; an untouched row is not decayed, nor moved by its old momentum. Decoupled weight
decay (AdamW's) applies to touched rows only, for the same reason.

The gathered rows go through torch's own fused Adam(W) kernel (``torch.optim.adam.adam``), so a touched row's
update is torch's to the last bit; gathering and writing back use ``index_select``/``index_add_``/``index_copy_``,
so it runs wherever the tables live (CPU or CUDA).
``torch.optim.SparseAdam`` does the same job through sparse gradient tensors, whose coalescing was measured
slower than the dense step it replaces (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim.adam import adam

__all__ = ["LayerAdam", "RowAdam"]


class RowAdam:
    """Lazy Adam over ``tables`` that share one row index (e.g. a student's GMF and MLP embeddings): each
    :meth:`step` gets the row of every occurrence and, per table, that occurrence's gradient."""

    def __init__(
        self,
        tables: Sequence[Tensor],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if not tables or any(t.ndim != 2 or len(t) != len(tables[0]) for t in tables):
            raise ValueError("RowAdam needs 2-d tables with the same number of rows")
        self.tables = list(tables)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.first = [torch.zeros_like(t) for t in tables]
        self.second = [torch.zeros_like(t) for t in tables]
        # Adam's step count t, one 0-d tensor per table as torch's fused kernel wants them (all equal).
        self.counts = [torch.zeros((), dtype=torch.float32, device=t.device) for t in tables]

    @property
    def steps(self) -> int:
        return int(self.counts[0])

    @torch.no_grad()
    def step(self, rows: Tensor, grads: Sequence[Tensor]) -> None:
        """One Adam step on the rows in ``rows`` (with repeats; one entry per occurrence); ``grads[i]`` holds
        table i's gradient of each occurrence, (len(rows), dim_i)."""
        if len(grads) != len(self.tables):
            raise ValueError(f"expected {len(self.tables)} gradients, got {len(grads)}")
        touched, where = torch.unique(rows, return_inverse=True)
        # The touched rows' weights, summed gradients and moments, each contiguous (the fused kernel needs that).
        # Without decay the update does not depend on the weights: the kernel updates zeros (which then hold the
        # change) and the change is added to the table, one scattered write instead of a gather and a write.
        decay = bool(self.weight_decay)
        weights = [t.index_select(0, touched) if decay else t.new_zeros(len(touched), t.shape[1]) for t in self.tables]
        summed = [g.new_zeros(len(touched), g.shape[1]).index_add_(0, where, g) for g in grads]
        first = [m.index_select(0, touched) for m in self.first]
        second = [v.index_select(0, touched) for v in self.second]
        beta1, beta2 = self.betas
        # torch's own Adam(W) update, in one fused pass over every table's rows (AdamW's decoupled decay).
        adam(
            weights,
            summed,
            first,
            second,
            [],
            self.counts,
            fused=weights[0].device.type in ("cpu", "cuda"),
            decoupled_weight_decay=True,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=self.lr,
            weight_decay=self.weight_decay,
            eps=self.eps,
            maximize=False,
        )
        for i, table in enumerate(self.tables):
            if decay:
                table.index_copy_(0, touched, weights[i])
            else:
                table.index_add_(0, touched, weights[i])
            self.first[i].index_copy_(0, touched, first[i])
            self.second[i].index_copy_(0, touched, second[i])


class LayerAdam:
    """torch's fused AdamW over whole tensors (the layers next to the tables), called without the
    ``torch.optim.Optimizer`` machinery, whose per-step bookkeeping cost more than the update of a few thousand
    weights (measured: 0.3 ms of a 5 ms step). The gradients are read from each tensor's ``.grad``."""

    def __init__(self, params: Sequence[Tensor], *, lr: float, weight_decay: float = 0.0) -> None:
        self.params = list(params)
        self.lr, self.weight_decay = lr, weight_decay
        self.first = [torch.zeros_like(p) for p in self.params]
        self.second = [torch.zeros_like(p) for p in self.params]
        self.counts = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            raise ValueError("LayerAdam.step: every parameter needs a gradient")
        adam(
            [p.data for p in self.params],
            grads,  # type: ignore[arg-type]
            self.first,
            self.second,
            [],
            self.counts,
            fused=self.params[0].device.type in ("cpu", "cuda"),
            decoupled_weight_decay=True,
            amsgrad=False,
            beta1=0.9,
            beta2=0.999,
            lr=self.lr,
            weight_decay=self.weight_decay,
            eps=1e-8,
            maximize=False,
        )
