"""Differentially private training (DP-SGD with Opacus): NCF models whose weights bound what they reveal about
any one student.

The protected unit is a STUDENT, not a grade: one training example is a student's whole record (all their graded
rows, or in implicit mode all their enrolments with that epoch's sampled negatives), padded to a fixed length.
Per step, each student is included independently with probability ``q = batch_size / n_students`` (Poisson
sampling); the gradient of each included student's summed loss is clipped to L2 norm ``max_grad_norm`` (Opacus
per-sample gradients for ``nn.Embedding``/``nn.Linear``), and Gaussian noise of std ``noise_multiplier ·
max_grad_norm`` is added to the sum. The noise multiplier is calibrated (a binary search over the Opacus PRV
accountant by default, RDP on request) so that the configured number of epochs spends at most ``(ε, δ)``; training never runs
more steps than that, and the spent ε (from the accountant, for the steps actually run) is reported. Row-level
DP would protect one grade but leave a student with 30 grades at 30·ε; student-level DP protects the record.

What the guarantee does NOT cover (post-processing is free, but these use data outside the DP mechanism):
- the validation split: its rows are held out of training (never in a gradient) and are therefore not counted in
  ε; they choose the best epoch's checkpoint (among checkpoints that are each DP) and give the validation metrics
  and the conformal interval stored in the manifest. Those figures describe the validation students non-privately.
- the id maps (pseudonyms of the students trained on, the course codes) in the manifest.
In explicit mode the output bias starts at the mean grade released once with Gaussian noise (``MEAN_NOISE``),
accounted together with the steps; the plain trainer's exact training mean would not be private.

The sampling and noise randomness must be secret: if an attacker could replay it, subsampling would not amplify
privacy and the noise could be subtracted. ``fit_private`` therefore draws them from OS entropy unless a
``noise_seed`` is given (tests and benchmarks only; it is never stored). ``TrainConfig.seed`` still fixes the
initial weights and the validation split.
"""

from __future__ import annotations

import math
import secrets
import time
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from electives.data.interactions import Interactions
from electives.data.sampling import sample_negatives
from electives.errors import DataError, ElectivesError
from electives.models.epochs import (
    BestEpoch,
    EpochLog,
    TrainingRows,
    ValidationSet,
    bar_disabled,
    carve_validation,
    choose_device,
    loss_function,
    prepare_training,
    prepare_validation,
    seeded_torch,
    validation_metric_name,
    validation_score,
)
from electives.models.ncf import NCFModel, build_model
from electives.models.training import NCF, TrainConfig

__all__ = ["DP_DEFAULTS", "PrivacyConfig", "PrivacyReport", "default_delta", "fit_private", "private_config"]

Accountant = Literal["prv", "rdp"]

# DP-specific defaults for TrainConfig fields left None (before the mode's own defaults apply): batches count
# STUDENTS; fewer epochs than plain training because every epoch spends budget, and a larger learning rate
# because the clipped, noisy gradients are small.
# DP-SGD's own per-student loop is dense autograd with the paper's learned GMF output and no layer L2, whatever the
# mode's defaults say (`private_config` refuses other values given explicitly).
_PLAIN = {"training_step": "dense", "gmf_output": "learned", "layer_l2": 0.0}
DP_DEFAULTS: dict[str, dict[str, Any]] = {
    "explicit": {"batch_size": 128, "epochs": 15, "lr": 1e-2, **_PLAIN},
    # DP-SGD's budgets were measured with 4 negatives and L2 1e-3 (the plain defaults before 8 and 3e-4).
    "implicit": {"batch_size": 128, "epochs": 10, "lr": 1e-2, "n_negatives": 4, "embedding_l2": 1e-3, **_PLAIN},
}


# Noise multiplier of the one Gaussian release of Σ (each student's mean normalised grade, sensitivity 1) that
# starts the output bias near the mean grade: the mean is off by N(0, (20/n)²), 0.01 for 2,000 students, and the
# release costs almost nothing (its RDP is α/800) while saving the many noisy steps that would find the offset.
MEAN_NOISE = 20.0


def default_delta(n_students: int) -> float:
    """δ = min(1e-5, n^-1.1) for n students (the protected units).

    δ is the probability that the ε bound fails outright, so it must be well below 1/n (a mechanism that
    publishes one random student's record whole has δ = 1/n); n^-1.1 stays polynomially below 1/n as n grows,
    and the 1e-5 cap keeps it small for the few hundred students of a small college (443 → 1e-5, not 1.2e-3)."""
    if n_students < 1:
        raise DataError("no students to train on")
    return min(1e-5, float(n_students) ** -1.1)


@dataclass(frozen=True)
class PrivacyConfig:
    """The privacy budget. ``delta=None`` → :func:`default_delta` of the number of students trained on."""

    epsilon: float
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: Accountant = "prv"

    def __post_init__(self) -> None:
        if not (isinstance(self.epsilon, int | float) and math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ElectivesError(
                f"privacy budget ε must be a finite number greater than 0, got {self.epsilon!r} "
                "(train without a budget for a non-private model)"
            )
        if self.delta is not None and not 0 < self.delta < 1:
            raise ElectivesError(f"privacy δ must be between 0 and 1 (exclusive), got {self.delta!r}")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ElectivesError(f"max_grad_norm (clipping bound C) must be greater than 0, got {self.max_grad_norm!r}")
        if self.accountant not in ("prv", "rdp"):
            raise ElectivesError(f"accountant must be 'prv' or 'rdp', not {self.accountant!r}")


@dataclass(frozen=True)
class PrivacyReport:
    """What a DP training run spent; ``to_dict()`` is stored in the manifest under ``"privacy"``."""

    epsilon: float  # spent, for the steps actually run (≤ target_epsilon)
    delta: float
    target_epsilon: float
    max_grad_norm: float
    noise_multiplier: float
    accountant: str
    sample_rate: float
    steps: int
    planned_steps: int
    mean_noise_multiplier: float | None = None  # the noisy mean grade's Gaussian (explicit mode), None if none
    unit: str = "student"
    noise_source: str = "os-entropy"  # "seeded" only in tests/benchmarks: then the guarantee does not hold

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["epsilon"] = round(self.epsilon, 4)
        return out


def fit_private(
    train: Interactions,
    config: TrainConfig,
    privacy: PrivacyConfig,
    *,
    validation: Interactions | None = None,
    progress: bool = True,
    noise_seed: int | None = None,
) -> tuple[NCF, PrivacyReport]:
    """DP-SGD counterpart of :func:`electives.models.training.fit` (same validation and early stopping); see the module
    docstring. Returns the fitted model (save/load/recommend as any other) and what the run spent."""
    cfg = private_config(config)
    if cfg.mode == "explicit" and train.grades is None:
        raise DataError("explicit training needs grades; these interactions have none (use mode='implicit')")
    device = choose_device(cfg.device)
    secret = noise_seed if noise_seed is not None else secrets.randbits(63)
    with seeded_torch(device, cfg.seed):
        rng = np.random.default_rng(cfg.seed)
        fit_data, val_data = carve_validation(cfg, train, validation)
        val = prepare_validation(cfg, fit_data=fit_data, validation=val_data, train=train, rng=rng, device=device)
        records = _Records.build(cfg, prepare_training(cfg, fit_data, rng=rng), fit_data.n_students)
        plan = _Plan.make(cfg, privacy, records.n)
        dims = (cfg.gmf_dim, cfg.mlp_dim, cfg.mlp_layers, cfg.dropout)
        model = build_model(cfg.model, train.n_students, train.n_courses, *dims).to(device)
        mechanism = _Mechanism.attach(model, cfg, privacy, plan, secret=secret, device=device)
        if plan.prefix:
            mechanism.start_at_noisy_mean(model, records, secret=secret)
        log = EpochLog(cfg.mode, progress=progress)
        with warnings.catch_warnings():
            # Inputs are indices, so no input needs a gradient; the hooks still see every layer's output grads.
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            best = _train_private(model, mechanism, records=records, validation=val, rng=rng, log=log)
        spent, steps = mechanism.detach(model)
    model.eval()
    report = PrivacyReport(
        epsilon=spent,
        delta=plan.delta,
        target_epsilon=float(privacy.epsilon),
        max_grad_norm=float(privacy.max_grad_norm),
        noise_multiplier=float(plan.sigma),
        accountant=privacy.accountant,
        sample_rate=float(plan.sample_rate),
        steps=steps,
        planned_steps=int(plan.planned_steps),
        mean_noise_multiplier=MEAN_NOISE if plan.prefix else None,
        noise_source="os-entropy" if noise_seed is None else "seeded",
    )
    fitted = NCF.trained(
        model,
        cfg,
        history=log.history,
        best_epoch=best,
        val_metric_name=validation_metric_name(cfg.mode),
        train_fingerprint=train.fingerprint(),
        device=device,
    )
    return fitted, report


def private_config(config: TrainConfig) -> TrainConfig:
    """`config` resolved for DP training: DP_DEFAULTS for the fields left None (then the mode's), no refit."""
    cfg = replace(
        config, **{k: v for k, v in DP_DEFAULTS[config.mode].items() if getattr(config, k) is None}
    ).resolved()
    if cfg.pretrain:
        raise ElectivesError("DP training does not support --pretrain (each pre-training phase would spend budget)")
    for name, plain in _PLAIN.items():
        if getattr(cfg, name) != plain:
            flag = "--" + name.replace("_", "-")
            raise ElectivesError(f"DP training does not support {flag} {getattr(cfg, name)} (only {plain})")
    # A refit would be a second private training run: twice the budget for the same guarantee.
    return replace(cfg, refit=False)


@dataclass(frozen=True)
class _Plan:
    """The run's privacy arithmetic, fixed before training: how often a student is sampled, for how many steps,
    and the noise that keeps those steps (after the noisy mean's release, `prefix`) within the budget."""

    n: int  # students (protected units) with training rows
    delta: float
    sample_rate: float
    steps_per_epoch: int
    planned_steps: int
    prefix: list[tuple[float, float, int]]  # (noise multiplier, sample rate, steps) released before training
    sigma: float

    @classmethod
    def make(cls, cfg: TrainConfig, privacy: PrivacyConfig, n: int) -> _Plan:
        assert cfg.epochs is not None and cfg.batch_size is not None
        if n < 2:
            raise DataError(f"DP training needs at least 2 students with training rows, got {n}")
        delta = privacy.delta if privacy.delta is not None else default_delta(n)
        sample_rate = min(1.0, cfg.batch_size / n)
        steps_per_epoch = max(1, round(1 / sample_rate))
        planned = cfg.epochs * steps_per_epoch
        # Explicit mode starts the output at a noisy mean grade (one Gaussian release, accounted with the steps).
        prefix = [(MEAN_NOISE, 1.0, 1)] if cfg.mode == "explicit" else []
        sigma = _calibrate(privacy, delta, sample_rate, planned, prefix)
        return cls(n, delta, sample_rate, steps_per_epoch, planned, prefix, sigma)


@dataclass(frozen=True)
class _Mechanism:
    """DP-SGD around one model: per-student gradients (Opacus hooks), the clipping and noising optimiser, the
    accountant and the secret Poisson sampler."""

    config: TrainConfig
    plan: _Plan
    device: str
    gsm: Any  # opacus GradSampleModule
    opt: Any  # opacus DPOptimizer
    accountant: Any
    sampler: np.random.Generator

    @classmethod
    def attach(
        cls, model: NCFModel, cfg: TrainConfig, privacy: PrivacyConfig, plan: _Plan, *, secret: int, device: str
    ) -> _Mechanism:
        from opacus.accountants import create_accountant
        from opacus.grad_sample import GradSampleModule
        from opacus.optimizers import DPOptimizer

        assert cfg.lr is not None
        gsm = GradSampleModule(model, loss_reduction="mean")
        base = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay or 0.0)
        opt = DPOptimizer(
            base,
            noise_multiplier=plan.sigma,
            max_grad_norm=privacy.max_grad_norm,
            expected_batch_size=max(1, round(plan.sample_rate * plan.n)),
            loss_reduction="mean",
            generator=torch.Generator(device=device).manual_seed(secret),
        )
        accountant = create_accountant(mechanism=privacy.accountant)
        sampler = np.random.default_rng(secret)  # Poisson sampling: secret, like the noise
        return cls(cfg, plan, device, gsm, opt, accountant, sampler)

    def start_at_noisy_mean(self, model: NCFModel, records: _Records, *, secret: int) -> None:
        """Set the output bias to the noisy mean grade and account for its release."""
        noise = np.random.default_rng(secret + 1).normal(0.0, MEAN_NOISE)
        mean = (records.student_means().sum() + noise) / records.n
        with torch.no_grad():
            m = float(np.clip(mean, 0.05, 0.95))
            model.out.bias.fill_(math.log(m / (1.0 - m)))
        self.accountant.history.extend(self.plan.prefix)

    def detach(self, model: NCFModel) -> tuple[float, int]:
        """Remove the hooks and per-sample gradients; returns (ε spent, training steps run)."""
        self.gsm.remove_hooks()
        for p in model.parameters():
            p.grad_sample = None
            p.grad = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spent = float(self.accountant.get_epsilon(delta=self.plan.delta)) if self.accountant.history else 0.0
        steps = sum(k for _, _, k in self.accountant.history) - len(self.plan.prefix)
        return spent, int(steps)


def _calibrate(
    privacy: PrivacyConfig, delta: float, sample_rate: float, steps: int, prefix: list[tuple[float, float, int]]
) -> float:
    """The smallest noise multiplier (to 1%, binary search as Opacus's get_noise_multiplier) with which `prefix`
    releases and then `steps` Poisson-sampled steps spend at most ε."""
    from opacus.accountants import create_accountant

    accountant = create_accountant(mechanism=privacy.accountant)

    def spent(sigma: float) -> float:
        accountant.history = [*prefix, (sigma, sample_rate, steps)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus warns about its own numerics for tiny sample counts
            try:
                return float(accountant.get_epsilon(delta=delta))
            except (MemoryError, OverflowError, ValueError):
                # The PRV accountant's grid explodes for very little noise (huge budgets): treat as over budget.
                return math.inf

    low, high = 0.0, 10.0
    while spent(high) > privacy.epsilon:
        low, high = high, 2 * high
        if high > 1e6:
            raise ElectivesError(f"no noise level reaches ε = {privacy.epsilon:g} with δ = {delta:g}; raise the budget")
    while high - low > 0.01 * high:
        mid = (low + high) / 2
        if spent(mid) > privacy.epsilon:
            low = mid
        else:
            high = mid
    return high


# -- per-student records --------------------------------------------------------------------------------------


@dataclass
class _Records:
    """Training rows grouped by student and padded to the longest record: the (students, length) tensors that
    make one student one Opacus sample."""

    students: np.ndarray  # (n,) student indices that have training rows
    courses: np.ndarray  # (n, L) course indices, padding 0
    targets: np.ndarray  # (n, L) float32 targets (explicit: normalised grades; implicit: 1)
    weights: np.ndarray  # (n, L) float32 row weights, 0 on padding
    lookup: Any  # implicit: positives the negatives avoid
    row_scale: float  # mean rows per student: per-student loss = Σ rows / row_scale (≈ a row mean overall)

    @property
    def n(self) -> int:
        return len(self.students)

    def student_means(self) -> np.ndarray:
        """Each student's (weighted) mean target, in [0, 1]."""
        return (self.targets * self.weights).sum(1) / np.maximum(self.weights.sum(1), 1e-12)

    @classmethod
    def build(cls, cfg: TrainConfig, data: TrainingRows, n_students: int) -> _Records:
        if cfg.mode == "implicit":
            targets = np.ones(len(data.students), dtype=np.float32)
        else:
            assert data.grades is not None
            targets = data.grades
        w = data.weights if data.weights is not None else np.ones(len(data.students), dtype=np.float32)
        order = np.argsort(data.students, kind="stable")
        s, c, y, w = data.students[order], data.courses[order], targets[order], w[order]
        counts = np.bincount(s, minlength=n_students)
        present = np.flatnonzero(counts)
        length = int(counts.max())
        starts = np.concatenate([[0], np.cumsum(counts)])[s]
        pos = np.arange(len(s)) - starts  # position within the student's record
        row = np.searchsorted(present, s)
        courses = np.zeros((len(present), length), dtype=np.int64)
        tg = np.zeros((len(present), length), dtype=np.float32)
        wt = np.zeros((len(present), length), dtype=np.float32)
        courses[row, pos], tg[row, pos], wt[row, pos] = c, y, w
        per_row = 1 + cfg.n_negatives if cfg.mode == "implicit" else 1
        scale = float(counts[present].mean()) * per_row
        return cls(present.astype(np.int64), courses, tg, wt, data.lookup, scale)

    def epoch(self, cfg: TrainConfig, rng: np.random.Generator, device: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(students (n,), courses (n, L'), targets (n, L'), weights (n, L')) on the device; implicit mode
        appends each enrolment's negatives, drawn afresh (they avoid only the same student's enrolments, so a
        student's example depends on nothing but their own record)."""
        c, y, w = self.courses, self.targets, self.weights
        if cfg.mode == "implicit":
            n, length = c.shape
            k = cfg.n_negatives
            neg = sample_negatives(np.repeat(self.students, length * k), self.lookup, 1, rng).reshape(n, length * k)
            # Each negative weighs like a training row, as in fit(); those of padding slots get weight 0.
            neg_w = np.repeat(w, k, axis=1)
            c = np.concatenate([c, neg], axis=1)
            y = np.concatenate([y, np.zeros_like(neg, dtype=np.float32)], axis=1)
            w = np.concatenate([w, neg_w], axis=1)
        return (
            torch.from_numpy(self.students).to(device),
            torch.from_numpy(c).to(device),
            torch.from_numpy(y).to(device),
            torch.from_numpy(np.ascontiguousarray(w)).to(device),
        )


# -- the loop ---------------------------------------------------------------------------------------------------


def _train_private(
    model: NCFModel,
    mechanism: _Mechanism,
    *,
    records: _Records,
    validation: ValidationSet | None,
    rng: np.random.Generator,
    log: EpochLog,
) -> int:
    """Poisson-sampled DP-SGD steps with early stopping on the validation split; returns the best epoch."""
    cfg = mechanism.config
    assert cfg.epochs is not None and cfg.patience is not None
    best = BestEpoch(cfg.patience)
    mechanism.gsm.train()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss = _private_epoch(
            model, mechanism, records, rng, desc=f"dp {epoch}/{cfg.epochs}", progress=log.progress
        )
        score = validation_score(model, cfg, validation) if validation is not None else None
        seconds = time.perf_counter() - t0
        phase = "dp-" + cfg.model
        log.record(model, phase=phase, epoch=epoch, train_loss=train_loss, score=score, seconds=seconds, label="dp")
        if best.update(epoch, score, model):
            break
    return best.restore(model)


def _private_epoch(
    model: NCFModel, mechanism: _Mechanism, records: _Records, rng: np.random.Generator, *, desc: str, progress: bool
) -> float:
    """One epoch's Poisson-sampled steps; returns the mean per-student loss of the students sampled."""
    cfg, plan, device = mechanism.config, mechanism.plan, mechanism.device
    loss_fn = loss_function(cfg)
    explicit = cfg.mode == "explicit"
    s_all, c_all, y_all, w_all = records.epoch(cfg, rng, device)
    total, seen = 0.0, 0
    bar = tqdm(total=plan.steps_per_epoch, desc=desc, disable=bar_disabled(progress), leave=False)
    for _ in range(plan.steps_per_epoch):
        pick = torch.from_numpy(np.flatnonzero(mechanism.sampler.random(records.n) < plan.sample_rate)).to(device)
        mechanism.opt.zero_grad(set_to_none=True)
        if len(pick):
            s = s_all[pick, None].expand(-1, c_all.shape[1])
            c, y, w = c_all[pick], y_all[pick], w_all[pick]
            out = mechanism.gsm(s, c)
            per_row = loss_fn(torch.sigmoid(out), y) if explicit else loss_fn(out, y)
            per_student = (per_row * w).sum(1) / records.row_scale
            if cfg.embedding_l2:
                per_student = per_student + cfg.embedding_l2 * _embedding_l2(model, s, c, w > 0)
            per_student.mean().backward()
            mechanism.opt.step()
            total += float(per_student.detach().sum())
            seen += len(pick)
        # An empty Poisson batch still counts as a step (noise only): counting it keeps ε an upper bound.
        mechanism.accountant.step(noise_multiplier=plan.sigma, sample_rate=plan.sample_rate)
        bar.update(1)
    bar.close()
    return total / max(1, seen)


def _embedding_l2(model: torch.nn.Module, s: Tensor, c: Tensor, mask: Tensor) -> Tensor:
    """Per student: Σ ‖e‖² over the embedding rows their real (unpadded) pairs use."""
    total = torch.zeros(s.shape[0], device=s.device)
    for part in (getattr(model, "gmf", None), getattr(model, "mlp", None)):
        if part is not None:
            e = part.student(s).pow(2).sum(-1) + part.course(c).pow(2).sum(-1)
            total = total + (e * mask).sum(1)
    return total / mask.sum(1).clamp(min=1)
