"""Training NCF models on `Interactions`: explicit (grade regression) and implicit (log loss with negatives).

`fit(train, TrainConfig(...))` carves a validation split out of the TRAINING data for early stopping, trains
with Adam (AdamW when weight_decay > 0) on shuffled in-memory tensors, restores the best epoch's weights and returns a `FittedNCF` with
`predict` and `score_all`. All randomness comes from `TrainConfig.seed`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from electives.data.interactions import Interactions, ItemLookup
from electives.data.sampling import sample_negatives
from electives.data.splits import check_no_overlap, validation_split
from electives.errors import DataError, ElectivesError
from electives.evaluation import metrics
from electives.models import distributed
from electives.models.config import MODE_DEFAULTS, TrainConfig
from electives.models.distributed import Context
from electives.models.ncf import GMF, MLP, NCFModel, NeuMF, build_model

__all__ = ["MODE_DEFAULTS", "EpochStats", "FittedNCF", "TrainConfig", "fit"]


@dataclass(frozen=True)
class EpochStats:
    phase: str  # "gmf", "mlp" (pre-training) or the trained model's name
    epoch: int
    train_loss: float
    val_metric: float | None  # validation RMSE (explicit, normalised units) or HR@10 (implicit)
    seconds: float


@dataclass
class FittedNCF:
    """A trained model with the same fit/predict interface as the baselines."""

    model: NCFModel
    config: TrainConfig
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    val_metric_name: str = ""
    train_fingerprint: str = ""
    device: str = "cpu"
    # With `refit`: the model as it stood at its best validation epoch, before training again on training +
    # validation. Validation metrics and calibration must come from this one; the refitted model saw those rows.
    validated: FittedNCF | None = None
    best_epochs: dict[str, int] = field(default_factory=dict)  # per phase (gmf, mlp, neumf with pre-training)

    @property
    def predicts_grades(self) -> bool:
        return self.config.mode == "explicit"

    @property
    def n_students(self) -> int:
        return self.model.n_students

    @property
    def n_courses(self) -> int:
        return self.model.n_courses

    @torch.no_grad()
    def predict(self, students: np.ndarray, courses: np.ndarray) -> np.ndarray:
        """Sigmoid of the logit: the normalised grade (explicit) or an interaction score (implicit)."""
        self.model.eval()
        s, c = np.asarray(students, dtype=np.int64), np.asarray(courses, dtype=np.int64)
        out = np.empty(len(s), dtype=np.float32)
        step = 1 << 18
        for i in range(0, len(s), step):
            st = torch.tensor(s[i : i + step], device=self.device)
            ct = torch.tensor(c[i : i + step], device=self.device)
            out[i : i + step] = torch.sigmoid(self.model(st, ct)).float().cpu().numpy()
        return out

    @torch.no_grad()
    def score_all(self, students: np.ndarray) -> np.ndarray:
        """(len(students), n_courses) scores on the same scale as `predict`."""
        self.model.eval()
        st = torch.as_tensor(np.asarray(students, dtype=np.int64), device=self.device)
        return torch.sigmoid(self.model.score_all(st)).float().cpu().numpy()


# -- training -------------------------------------------------------------------------------------------------


@dataclass
class _Validation:
    students: Tensor
    courses: Tensor  # explicit: (V,), implicit: (V, 1 + val_negatives), positive first
    grades: Tensor | None


def fit(
    train: Interactions,
    config: TrainConfig | None = None,
    *,
    validation: Interactions | None = None,
    progress: bool = True,
    on_epoch: Callable[[EpochStats, NCFModel], None] | None = None,
) -> FittedNCF:
    """Train the configured model on `train` (the training split only).

    Unless `validation` is given or `config.validation == "none"`, a validation split of the configured kind
    is carved out of `train`; training stops after `patience` epochs without improvement of validation RMSE
    (explicit) or sampled HR@10 (implicit) and the best epoch's weights are restored. `on_epoch(stats, model)`
    is called after each epoch (e.g. to time how long a target takes).

    Launched under `torchrun`, every rank calls `fit` with the same data and config: the process group is
    joined, each rank trains on its own shard of every epoch's shuffled rows with DistributedDataParallel
    (`batch_size` stays the global batch), rank 0 validates and its early-stopping decision is broadcast, and
    every rank returns the same model.
    """
    cfg = (config or TrainConfig()).resolved()
    if cfg.mode == "explicit" and train.grades is None:
        raise DataError("explicit training needs grades; these interactions have none (use mode='implicit')")
    ctx = distributed.init(cfg.device)
    device = _device(cfg.device, ctx)
    with _seeded_torch(device, cfg.seed):
        # `rng` is drawn identically on every rank (splits, shard assignment); `local` only by this rank.
        rng = np.random.default_rng(cfg.seed)
        local = np.random.default_rng([cfg.seed, ctx.rank]) if ctx.distributed else rng
        fit_data, val_data = _carve_validation(cfg, train, validation)
        val = None if val_data is None else _prepare_validation(cfg, fit_data, val_data, train, rng, device)
        data = _prepare_training(cfg, fit_data, rng)
        history: list[EpochStats] = []
        run = _Run(ctx, local, progress and ctx.is_main, on_epoch)
        model, best = _fit_phases(cfg, train, data, val, rng, device, history, run)
        fitted = FittedNCF(
            model=model.eval(),
            config=cfg,
            history=history,
            best_epoch=best[cfg.model],
            val_metric_name="rmse" if cfg.mode == "explicit" else "hr@10",
            train_fingerprint=train.fingerprint(),
            device=device,
            best_epochs=best,
        )
    if cfg.refit and val_data is not None:
        fitted = refit(fitted, fit_data, val_data, progress=progress, on_epoch=on_epoch)
        if validation is None:  # carved here: `train` already was everything
            fitted.train_fingerprint = train.fingerprint()
    return fitted


def refit(
    fitted: FittedNCF,
    fit_data: Interactions,
    validation: Interactions,
    *,
    progress: bool = True,
    on_epoch: Callable[[EpochStats, NCFModel], None] | None = None,
) -> FittedNCF:
    """Train `fitted`'s configuration again from scratch on `fit_data` ∪ `validation` for the epochs validation
    chose (per phase). The validation rows are the newest of each student's history (loo/temporal), the most
    telling for what comes next: on ML-1M this lifts test HR@10 from 0.684 to 0.704 at the same settings.
    The result keeps `fitted` as `validated`, for metrics and calibration on rows it has not seen."""
    cfg = fitted.config
    check_no_overlap(fit_data, validation)
    everything = fit_data.concat(validation)
    ctx = distributed.init(cfg.device)
    device = _device(cfg.device, ctx)
    with _seeded_torch(device, cfg.seed + 1):
        rng = np.random.default_rng([cfg.seed, 1])
        local = np.random.default_rng([cfg.seed, 1, ctx.rank]) if ctx.distributed else rng
        run = _Run(ctx, local, progress and ctx.is_main, on_epoch)
        history = list(fitted.history)
        data = _prepare_training(cfg, everything, rng)
        model, _ = _fit_phases(cfg, everything, data, None, rng, device, history, run, fitted.best_epochs)
    return replace(
        fitted, model=model.eval(), history=history, train_fingerprint=everything.fingerprint(), validated=fitted
    )


@contextlib.contextmanager
def _seeded_torch(device: str, seed: int) -> Iterator[None]:
    """torch's global RNG (CPU and `device`'s CUDA stream) seeded inside, the caller's own left as it was."""
    cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def _carve_validation(
    cfg: TrainConfig, train: Interactions, validation: Interactions | None
) -> tuple[Interactions, Interactions | None]:
    """(rows to fit, validation rows): `validation` if given (checked for overlap), else a split of `cfg`'s kind
    carved from `train`, else none (validation="none")."""
    if validation is not None:
        check_no_overlap(train, validation)
        return train, validation
    if cfg.validation == "none":
        return train, None
    return validation_split(train, cfg.validation, cfg.val_fraction, cfg.seed)  # type: ignore[arg-type]


def _fit_phases(
    cfg: TrainConfig,
    shape: Interactions,
    data: _TrainData,
    val: _Validation | None,
    rng: np.random.Generator,
    device: str,
    history: list[EpochStats],
    run: _Run,
    epochs: dict[str, int] | None = None,
) -> tuple[NCFModel, dict[str, int]]:
    """Train the configured model, after GMF and MLP when pre-training; returns it and each phase's best epoch.
    With `epochs` (a refit), each phase runs exactly that many epochs and its history is labelled "… refit"."""
    dims = (cfg.gmf_dim, cfg.mlp_dim, cfg.mlp_layers, cfg.dropout)
    best: dict[str, int] = {}

    def phase(kind: str, start: tuple[GMF, MLP] | None = None) -> NCFModel:
        model = build_model(kind, shape.n_students, shape.n_courses, *dims).to(device)
        if start is not None:
            assert isinstance(model, NeuMF)
            model.load_pretrained(*start, cfg.pretrain_alpha)
        c = cfg if epochs is None else replace(cfg, epochs=epochs[kind])
        name = kind if epochs is None else f"{kind} refit"
        best[kind] = _train(model, name, c, data, val, rng, device, history, run.progress, start is None, run)
        return model

    if cfg.pretrain and cfg.model == "neumf":
        gmf, mlp = phase("gmf"), phase("mlp")
        assert isinstance(gmf, GMF) and isinstance(mlp, MLP)
        return phase("neumf", (gmf, mlp)), best
    return phase(cfg.model), best


def _device(name: str, ctx: Context | None = None) -> str:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ElectivesError(f"device {name!r} requested but CUDA is not available")
    return (ctx or Context()).device(name)


@dataclass
class _Run:
    """Per-run settings of the training loop that are not part of the model's configuration."""

    ctx: Context = field(default_factory=Context)
    local: np.random.Generator | None = None  # this rank's own stream (negatives, shard order)
    progress: bool = True
    on_epoch: Callable[[EpochStats, NCFModel], None] | None = None


@dataclass
class _TrainData:
    students: np.ndarray
    courses: np.ndarray
    grades: np.ndarray | None  # explicit targets
    weights: np.ndarray | None  # explicit per-row loss weights (imbalance="reweight")
    lookup: ItemLookup | None  # implicit: positives that negatives must avoid
    n_courses: int


def _prepare_training(cfg: TrainConfig, data: Interactions, rng: np.random.Generator) -> _TrainData:
    if cfg.mode == "implicit":
        lookup = data.item_lookup()
        s = np.repeat(np.arange(data.n_students, dtype=np.int64), lookup.counts())
        return _TrainData(s, lookup.indices, None, None, lookup, data.n_courses)
    assert data.grades is not None
    keep = ~np.isnan(data.grades)
    s, c, g = data.students[keep], data.courses[keep], data.grades[keep].astype(np.float32)
    if len(s) == 0:
        raise DataError("no graded rows to train on")
    w = None
    low = g < cfg.low_grade
    if cfg.imbalance == "oversample" and low.any():
        copies = max(0, round(cfg.imbalance_factor) - 1)
        idx = np.repeat(np.flatnonzero(low), copies)
        noisy = np.clip(g[idx] + rng.normal(0.0, cfg.imbalance_noise, len(idx)), 0.0, 1.0).astype(np.float32)
        s, c, g = np.concatenate([s, s[idx]]), np.concatenate([c, c[idx]]), np.concatenate([g, noisy])
    elif cfg.imbalance == "reweight":
        w = np.where(low, cfg.imbalance_factor, 1.0).astype(np.float32)
    return _TrainData(s, c, g, w, None, data.n_courses)


def _prepare_validation(
    cfg: TrainConfig,
    fit_data: Interactions,
    val: Interactions,
    train: Interactions,
    rng: np.random.Generator,
    device: str,
) -> _Validation | None:
    if cfg.mode == "explicit":
        assert val.grades is not None
        keep = ~np.isnan(val.grades)
        if not keep.any():
            return None
        return _Validation(
            torch.tensor(val.students[keep], device=device),
            torch.tensor(val.courses[keep], device=device),
            torch.tensor(val.grades[keep], device=device),
        )
    # Negatives avoid everything the student has in train ∪ validation, as the test protocol does; a small
    # catalogue gets fewer negatives, and students with no untaken course are left out.
    both = fit_data.concat(val)
    lookup = both.item_lookup()
    free = train.n_courses - lookup.counts()[val.students]
    if not (free > 0).any():
        return None
    students, pos = val.students[free > 0], val.courses[free > 0]
    neg = sample_negatives(students, lookup, min(cfg.val_negatives, int(free[free > 0].min())), rng, unique=True)
    courses = np.concatenate([pos[:, None], neg], axis=1)
    return _Validation(torch.tensor(students, device=device), torch.tensor(courses, device=device), None)


def _epoch_tensors(
    cfg: TrainConfig,
    data: _TrainData,
    rng: np.random.Generator,
    device: str,
    ctx: Context | None = None,
    local: np.random.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Shuffled (students, courses, targets, weights) for one epoch; implicit negatives drawn afresh.

    With several ranks, the rows are dealt out by one permutation drawn alike on every rank (`rng`), each rank
    keeping an equal share (a few rows sit out each epoch, different ones each time) so that every rank runs the
    same number of batches; its negatives and order come from its own stream `local`.
    """
    ctx = ctx or Context()
    local = rng if local is None else local
    rows = None
    if ctx.distributed:
        share = len(data.students) // ctx.world_size
        if share == 0:
            raise DataError(f"{len(data.students)} training rows cannot be shared by {ctx.world_size} processes")
        rows = rng.permutation(len(data.students))[ctx.rank :: ctx.world_size][:share]
    if cfg.mode == "implicit":
        assert data.lookup is not None
        ps, pc = (data.students, data.courses) if rows is None else (data.students[rows], data.courses[rows])
        neg = sample_negatives(ps, data.lookup, cfg.n_negatives, local).ravel()
        s = np.concatenate([ps, np.repeat(ps, cfg.n_negatives)])
        c = np.concatenate([pc, neg])
        y = np.zeros(len(s), dtype=np.float32)
        y[: len(ps)] = 1.0
        w = None
    else:
        assert data.grades is not None
        s, c, y, w = data.students, data.courses, data.grades, data.weights
        if rows is not None:
            s, c, y, w = s[rows], c[rows], y[rows], None if w is None else w[rows]
    perm = local.permutation(len(s))
    # One gather per epoch, then contiguous slices per batch.
    s_t = torch.from_numpy(s[perm]).to(device)
    c_t = torch.from_numpy(c[perm]).to(device)
    y_t = torch.from_numpy(y[perm]).to(device)
    w_t = None if w is None else torch.from_numpy(w[perm]).to(device)
    return s_t, c_t, y_t, w_t


def _loss_fn(cfg: TrainConfig) -> nn.Module:
    if cfg.mode == "implicit":
        return nn.BCEWithLogitsLoss(reduction="none")
    if cfg.loss == "huber":
        return nn.HuberLoss(reduction="none", delta=cfg.huber_delta)
    if cfg.loss == "l1":
        return nn.L1Loss(reduction="none")
    return nn.MSELoss(reduction="none")


@torch.no_grad()
def _validate(model: NCFModel, cfg: TrainConfig, val: _Validation) -> tuple[float, float]:
    """(metric, tie-breaker), larger is better: (−RMSE, 0) or (HR@10, NDCG@10) with sampled negatives."""
    model.eval()
    try:
        if cfg.mode == "explicit":
            assert val.grades is not None
            pred = torch.cat([torch.sigmoid(model(s, c)) for s, c in _batches(val.students, val.courses)])
            return -metrics.rmse(pred.cpu().numpy(), val.grades.cpu().numpy()), 0.0
        n, m = val.courses.shape
        s = val.students[:, None].expand(n, m).reshape(-1)
        scores = torch.cat([model(a, b) for a, b in _batches(s, val.courses.reshape(-1))]).reshape(n, m)
        ranks = metrics.sampled_ranks(scores[:, 0].cpu().numpy(), scores[:, 1:].cpu().numpy())
        return metrics.hit_rate(ranks, 10), metrics.ndcg(ranks, 10)
    finally:
        model.train()


def _batches(s: Tensor, c: Tensor, size: int = 1 << 18) -> Iterator[tuple[Tensor, Tensor]]:
    for i in range(0, len(s), size):
        yield s[i : i + size], c[i : i + size]


class BestEpoch:
    """Early stopping: keeps the weights of the epoch with the best validation score and says when ``patience``
    epochs in a row brought no improvement. Without validation every epoch is "best" (the last one is kept)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.score: tuple[float, ...] | None = None
        self.epoch = 0
        self.stale = 0
        self._state: dict[str, Tensor] | None = None

    def update(self, epoch: int, score: tuple[float, ...] | None, model: nn.Module) -> bool:
        """Record `epoch`'s score (higher is better); True when training should stop."""
        if score is None:
            self.epoch = epoch
            return False
        if self.score is None or score > self.score:
            self.score, self.epoch, self.stale = score, epoch, 0
            self._state = copy.deepcopy(model.state_dict())
            return False
        self.stale += 1
        return self.stale >= self.patience

    def restore(self, model: nn.Module) -> int:
        """Load the best epoch's weights into `model`; returns that epoch."""
        if self._state is not None:
            model.load_state_dict(self._state)
        return self.epoch


def log_epoch(phase: str, epoch: int, train_loss: float, metric: float | None, seconds: float, name: str) -> None:
    """One line per epoch under the progress bar."""
    val = "" if metric is None else f", val {name} {metric:.4f}"
    tqdm.write(f"{phase} epoch {epoch}: loss {train_loss:.4f}{val}, {seconds:.1f}s")


class _WithL2(nn.Module):
    """`forward` → (logits, embedding L2 or None) from one lookup, as a module so that DDP can wrap it."""

    def __init__(self, model: NCFModel, l2: bool) -> None:
        super().__init__()
        self.model, self.l2 = model, l2

    def forward(self, s: Tensor, c: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.model.forward_with_l2(s, c) if self.l2 else (self.model(s, c), None)


def _train(
    model: NCFModel,
    phase: str,
    cfg: TrainConfig,
    data: _TrainData,
    val: _Validation | None,
    rng: np.random.Generator,
    device: str,
    history: list[EpochStats],
    progress: bool,
    init_bias: bool = True,
    run: _Run | None = None,
) -> int:
    """Train one model in place with early stopping; returns the best epoch (1-based)."""
    assert cfg.epochs is not None and cfg.batch_size is not None and cfg.lr is not None
    run = run or _Run(progress=progress)
    ctx = run.ctx
    progress = run.progress
    if init_bias and cfg.mode == "explicit" and data.grades is not None:
        # Start the output at the mean grade, so early epochs fit the structure rather than the offset.
        mean = float(np.clip(data.grades.mean(), 0.01, 0.99))
        with torch.no_grad():
            model.out.bias.fill_(math.log(mean / (1.0 - mean)))
    # The fused kernel updates all parameters in one pass: ~3× faster steps on CPU, supported on CUDA too.
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay or 0.0, fused=True)
    loss_fn = _loss_fn(cfg)
    explicit = cfg.mode == "explicit"
    best = BestEpoch(cfg.patience)
    # DDP averages the gradients over ranks, so each rank takes its share of the global batch.
    net: nn.Module = _WithL2(model, bool(cfg.embedding_l2))
    batch_size = cfg.batch_size
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[torch.device(device).index] if "cuda" in device else None)
        batch_size = max(1, math.ceil(cfg.batch_size / ctx.world_size))
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        s, c, y, w = _epoch_tensors(cfg, data, rng, device, ctx, run.local)
        n_batches = math.ceil(len(s) / batch_size)
        bar = tqdm(
            total=n_batches, desc=f"{phase} {epoch}/{cfg.epochs}", disable=not progress, leave=False, unit="batch"
        )
        total = torch.zeros((), device=device)
        for j, i in enumerate(range(0, len(s), batch_size)):
            sb, cb, yb = s[i : i + batch_size], c[i : i + batch_size], y[i : i + batch_size]
            out, l2 = net(sb, cb)
            per_row = loss_fn(torch.sigmoid(out), yb) if explicit else loss_fn(out, yb)
            if w is not None:
                wb = w[i : i + batch_size]
                loss = (per_row * wb).sum() / wb.sum()
            else:
                loss = per_row.mean()
            if l2 is not None:
                loss = loss + cfg.embedding_l2 * l2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(sb)
            bar.update(1)
            if progress and j % 50 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", refresh=False)
        train_loss = distributed.all_mean(float(total) / len(s), device)
        score = None
        if val is not None:
            # One rank validates and all follow its decision, so every rank stops at the same epoch.
            score = distributed.broadcast_object(_validate(model, cfg, val) if ctx.is_main else None)
        metric = None if score is None else (-score[0] if explicit else score[0])
        seconds = time.perf_counter() - t0
        history.append(EpochStats(phase, epoch, train_loss, metric, seconds))
        if run.on_epoch is not None:
            run.on_epoch(history[-1], model)
        bar.set_postfix(loss=f"{train_loss:.4f}", **({} if metric is None else {"val": f"{metric:.4f}"}))
        bar.close()
        if progress:
            log_epoch(phase, epoch, train_loss, metric, seconds, "rmse" if explicit else "hr@10")
        if best.update(epoch, score, model):
            break
    return best.restore(model)
