"""RowAdam: a touched row gets torch's Adam(W) update (lazy semantics: the optimiser's step count, moments of that
row only), duplicates are summed, and a row no batch touched keeps its weights and moments exactly; with catch-up it
follows dense AdamW (up to ε); TableAdam is dense AdamW; table_adam picks between them by how much a step touches."""

from __future__ import annotations

import pytest
import torch

from electives.models.row_adam import RowAdam, TableAdam, table_adam

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LR, BETAS, EPS = 0.05, (0.9, 0.999), 1e-8


def _lazy_reference(
    table: torch.Tensor, batches: list[tuple[torch.Tensor, torch.Tensor]], decay: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lazy Adam(W) written out row by row: at step t, each touched row takes Adam's update with its summed
    gradient and the bias corrections of t; other rows are left alone."""
    w, m, v = table.clone(), torch.zeros_like(table), torch.zeros_like(table)
    b1, b2 = BETAS
    for t, (rows, grads) in enumerate(batches, start=1):
        for r in sorted(set(rows.tolist())):
            g = grads[rows == r].sum(0)
            w[r] *= 1 - LR * decay
            m[r] = b1 * m[r] + (1 - b1) * g
            v[r] = b2 * v[r] + (1 - b2) * g * g
            w[r] -= LR / (1 - b1**t) * m[r] / ((v[r] / (1 - b2**t)).sqrt() + EPS)
    return w, m, v


def _batches(n_rows: int, n_steps: int, size: int, dim: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randint(0, n_rows, (size,), generator=g), torch.randn(size, dim, generator=g)) for _ in range(n_steps)
    ]


@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_touched_rows_follow_lazy_adam_and_untouched_rows_stay(decay: float) -> None:
    torch.manual_seed(0)
    table = torch.randn(12, 3)
    # Rows 0-7 only, with repeats within a batch; rows 8-11 are never touched.
    batches = _batches(8, 6, 5, 3, seed=1)
    opt = RowAdam([table], lr=LR, betas=BETAS, eps=EPS, weight_decay=decay)
    start = table.clone()
    for rows, grads in batches:
        opt.step(rows, [grads])
    w, m, v = _lazy_reference(start, batches, decay)
    torch.testing.assert_close(table, w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(opt.first[0], m, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(opt.second[0], v, rtol=1e-5, atol=1e-9)
    assert torch.equal(table[8:], start[8:])
    assert not opt.first[0][8:].any() and not opt.second[0][8:].any()
    assert opt.steps == len(batches)


@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_rows_touched_every_step_get_exactly_torch_adamw(decay: float) -> None:
    """When every row is touched every step, lazy and dense Adam agree: RowAdam is torch's AdamW then."""
    torch.manual_seed(1)
    table = torch.randn(4, 3)
    param = torch.nn.Parameter(table.clone())
    dense = torch.optim.AdamW([param], lr=LR, betas=BETAS, eps=EPS, weight_decay=decay)
    opt = RowAdam([table], lr=LR, betas=BETAS, eps=EPS, weight_decay=decay)
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        rows = torch.cat([torch.arange(4), torch.randint(0, 4, (3,), generator=g)])  # all rows, some twice
        grads = torch.randn(len(rows), 3, generator=g)
        opt.step(rows, [grads])
        param.grad = torch.zeros(4, 3).index_add_(0, rows, grads)
        dense.step()
    torch.testing.assert_close(table, param.detach(), rtol=1e-6, atol=1e-7)


def test_tables_sharing_rows_are_updated_together_and_bad_calls_refused() -> None:
    a, b = torch.zeros(5, 2), torch.zeros(5, 4)
    opt = RowAdam([a, b], lr=LR)
    rows = torch.tensor([1, 3, 1])
    opt.step(rows, [torch.ones(3, 2), -torch.ones(3, 4)])
    # Adam's first step moves each touched coordinate by lr against the gradient's sign.
    torch.testing.assert_close(a[[1, 3]], torch.full((2, 2), -LR))
    torch.testing.assert_close(b[[1, 3]], torch.full((2, 4), LR))
    assert not a[[0, 2, 4]].any() and not b[[0, 2, 4]].any()
    with pytest.raises(ValueError, match="expected 2 gradients"):
        opt.step(rows, [torch.ones(3, 2)])
    with pytest.raises(ValueError, match="same number of rows"):
        RowAdam([torch.zeros(5, 2), torch.zeros(4, 2)], lr=LR)


@pytest.mark.parametrize("decay", [0.0, 0.01])
def test_catch_up_follows_dense_adamw_on_sparse_batches(decay: float) -> None:
    """Every row touched for 300 steps (Adam's bias corrections settle), then 3 of 10 rows a step for 300 more,
    two rows never: after a flush the table is where dense AdamW, fed zero gradients for untouched rows, left it
    (the rows moved by about 0.4; they agree to 1e-3, the catch-up's ε left out)."""
    table = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    start = table.clone()
    param = torch.nn.Parameter(table.clone())
    dense = torch.optim.AdamW([param], lr=0.01, weight_decay=decay)
    opt = RowAdam([table], lr=0.01, weight_decay=decay, catch_up=True)
    g = torch.Generator().manual_seed(1)
    for t in range(600):
        rows = torch.arange(10) if t < 300 else torch.randint(0, 8, (3,), generator=g)
        grads = torch.randn(len(rows), 3, generator=g) * 1e-3
        opt.step(rows, [grads])
        param.grad = torch.zeros(10, 3).index_add_(0, rows, grads)
        dense.step()
    before = table.clone()
    opt.flush()
    assert not torch.equal(before[8:], table[8:])  # the never-touched rows still coast on their momentum
    assert float((param.detach() - start).abs().max()) > 0.3
    torch.testing.assert_close(table, param.detach(), rtol=0, atol=1e-3)


def test_table_adam_is_dense_adamw_and_table_adam_picks_by_share_touched() -> None:
    table = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    param = torch.nn.Parameter(table.clone())
    dense = torch.optim.AdamW([param], lr=LR, weight_decay=0.1)
    opt = TableAdam([table], lr=LR, weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        rows, grads = torch.randint(0, 6, (4,), generator=g), torch.randn(4, 2, generator=g)
        opt.step(rows, [grads])
        param.grad = torch.zeros(6, 2).index_add_(0, rows, grads)
        dense.step()
    torch.testing.assert_close(table, param.detach(), rtol=1e-6, atol=1e-7)
    assert isinstance(table_adam([torch.zeros(100, 2)], rows_per_step=10, lr=LR, weight_decay=0.0), RowAdam)
    assert isinstance(table_adam([torch.zeros(100, 2)], rows_per_step=40, lr=LR, weight_decay=0.0), TableAdam)
