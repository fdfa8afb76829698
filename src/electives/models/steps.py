"""The two ways an NCF training loop takes a step: :class:`DenseStep` (autograd over the module, AdamW over every
parameter; the one DDP wraps) and :class:`RowStep` (the gradient written out by hand on the looked-up rows, and
an embedding table updated only where a batch touched it).

Both minimise the same objective with the same optimiser: the mean per-pair loss (weighted with explicit
``imbalance="reweight"``), plus ``embedding_l2`` · (Σ over the batch's pairs of the squared norms of the embedding
rows each pair uses) / pairs, plus ``layer_l2`` · Σ ‖W‖² over the layer weights
(:meth:`~electives.models.ncf.NCFModel.layer_weights`); GMF's output weights stay at 1 when the model holds them
fixed; AdamW throughout. The row step gets dense AdamW's arithmetic from
:func:`~electives.models.row_adam.table_adam`: a table of which a batch touches under a quarter (ML-1M's users)
is updated row by row, its idle rows' Adam moves caught up when next touched and at the end of each epoch; a table
a batch mostly touches (ML-1M's movies) in one streaming pass. Each step object owns its optimiser state; ``epoch``
turns one epoch's rows into batches, ``step`` trains on one and returns its loss (a 0-d tensor, not synced) and
``end_epoch`` brings every weight up to date.

Why the row step is faster (ML-1M, batch 2048: 1.7× per step, benchmarks/RESULTS.md): a dense step builds the
gradient of every embedding table (zeroed, then scattered into), runs Adam over all rows, and runs autograd's
bookkeeping for some thirty small operations; the row step computes the same gradients with a dozen matrix
products on the batch's rows alone. And each positive shares a batch with its own negatives, so its student's row
is looked up, pushed through the MLP's first layer and updated once for the 1 + n_negatives pairs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from electives.models.config import TrainConfig
from electives.models.distributed import Context
from electives.models.epochs import TrainingRows, epoch_groups, epoch_tensors, loss_function
from electives.models.ncf import NCFModel
from electives.models.row_adam import LayerAdam, table_adam

__all__ = ["Batch", "DenseStep", "RowStep", "make_step", "uses_rows"]

# (students, courses, targets, weights or None): flat pairs for DenseStep, groups (G,), (G, k) for RowStep.
Batch = tuple[Tensor, Tensor, Tensor, Tensor | None]


def uses_rows(config: TrainConfig, ctx: Context) -> bool:
    """Whether a run takes the row step: when configured, and not under torchrun, whose DDP all-reduces dense
    gradients only (every rank would otherwise update different rows)."""
    return config.training_step == "rows" and not ctx.distributed


def make_step(model: NCFModel, config: TrainConfig, *, device: str, ctx: Context) -> DenseStep | RowStep:
    """The configured step for ``model`` (see :func:`uses_rows`)."""
    return RowStep(model, config) if uses_rows(config, ctx) else DenseStep(model, config, device=device, ctx=ctx)


def _weighted_mean(per_pair: Tensor, weights: Tensor | None) -> Tensor:
    return per_pair.mean() if weights is None else (per_pair * weights).sum() / weights.sum()


def _layer_penalty(model: NCFModel, config: TrainConfig) -> Tensor | None:
    if not config.layer_l2:
        return None
    return config.layer_l2 * sum(w.pow(2).sum() for w in model.layer_weights())


class _WithL2(nn.Module):
    """`forward` → (logits, embedding L2 or None) from one lookup, as a module so that DDP can wrap it."""

    def __init__(self, model: NCFModel, l2: bool) -> None:
        super().__init__()
        self.model, self.l2 = model, l2

    def forward(self, s: Tensor, c: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.model.forward_with_l2(s, c) if self.l2 else (self.model(s, c), None)


class DenseStep:
    """Autograd over the module and fused AdamW over all its parameters; under torchrun the module is wrapped in
    DistributedDataParallel and each rank takes its share of the global batch."""

    def __init__(self, model: NCFModel, config: TrainConfig, *, device: str, ctx: Context) -> None:
        assert config.lr is not None and config.batch_size is not None
        self.model, self.config, self.device, self.ctx = model, config, device, ctx
        self.explicit = config.mode == "explicit"
        self.loss_fn = loss_function(config)
        # The fused kernel updates all parameters in one pass: ~3× faster steps on CPU, supported on CUDA too.
        tables = [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]
        rest = [p for p in model.parameters() if all(p is not t for t in tables)]
        groups = [{"params": rest}, {"params": tables, "lr": config.embedding_lr or config.lr}]
        self.opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay or 0.0, fused=True)
        self.net: nn.Module = _WithL2(model, bool(config.embedding_l2))
        self.batch_size = config.batch_size
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [torch.device(device).index] if "cuda" in device else None
            self.net = DistributedDataParallel(self.net, device_ids=ids)
            # DDP averages the gradients over ranks, so each rank takes its share of the global batch.
            self.batch_size = max(1, math.ceil(config.batch_size / ctx.world_size))

    def epoch(self, rows: TrainingRows, *, rng: np.random.Generator, local: np.random.Generator) -> list[Batch]:
        """This rank's shuffled pairs (negatives drawn afresh), cut into batches."""
        s, c, y, w = epoch_tensors(self.config, rows, rng=rng, device=self.device, ctx=self.ctx, local=local)
        b = self.batch_size
        return [
            (s[i : i + b], c[i : i + b], y[i : i + b], None if w is None else w[i : i + b]) for i in range(0, len(s), b)
        ]

    def end_epoch(self) -> None:
        """Nothing pending (RowStep's counterpart brings every row up to date)."""

    def finish(self) -> None:
        """Nothing to undo (RowStep's counterpart gives the embeddings their own storage back)."""

    def step(self, s: Tensor, c: Tensor, y: Tensor, w: Tensor | None) -> Tensor:
        out, l2 = self.net(s, c)
        loss = _weighted_mean(self.loss_fn(torch.sigmoid(out) if self.explicit else out, y), w)
        if l2 is not None:
            loss = loss + self.config.embedding_l2 * l2
        penalty = _layer_penalty(self.model, self.config)
        if penalty is not None:
            loss = loss + penalty
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.model.hold_fixed()
        self.opt.step()
        return loss.detach()


class RowStep:
    """The hand-written step: embedding rows gathered per batch, the gradient by hand (the log loss's derivative in
    closed form, another loss's by autograd on the logits), :func:`table_adam` for the student and the course
    tables, fused AdamW for the layers. Batches are groups: a student with k courses (a positive and its negatives).

    While it trains, a part's student (course) embedding is a view into one table of the GMF and MLP columns side by
    side, so that a batch gathers, and the optimiser updates, one row per student (course) instead of one per part;
    :meth:`finish` gives each embedding its own storage back."""

    def __init__(self, model: NCFModel, config: TrainConfig) -> None:
        assert config.lr is not None and config.batch_size is not None
        self.model, self.config = model, config
        self.explicit = config.mode == "explicit"
        self.loss_fn = loss_function(config)
        self.gmf, self.mlp = getattr(model, "gmf", None), getattr(model, "mlp", None)
        self.dg = model.gmf_dim
        drop = getattr(self.mlp, "dropout", None)
        self.dropout = drop.p if isinstance(drop, nn.Dropout) else 0.0
        self.embeddings = [e for p in (self.gmf, self.mlp) if p is not None for e in (p.student, p.course)]
        # Pairs a group holds: a positive and its negatives (implicit), one graded row (explicit).
        self.group_size = 1 + config.n_negatives if config.mode == "implicit" else 1
        decay = config.weight_decay or 0.0
        students, courses = (_side_by_side(self.embeddings[i::2]) for i in (0, 1))
        rate = config.embedding_lr or config.lr
        groups = max(1, round(config.batch_size / self.group_size))
        self.students = table_adam([students], rows_per_step=groups, lr=rate, weight_decay=decay)
        self.courses = table_adam([courses], rows_per_step=groups * self.group_size, lr=rate, weight_decay=decay)
        layers = list(self.mlp.layers) if self.mlp is not None else []
        self.dense = [t for lin in [*layers, model.out] for t in (lin.weight, lin.bias)]
        for t in self.dense:
            t.grad = torch.zeros_like(t)  # written in place every step
        self.opt = LayerAdam(self.dense, lr=config.lr, weight_decay=decay)

    def end_epoch(self) -> None:
        """Every row brought up to date (the row-by-row optimiser's catch-up), before the model is validated or
        saved."""
        self.students.flush()
        self.courses.flush()

    def finish(self) -> None:
        """Each embedding back in its own contiguous storage (the side-by-side tables are then freed)."""
        for e in self.embeddings:
            e.weight.data = e.weight.data.contiguous()

    def epoch(self, rows: TrainingRows, *, rng: np.random.Generator, local: np.random.Generator) -> list[Batch]:
        """Shuffled groups (a row with its fresh negatives), about ``batch_size`` pairs to a batch."""
        s, c, y, w = epoch_groups(self.config, rows, rng=local, device=str(self.model.out.weight.device))
        assert self.config.batch_size is not None
        b = max(1, round(self.config.batch_size / self.group_size))
        return [
            (s[i : i + b], c[i : i + b], y[i : i + b], None if w is None else w[i : i + b]) for i in range(0, len(s), b)
        ]

    @torch.no_grad()
    def step(self, s: Tensor, c: Tensor, y: Tensor, w: Tensor | None) -> Tensor:
        groups, k = c.shape
        flat = c.reshape(-1)
        student = self.students.tables[0].index_select(0, s)  # (G, dg + dm): GMF columns, then MLP's
        course = self.courses.tables[0].index_select(0, flat)  # (G·k, dg + dm)
        dg = self.dg
        # The logits: output bias + the tower's share (one fused product) + GMF's.
        tower = self._mlp_forward(student[:, dg:], course[:, dg:]) if self.mlp is not None else None
        bias = self.model.out.bias
        z = torch.addmv(bias, tower[-1], self.model.out.weight[0, dg:]) if tower else bias.expand(groups * k).clone()
        z = z.view(groups, k)
        gmf = self._gmf_forward(student[:, :dg], course[:, :dg], z) if self.gmf is not None else None
        loss, dz = self._loss(z, y, w)
        # Output layer, then each part's way back to its columns of the rows.
        out_grad = self.model.out.weight.grad[0]
        torch.sum(dz.reshape(1, -1), 1, out=self.model.out.bias.grad)
        d_student, d_course = torch.empty_like(student), torch.empty_like(course)
        if gmf is not None:
            out_grad[:dg] = self._gmf_backward(dz, student[:, :dg], course[:, :dg], gmf, d_student, d_course)
        if tower is not None:
            torch.mv(tower[-1].T, dz.reshape(-1), out=out_grad[dg:])
            self._mlp_backward(dz, student[:, dg:], course[:, dg:], tower, d_student, d_course)
        loss = loss + self._regularise((student, course), (d_student, d_course), k)
        self.students.step(s, [d_student])
        self.courses.step(flat, [d_course])
        self.opt.step()
        return loss

    def _loss(self, z: Tensor, y: Tensor, w: Tensor | None) -> tuple[Tensor, Tensor]:
        """The mean loss over the batch's pairs and its derivative with respect to the logits z (G, k): the log
        loss's in closed form, (σ(z) − y) / pairs; any other through autograd on z alone."""
        if not self.explicit and w is None:
            return nn.functional.binary_cross_entropy_with_logits(z, y), torch.sigmoid(z).sub_(y).div_(z.numel())
        with torch.enable_grad():
            leaf = z.detach().requires_grad_()
            loss = _weighted_mean(self.loss_fn(torch.sigmoid(leaf) if self.explicit else leaf, y), w)
            (dz,) = torch.autograd.grad(loss, leaf)
        return loss.detach(), dz

    def _gmf_forward(self, p: Tensor, q: Tensor, z: Tensor) -> Tensor:
        """Adds wᵀ(p ⊙ q) to z for every pair (each group's k course rows against its student row ⊙ w); returns
        p ⊙ w, which the way back needs."""
        pw = p if self.model.gmf_fixed else p * self.model.out.weight[0, : self.dg]
        z.add_(torch.linalg.vecdot(q.view(len(p), -1, self.dg), pw.unsqueeze(1)))
        return pw

    def _gmf_backward(self, dz: Tensor, p: Tensor, q: Tensor, pw: Tensor, d_p: Tensor, d_q: Tensor) -> Tensor:
        """Writes ∂/∂p and ∂/∂q into the GMF columns of ``d_p`` (G, ·) and ``d_q`` (G·k, ·); returns ∂/∂w (zero
        when w is held fixed)."""
        dg, groups = self.dg, len(p)
        d_pw = (dz.unsqueeze(2) * q.view(groups, -1, dg)).sum(1)  # measured faster than bmm here
        torch.mul(dz.unsqueeze(2), pw.unsqueeze(1), out=d_q[:, :dg].view(groups, -1, dg))
        if self.model.gmf_fixed:
            d_p[:, :dg] = d_pw
            return torch.zeros_like(d_pw[0])
        torch.mul(d_pw, self.model.out.weight[0, :dg], out=d_p[:, :dg])
        return (d_pw * p).sum(0)

    def _activate(self, h: Tensor) -> Tensor:
        h.relu_()
        if self.dropout and self.model.training:
            h.mul_(torch.empty_like(h).bernoulli_(1.0 - self.dropout).div_(1.0 - self.dropout))
        return h

    def _mlp_forward(self, p: Tensor, q: Tensor) -> list[Tensor]:
        """Each layer's output (G·k, h_i). The first layer W₁[p; q] + b₁ = (W₁ˢp + b₁) + W₁ᶜq: the student half
        once per group, broadcast over its k courses."""
        assert self.mlp is not None
        first, dm = self.mlp.layers[0], self.mlp.dim
        groups = len(p)
        student_half = torch.addmm(first.bias, p, first.weight[:, :dm].T)
        h = (q @ first.weight[:, dm:].T).view(groups, -1, first.out_features).add_(student_half.unsqueeze(1))
        outs = [self._activate(h.view(-1, first.out_features))]
        for lin in self.mlp.layers[1:]:
            outs.append(self._activate(torch.addmm(lin.bias, outs[-1], lin.weight.T)))
        return outs

    @staticmethod
    def _relu_backward(dh: Tensor, out: Tensor, scale: float) -> Tensor:
        """dh where the unit was active (ReLU's zero, and a dropped unit's), times dropout's scale."""
        dh = torch.ops.aten.threshold_backward(dh, out, 0.0)  # one pass, where `dh * (out > 0)` takes two
        return dh.mul_(scale) if scale != 1.0 else dh

    def _mlp_backward(self, dz: Tensor, p: Tensor, q: Tensor, outs: list[Tensor], d_p: Tensor, d_q: Tensor) -> None:
        """Writes the layers' gradients, and ∂/∂p, ∂/∂q into the MLP columns of ``d_p`` and ``d_q``."""
        assert self.mlp is not None
        layers, dm, dg = self.mlp.layers, self.mlp.dim, self.dg
        scale = 1.0 / (1.0 - self.dropout) if self.dropout and self.model.training else 1.0
        dh = torch.outer(dz.reshape(-1), self.model.out.weight[0, dg:])
        for i in range(len(layers) - 1, 0, -1):
            dh = self._relu_backward(dh, outs[i], scale)
            torch.mm(dh.T, outs[i - 1], out=layers[i].weight.grad)
            torch.sum(dh, 0, out=layers[i].bias.grad)
            dh = dh @ layers[i].weight
        dh = self._relu_backward(dh, outs[0], scale)
        first = layers[0]
        d_half = dh.view(len(p), -1, first.out_features).sum(1)  # the student half's gradient, per group
        first.weight.grad[:, :dm].addmm_(d_half.T, p, beta=0.0)
        first.weight.grad[:, dm:].addmm_(dh.T, q, beta=0.0)
        torch.sum(d_half, 0, out=first.bias.grad)
        d_p[:, dg:].addmm_(d_half, first.weight[:, :dm], beta=0.0)
        d_q[:, dg:].addmm_(dh, first.weight[:, dm:], beta=0.0)

    def _regularise(self, rows: tuple[Tensor, Tensor], grads: tuple[Tensor, Tensor], k: int) -> Tensor:
        """Adds the L2 terms' gradients to the rows' and the layers'; returns their value. A group's student row
        is used by its k pairs: k occurrences of the per-occurrence embedding L2."""
        cfg = self.config
        value = self.model.out.bias.new_zeros(())
        if cfg.embedding_l2:
            pairs = len(rows[1])
            for r, g, times in ((rows[0], grads[0], k), (rows[1], grads[1], 1)):
                g.add_(r, alpha=2.0 * cfg.embedding_l2 * times / pairs)
                flat = r.reshape(-1)
                value = value + cfg.embedding_l2 * times / pairs * torch.dot(flat, flat)
        if cfg.layer_l2:
            for lin in [*(self.mlp.layers if self.mlp is not None else []), self.model.out]:
                lin.weight.grad.add_(lin.weight, alpha=2.0 * cfg.layer_l2)
            self.model.hold_fixed()
            value = value + cfg.layer_l2 * sum(w.pow(2).sum() for w in self.model.layer_weights())
        return value


def _side_by_side(embeddings: list[nn.Embedding]) -> Tensor:
    """One table of the embeddings' columns side by side; each embedding's weight becomes a view into it."""
    table = torch.cat([e.weight.detach() for e in embeddings], dim=1)
    start = 0
    for e in embeddings:
        e.weight.data = table[:, start : start + e.embedding_dim]
        start += e.embedding_dim
    return table
