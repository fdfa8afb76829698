"""What the plain (`training`) and the differentially private (`privacy`) training loops share: the rows to train
on and one epoch's shuffled tensors, the validation set and its score, early stopping on that score, the record
and log line of each epoch, the loss, the device and torch's seeding.

Every function takes a RESOLVED `TrainConfig` (no None fields) and keyword arguments past the first two.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from electives.data.interactions import Interactions, ItemLookup
from electives.data.sampling import sample_negatives
from electives.data.splits import check_no_overlap, validation_split
from electives.errors import DataError, ElectivesError
from electives.evaluation import metrics
from electives.models.config import TrainConfig
from electives.models.distributed import Context
from electives.models.ncf import NCFModel

__all__ = [
    "BestEpoch",
    "EpochLog",
    "EpochStats",
    "TrainingRows",
    "ValidationSet",
    "bar_disabled",
    "carve_validation",
    "choose_device",
    "epoch_groups",
    "epoch_tensors",
    "flushed_denormals",
    "loss_function",
    "prepare_training",
    "prepare_validation",
    "seeded_torch",
    "validation_metric_name",
    "validation_score",
]


@dataclass(frozen=True)
class EpochStats:
    phase: str  # "gmf", "mlp" (pre-training) or the trained model's name
    epoch: int
    train_loss: float
    val_metric: float | None  # validation RMSE (explicit, normalised units) or HR@10 (implicit)
    seconds: float


def validation_metric_name(mode: str) -> str:
    """What `EpochStats.val_metric` holds in `mode`: "rmse" (explicit, lower is better) or "hr@10"."""
    return "rmse" if mode == "explicit" else "hr@10"


# -- where and how torch runs ---------------------------------------------------------------------------------


def choose_device(name: str, ctx: Context | None = None) -> str:
    """The device `name` ("auto", "cpu", "cuda", "cuda:N") means for this process (its own GPU under torchrun)."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ElectivesError(f"device {name!r} requested but CUDA is not available")
    return (ctx or Context()).device(name)


@contextlib.contextmanager
def seeded_torch(device: str, seed: int) -> Iterator[None]:
    """torch's global RNG (CPU and `device`'s CUDA stream) seeded inside, the caller's own left as it was."""
    cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def flushed_denormals() -> Iterator[None]:
    """Subnormal floats (below ~1.2e-38) read and written as zero inside, as x86's FTZ/DAZ do, off again after:
    weights that an L2 term pulls towards zero turn subnormal, and every operation on them gets many times slower
    (ML-1M with --layer-l2 1e-4: 4.7 → 34 ms per step within an epoch). The flag is the calling thread's."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def loss_function(config: TrainConfig) -> nn.Module:
    """Per-row loss (reduction="none"): log loss on logits (implicit), else the configured loss on sigmoids."""
    if config.mode == "implicit":
        return nn.BCEWithLogitsLoss(reduction="none")
    if config.loss == "huber":
        return nn.HuberLoss(reduction="none", delta=config.huber_delta)
    if config.loss == "l1":
        return nn.L1Loss(reduction="none")
    return nn.MSELoss(reduction="none")


# -- training rows --------------------------------------------------------------------------------------------


@dataclass
class TrainingRows:
    """The rows a loop trains on, before any epoch's shuffling or negatives."""

    students: np.ndarray
    courses: np.ndarray
    grades: np.ndarray | None  # explicit targets
    weights: np.ndarray | None  # explicit per-row loss weights (imbalance="reweight")
    lookup: ItemLookup | None  # implicit: positives that negatives must avoid
    n_courses: int


def prepare_training(config: TrainConfig, data: Interactions, *, rng: np.random.Generator) -> TrainingRows:
    """Implicit: every enrolment. Explicit: the graded rows, low grades oversampled (with noise, from `rng`) or
    reweighted as `config.imbalance` says."""
    if config.mode == "implicit":
        lookup = data.item_lookup()
        s = np.repeat(np.arange(data.n_students, dtype=np.int64), lookup.counts())
        return TrainingRows(s, lookup.indices, None, None, lookup, data.n_courses)
    assert data.grades is not None
    keep = ~np.isnan(data.grades)
    s, c, g = data.students[keep], data.courses[keep], data.grades[keep].astype(np.float32)
    if len(s) == 0:
        raise DataError("no graded rows to train on")
    w = None
    low = g < config.low_grade
    if config.imbalance == "oversample" and low.any():
        copies = max(0, round(config.imbalance_factor) - 1)
        idx = np.repeat(np.flatnonzero(low), copies)
        noisy = np.clip(g[idx] + rng.normal(0.0, config.imbalance_noise, len(idx)), 0.0, 1.0).astype(np.float32)
        s, c, g = np.concatenate([s, s[idx]]), np.concatenate([c, c[idx]]), np.concatenate([g, noisy])
    elif config.imbalance == "reweight":
        w = np.where(low, config.imbalance_factor, 1.0).astype(np.float32)
    return TrainingRows(s, c, g, w, None, data.n_courses)


def epoch_tensors(
    config: TrainConfig,
    data: TrainingRows,
    *,
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
    if config.mode == "implicit":
        assert data.lookup is not None
        ps, pc = (data.students, data.courses) if rows is None else (data.students[rows], data.courses[rows])
        neg = sample_negatives(ps, data.lookup, config.n_negatives, local).ravel()
        s = np.concatenate([ps, np.repeat(ps, config.n_negatives)])
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


def epoch_groups(
    config: TrainConfig, data: TrainingRows, *, rng: np.random.Generator, device: str
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """One epoch as groups, for the row-wise step: every training row with (implicit) its own fresh negatives,
    the groups in shuffled order: students (P,), courses and targets (P, k), weights (P, k) or None, where
    k = 1 + n_negatives (implicit; the positive first) or 1 (explicit). The same pairs as :func:`epoch_tensors`
    draws, but a positive and its negatives share a batch, so the student's row is looked up once for all k."""
    s, c = data.students, data.courses
    if config.mode == "implicit":
        assert data.lookup is not None
        neg = sample_negatives(s, data.lookup, config.n_negatives, rng)
        courses = np.concatenate([c[:, None], neg], axis=1)
        targets = np.zeros(courses.shape, dtype=np.float32)
        targets[:, 0] = 1.0
        weights = None
    else:
        assert data.grades is not None
        courses, targets = c[:, None], data.grades[:, None]
        weights = None if data.weights is None else data.weights[:, None]
    perm = rng.permutation(len(s))
    put = torch.from_numpy
    return (
        put(s[perm]).to(device),
        put(np.ascontiguousarray(courses[perm])).to(device),
        put(np.ascontiguousarray(targets[perm])).to(device),
        None if weights is None else put(np.ascontiguousarray(weights[perm])).to(device),
    )


# -- validation -----------------------------------------------------------------------------------------------


@dataclass
class ValidationSet:
    """Validation rows on the device, ready to score every epoch."""

    students: Tensor
    courses: Tensor  # explicit: (V,), implicit: (V, 1 + val_negatives), positive first
    grades: Tensor | None


def carve_validation(
    config: TrainConfig, train: Interactions, validation: Interactions | None
) -> tuple[Interactions, Interactions | None]:
    """(rows to fit, validation rows): `validation` if given (checked for overlap), else a split of `config`'s
    kind carved from `train`, else none (validation="none")."""
    if validation is not None:
        check_no_overlap(train, validation)
        return train, validation
    if config.validation == "none":
        return train, None
    return validation_split(train, config.validation, config.val_fraction, config.seed)  # type: ignore[arg-type]


def prepare_validation(
    config: TrainConfig,
    *,
    fit_data: Interactions,
    validation: Interactions | None,
    train: Interactions,
    rng: np.random.Generator,
    device: str,
) -> ValidationSet | None:
    """The `validation` rows to score (None when there are none or none can be): graded rows (explicit), or each
    positive with `config.val_negatives` courses the student has in neither `fit_data` nor `validation`
    (implicit; `train` gives the catalogue)."""
    if validation is None:
        return None
    if config.mode == "explicit":
        assert validation.grades is not None
        keep = ~np.isnan(validation.grades)
        if not keep.any():
            return None
        return ValidationSet(
            torch.tensor(validation.students[keep], device=device),
            torch.tensor(validation.courses[keep], device=device),
            torch.tensor(validation.grades[keep], device=device),
        )
    # Negatives avoid everything the student has in train ∪ validation, as the test protocol does; a small
    # catalogue gets fewer negatives, and students with no untaken course are left out.
    lookup = fit_data.concat(validation).item_lookup()
    free = train.n_courses - lookup.counts()[validation.students]
    if not (free > 0).any():
        return None
    students, pos = validation.students[free > 0], validation.courses[free > 0]
    n_neg = min(config.val_negatives, int(free[free > 0].min()))
    neg = sample_negatives(students, lookup, n_neg, rng, unique=True)
    courses = np.concatenate([pos[:, None], neg], axis=1)
    return ValidationSet(torch.tensor(students, device=device), torch.tensor(courses, device=device), None)


@torch.no_grad()
def validation_score(model: NCFModel, config: TrainConfig, validation: ValidationSet) -> tuple[float, float]:
    """(metric, tie-breaker), larger is better: (−RMSE, 0) or (HR@10, NDCG@10) with sampled negatives."""
    model.eval()
    try:
        if config.mode == "explicit":
            assert validation.grades is not None
            pairs = _batches(validation.students, validation.courses)
            pred = torch.cat([torch.sigmoid(model(s, c)) for s, c in pairs])
            return -metrics.rmse(pred.cpu().numpy(), validation.grades.cpu().numpy()), 0.0
        n, m = validation.courses.shape
        s = validation.students[:, None].expand(n, m).reshape(-1)
        scores = torch.cat([model(a, b) for a, b in _batches(s, validation.courses.reshape(-1))]).reshape(n, m)
        ranks = metrics.sampled_ranks(scores[:, 0].cpu().numpy(), scores[:, 1:].cpu().numpy())
        return metrics.hit_rate(ranks, 10), metrics.ndcg(ranks, 10)
    finally:
        model.train()


def _batches(s: Tensor, c: Tensor, size: int = 1 << 18) -> Iterator[tuple[Tensor, Tensor]]:
    for i in range(0, len(s), size):
        yield s[i : i + size], c[i : i + size]


# -- early stopping and the epoch record ----------------------------------------------------------------------


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


@dataclass
class EpochLog:
    """A run's epochs: each one `record`ed is appended to `history`, passed to `on_epoch` (e.g. to time how
    long a target takes) and, with `progress`, written as one line under the progress bar."""

    mode: str
    history: list[EpochStats] = field(default_factory=list)
    progress: bool = True
    on_epoch: Callable[[EpochStats, NCFModel], None] | None = None

    def record(
        self,
        model: NCFModel,
        *,
        phase: str,
        epoch: int,
        train_loss: float,
        score: tuple[float, float] | None,
        seconds: float,
        label: str | None = None,
    ) -> EpochStats:
        """`score` is `validation_score`'s (None without validation); `label` names the phase in the log line."""
        metric = None if score is None else (-score[0] if self.mode == "explicit" else score[0])
        stats = EpochStats(phase, epoch, train_loss, metric, seconds)
        self.history.append(stats)
        if self.on_epoch is not None:
            self.on_epoch(stats, model)
        if self.progress:
            val = "" if metric is None else f", val {validation_metric_name(self.mode)} {metric:.4f}"
            tqdm.write(f"{label or phase} epoch {epoch}: loss {train_loss:.4f}{val}, {seconds:.1f}s")
        return stats


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a run with or without ``progress``: with it, the bar is drawn only on a terminal
    (None), so a piped or logged run gets the epoch lines without hundreds of KB of carriage-return frames."""
    return None if progress else True
