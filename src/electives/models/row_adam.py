"""Adam for embedding tables that touches only the rows a batch uses.

A dense Adam step reads and writes every row of every table (and autograd first builds a dense gradient of the
whole table), although a batch of B pairs touches at most B rows. :class:`RowAdam` keeps Adam's two moments per row
and, per step, (1) sums the gradients of a row's occurrences (a student appears once per pair it is in), (2)
gathers the touched rows' weights and moments, (3) updates them with torch's own fused Adam(W) kernel
(``torch.optim.adam.adam``) and (4) writes them back. What happens to the rows a batch does not touch:

- ``catch_up=False``: nothing — the "lazy" semantics of TensorFlow's ``LazyAdam``. A touched row gets the update
  ``torch.optim.AdamW`` would give it, with the optimiser's step count t in the bias corrections; an untouched row
  keeps its weights and moments exactly (no decay, no move by its old momentum).
- ``catch_up=True``: what dense Adam(W) would have done to them, done late. Dense Adam keeps moving a row after the
  steps that touch it (its momentum decays by β₁ a step, its second moment by β₂), some ten steps' worth; lazy Adam
  drops those moves, which on ML-1M, where a student's row is in one batch in fifteen, slows learning. With
  catch-up each row remembers the step it was last brought up to date, and when a batch touches it again (or at
  :meth:`flush`, for every row) the s idle steps are applied in closed form before this step's update:
  m ← β₁ˢm, v ← β₂ˢv, w ← (1 − lr·λ)ˢ·w − lr·f·(m/√v)·Σⱼ₌₁ˢ (β₁/√β₂)ʲ, f the bias-correction factor of the first
  idle step. That is dense AdamW's arithmetic except for ε (√v ≫ ε for a row with any history; a row without
  history has m = 0 and does not move), the drift of f over the idle steps (only in the first few hundred steps
  of training, on the small late terms), and that a batch's gradient of a row is taken before its catch-up. :meth:`flush` brings every row up to date (dense work, once an epoch).

Gathering and writing back use ``index_select``/``index_add_``/``index_copy_``, so it runs wherever the tables live
(CPU or CUDA). ``torch.optim.SparseAdam`` does the lazy job through sparse gradient tensors, whose coalescing was
measured slower than the dense step it replaces (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim.adam import adam

__all__ = ["LayerAdam", "RowAdam", "TableAdam", "fused_adamw", "table_adam"]


class RowAdam:
    """Adam(W) over ``tables`` that share one row index (e.g. a student's GMF and MLP embeddings): each
    :meth:`step` gets the row of every occurrence and, per table, that occurrence's gradient."""

    def __init__(
        self,
        tables: Sequence[Tensor],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        catch_up: bool = False,
    ) -> None:
        if not tables or any(t.ndim != 2 or len(t) != len(tables[0]) for t in tables):
            raise ValueError("RowAdam needs 2-d tables with the same number of rows")
        self.tables = list(tables)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.catch_up = catch_up
        self.first = [torch.zeros_like(t) for t in tables]
        self.second = [torch.zeros_like(t) for t in tables]
        # Adam's step count t, one 0-d tensor per table as torch's fused kernel wants them (all equal).
        self.counts = [torch.zeros((), dtype=torch.float32, device=t.device) for t in tables]
        # catch_up: the step each row's weights and moments are up to date with.
        self.current = torch.zeros(len(tables[0]), dtype=torch.int64, device=tables[0].device)
        self._factor_table = torch.zeros(0)

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
        # Without decay or catch-up the update does not depend on the weights: the kernel updates zeros (which then
        # hold the change) and the change is added to the table, one scattered write instead of a gather and one.
        gather = bool(self.weight_decay) or self.catch_up
        weights = [t.index_select(0, touched) if gather else t.new_zeros(len(touched), t.shape[1]) for t in self.tables]
        summed = [g.new_zeros(len(touched), g.shape[1]).index_add_(0, where, g) for g in grads]
        first = [m.index_select(0, touched) for m in self.first]
        second = [v.index_select(0, touched) for v in self.second]
        if self.catch_up:
            self._catch_up(weights, first, second, self.current.index_select(0, touched), self.steps)
            self.current.index_fill_(0, touched, self.steps + 1)
        # torch's own Adam(W) update, in one fused pass over every table's rows (AdamW's decoupled decay).
        fused_adamw(
            weights,
            summed,
            first,
            second,
            self.counts,
            lr=self.lr,
            weight_decay=self.weight_decay,
            betas=self.betas,
            eps=self.eps,
        )
        for i, table in enumerate(self.tables):
            if gather:
                table.index_copy_(0, touched, weights[i])
            else:
                table.index_add_(0, touched, weights[i])
            self.first[i].index_copy_(0, touched, first[i])
            self.second[i].index_copy_(0, touched, second[i])

    @torch.no_grad()
    def flush(self) -> None:
        """With catch-up, bring every row up to date with the steps taken so far (as dense Adam(W) would have left
        it); without, nothing to do."""
        if self.catch_up and self.steps:
            self._catch_up(self.tables, self.first, self.second, self.current, self.steps)
            self.current.fill_(self.steps)

    def _catch_up(
        self, weights: Sequence[Tensor], first: Sequence[Tensor], second: Sequence[Tensor], since: Tensor, now: int
    ) -> None:
        """Applies in place, to rows last brought up to date at step ``since`` (per row), the steps since+1 … now
        that dense Adam(W) would have taken with a zero gradient (see the module docstring)."""
        beta1, beta2 = self.betas
        idle = (now - since).unsqueeze(1)  # (rows, 1)
        ratio = beta1 / beta2**0.5
        # −lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) at the first idle step t, times Σⱼ₌₁ˢ ratioʲ.
        total = self._factors(now).index_select(0, since).unsqueeze(1) * (1.0 - ratio**idle)
        for w, m, v in zip(weights, first, second, strict=True):
            if self.weight_decay:
                w.mul_((1.0 - self.lr * self.weight_decay) ** idle)
            # A row with no history has m = v = 0: it does not move (the clamp only avoids 0/0).
            w.addcdiv_(m * total, v.sqrt().clamp_min_(1e-30))
            m.mul_(beta1**idle)
            v.mul_(beta2**idle)

    def _factors(self, now: int) -> Tensor:
        """−lr·ratio/(1 − ratio)·√(1 − β₂ᵗ)/(1 − β₁ᵗ) for t = 1 … ≥ now + 1 (entry t − 1), computed once per doubling
        of the step count: a row's catch-up gathers its entry instead of evaluating the powers."""
        if len(self._factor_table) <= now:
            beta1, beta2 = self.betas
            ratio = beta1 / beta2**0.5
            t = torch.arange(1, 2 * (now + 1) + 1, dtype=torch.float64, device=self.current.device)
            table = -self.lr * ratio / (1.0 - ratio) * (1.0 - beta2**t).sqrt() / (1.0 - beta1**t)
            self._factor_table = table.to(self.tables[0].dtype)
        return self._factor_table


class TableAdam:
    """Dense AdamW over whole ``tables`` with :class:`RowAdam`'s interface: each step scatters the occurrences'
    gradients into a kept buffer (zeroed after use, never reallocated) and runs torch's fused kernel over every row.
    For a table most of whose rows every batch touches (ML-1M's 3,706 movies against some 2,000 course rows a batch),
    one streaming pass over the table costs less than gathering and writing back the touched rows (measured 0.9 ms
    against 2.1 ms a step)."""

    def __init__(self, tables: Sequence[Tensor], *, lr: float, weight_decay: float = 0.0) -> None:
        self.tables = list(tables)
        self.lr, self.weight_decay = lr, weight_decay
        self.grads = [torch.zeros_like(t) for t in tables]
        self.first = [torch.zeros_like(t) for t in tables]
        self.second = [torch.zeros_like(t) for t in tables]
        self.counts = [torch.zeros((), dtype=torch.float32, device=t.device) for t in tables]

    @property
    def steps(self) -> int:
        return int(self.counts[0])

    @torch.no_grad()
    def step(self, rows: Tensor, grads: Sequence[Tensor]) -> None:
        for buffer, grad in zip(self.grads, grads, strict=True):
            buffer.index_add_(0, rows, grad)
        fused_adamw(
            self.tables, self.grads, self.first, self.second, self.counts, lr=self.lr, weight_decay=self.weight_decay
        )
        for buffer in self.grads:
            buffer.zero_()

    def flush(self) -> None:
        """Nothing pending: every row is updated every step."""


def table_adam(tables: Sequence[Tensor], *, rows_per_step: int, lr: float, weight_decay: float) -> RowAdam | TableAdam:
    """Dense AdamW for ``tables``, done the cheaper way: row by row with catch-up (:class:`RowAdam`) when a step
    touches under a quarter of the rows, else over the whole tables (:class:`TableAdam`). Either way the arithmetic
    is dense AdamW's (the catch-up's up to ε)."""
    if 4 * rows_per_step < len(tables[0]):
        return RowAdam(tables, lr=lr, weight_decay=weight_decay, catch_up=True)
    return TableAdam(tables, lr=lr, weight_decay=weight_decay)


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
        fused_adamw(
            [p.data for p in self.params],
            grads,
            self.first,
            self.second,
            self.counts,
            lr=self.lr,
            weight_decay=self.weight_decay,
        )  # type: ignore[arg-type]


def fused_adamw(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    first: Sequence[Tensor],
    second: Sequence[Tensor],
    counts: Sequence[Tensor],
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> None:
    """One AdamW step of contiguous tensors in place: torch's functional Adam with decoupled decay, fused where
    torch has the kernel (CPU, CUDA); ``counts`` (0-d float tensors, one per tensor) are incremented."""
    adam(
        list(params),
        list(grads),
        list(first),
        list(second),
        [],
        list(counts),
        fused=params[0].device.type in ("cpu", "cuda"),
        decoupled_weight_decay=True,
        amsgrad=False,
        beta1=betas[0],
        beta2=betas[1],
        lr=lr,
        weight_decay=weight_decay,
        eps=eps,
        maximize=False,
    )
