"""Next-term model selection: which family (and which of a few settings) serves this university best.

The validation split is each student's latest term in the training data (students with one term stay in the fit
part; data without terms falls back to a random tenth): what a deployed model does is predict next term, and on
real grade data that split ranks the families as the test part does while a random share of rows does not
(issue 13: it prefers NeuMF on college_grades, where NeuMF then loses to a bias model).

Candidates (explicit mode), fitted on the fit part and scored by RMSE on the validation rows:

- the baselines worth serving × a small grid of their regularisation: ``bias`` (student/course pseudo-counts),
  ``mf`` (L2), ``knn`` (neighbours and shrinkage) — a fraction of a second to a few seconds each;
- ``neumf`` at the configured sizes and a small one, ``gmf`` and ``mlp``, early-stopped on the validation rows;
- ``ensemble``: the NeuMF that did better plus N−1 more seeds (N by data size, :func:`ensemble_size`);
- ``blend``: ``w·A + (1−w)·B`` of the best NCF candidate (the ensemble included) and the best baseline, ``w`` on a
  0.1 grid chosen on the validation rows; it only competes with 0 < w < 1 (otherwise it *is* one of them).

The lowest validation RMSE wins; ties go to the candidate tried first (the simpler one). The winner is then fitted
again on every training row (NCF: for the epochs early stopping chose, each member of an ensemble its own).
A candidate that fails is reported with its reason and the others go on. :meth:`Selection.to_dict` is what the
manifest stores as ``model_selection``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from electives.data.interactions import Interactions
from electives.data.splits import next_term_validation
from electives.errors import DataError
from electives.models.baselines import BiasModel, ItemKNN, MatrixFactorization
from electives.models.config import EXPLICIT_FAMILY_NAMES, NCF_NAMES, TrainConfig
from electives.models.ensemble import Blend, Ensemble, best_weight, ensemble_size
from electives.models.interface import Model
from electives.models.training import fit

__all__ = [
    "Selection",
    "Tried",
    "candidate_specs",
    "conclude",
    "more_seeds",
    "reason",
    "refit_ncf",
    "select",
    "winner_of",
]

BASELINE_FAMILIES = ("bias", "mf", "knn")
# A NeuMF for small registrars (a few thousand grades), next to the configured sizes.
SMALL_NEUMF = {"gmf_dim": 16, "mlp_dim": 8, "mlp_layers": (16, 8)}
SMALL_DATA = 20_000  # training rows up to which the full grid is tried (fits take seconds there)
# How each validation split reads in the manifest and on the model page.
VALIDATION_WORDS = {"temporal": "each student's latest term", "loo": "each student's newest course"}


@dataclass(frozen=True)
class Spec:
    """One candidate: a baseline made by ``make`` or an NCF model trained with ``config``."""

    name: str
    family: str
    settings: dict[str, Any]
    make: Callable[[], Model] | None = None
    config: TrainConfig | None = None


@dataclass(frozen=True)
class Tried:
    """What one candidate did on validation: the selection metric's ``value`` (None when it failed) — RMSE of the
    normalised grade (``val_rmse``) or, in the implicit mode, a ranking figure — its fit seconds, and (implicit)
    every ranking figure measured (``figures``)."""

    name: str
    family: str
    settings: dict[str, Any]
    value: float | None
    seconds: float
    error: str | None = None
    metric: str = "val_rmse"
    figures: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None  # why it was not fitted (not a failure)

    def to_dict(self, scale_range: float = 1.0) -> dict[str, Any]:
        scaled = self.value is not None and self.metric == "val_rmse"  # RMSE in the scale's points
        return {
            "name": self.name,
            "family": self.family,
            "settings": self.settings,
            self.metric: self.value * scale_range if scaled else self.value,  # type: ignore[operator]
            **{k: v for k, v in self.figures.items() if k != self.metric},
            "seconds": round(self.seconds, 2),
            **({"error": self.error} if self.error else {}),
            **({"skipped": self.skipped} if self.skipped else {}),
        }


@dataclass
class Selection:
    """The winner refitted on every training row (``model``), as fitted on the fit part (``validated``: its
    validation metrics and calibration come from this one), and every candidate tried."""

    model: Model
    validated: Model
    chosen: str
    family: str
    split: str
    fit_data: Interactions
    validation: Interactions
    candidates: list[Tried] = field(default_factory=list)
    seconds: float = 0.0
    refit_error: str | None = None
    metric: str = "val_rmse"

    def to_dict(self, scale_range: float = 1.0) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "validation": VALIDATION_WORDS.get(self.split, f"{self.split} rows"),
            "validation_rows": len(self.validation),
            "chosen": self.chosen,
            "family": self.family,
            "seconds": round(self.seconds, 2),
            "candidates": [c.to_dict(scale_range) for c in self.candidates],
            **({"refit_error": self.refit_error} if self.refit_error else {}),
        }

    def failed(self) -> list[Tried]:
        return [c for c in self.candidates if c.error]


def candidate_specs(base: TrainConfig, families: Sequence[str] = EXPLICIT_FAMILY_NAMES, rows: int = 0) -> list[Spec]:
    """The single-model candidates of ``families`` (ensemble and blend are built from these by :func:`select`),
    baselines first: they are cheap, and a tie goes to the candidate tried first. Above :data:`SMALL_DATA` rows
    the grid is trimmed (one MF, no small NeuMF, and :func:`ensemble_size` gives 2 members) to keep the whole
    selection under 5× one NeuMF fit; a small NeuMF is what small registrars need."""
    base = replace(base.resolved(), refit=False)
    small_data = rows <= SMALL_DATA
    specs: list[Spec] = []
    if "blend" in families and not set(BASELINE_FAMILIES) & set(families):
        families = (*families, "bias")  # a blend needs a baseline to blend with
    # Each baseline's settings are also its constructor's keywords (``make``), so the two cannot drift apart.
    if "bias" in families:
        for rs, rc in ((2.0, 2.0), (5.0, 3.0), (15.0, 10.0), (40.0, 25.0)):
            bias = {"reg_student": rs, "reg_course": rc}
            specs.append(Spec(f"bias(λu={rs:g},λc={rc:g})", "bias", bias, make=partial(BiasModel, **bias)))
    if "knn" in families:
        for k, shrink in ((20, 10.0), (200, 100.0)):
            knn = {"k": k, "shrink": shrink}
            specs.append(Spec(f"knn(k={k},shrink={shrink:g})", "knn", knn, make=partial(ItemKNN, **knn)))
    if "mf" in families:
        for reg in (0.02, 0.1) if small_data else (0.05,):
            # Batches of 256, not 64: a quarter of the SGD steps, whose per-step overhead is most of MF's
            # time (demo university: 0.5 s instead of 1.8 s, validation RMSE 8.677 vs 8.678 points).
            mf = {"factors": 32, "reg": reg, "batch_size": 256, "seed": base.seed}
            specs.append(Spec(f"mf(λ={reg:g})", "mf", mf, make=partial(MatrixFactorization, **mf)))
    needs_neumf = "neumf" in families or "ensemble" in families or "blend" in families
    if needs_neumf:
        specs.append(Spec("neumf", "neumf", _sizes(base), config=replace(base, model="neumf")))
        small = replace(base, model="neumf", **SMALL_NEUMF)
        if small_data and _sizes(small) != _sizes(base):
            specs.append(Spec("neumf-small", "neumf", _sizes(small), config=small))
    for name in ("gmf", "mlp"):
        if name in families:
            specs.append(Spec(name, name, _sizes(replace(base, model=name)), config=replace(base, model=name)))
    return specs


def _sizes(cfg: TrainConfig) -> dict[str, Any]:
    if cfg.model == "gmf":
        return {"gmf_dim": cfg.gmf_dim}
    if cfg.model == "mlp":
        return {"mlp_dim": cfg.mlp_dim, "mlp_layers": list(cfg.mlp_layers or ())}
    return {"gmf_dim": cfg.gmf_dim, "mlp_dim": cfg.mlp_dim, "mlp_layers": list(cfg.mlp_layers or ())}


@dataclass
class _Fitted:
    """A candidate fitted on the fit part, its validation predictions, and how to fit it again on everything."""

    family: str
    model: Model
    predictions: np.ndarray
    again: Callable[[], Model]


def select(
    train: Interactions,
    base: TrainConfig | None = None,
    *,
    families: Sequence[str] = EXPLICIT_FAMILY_NAMES,
    ensemble_members: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    scale_range: float = 1.0,
) -> Selection:
    """Choose among ``families`` on next-term validation and refit the winner on every row of ``train``.

    ``base``: the NCF candidates' settings (sizes, learning rate, epochs …; ``model`` is ignored).
    ``ensemble_members``: N, or None for :func:`ensemble_size`. ``scale_range`` only scales the RMSE in ``log``.
    Raises DataError when no candidate could be fitted (the message lists each one's reason).
    """
    cfg = replace((base or TrainConfig()).resolved(), refit=False)
    if cfg.mode != "explicit" or train.grades is None:
        raise DataError("next-term selection compares predicted grades; it needs graded (explicit) data")
    unknown = sorted(set(families) - set(EXPLICIT_FAMILY_NAMES))
    if unknown:
        raise DataError(
            f"model family {', '.join(unknown)} predicts no grades; choose from {', '.join(EXPLICIT_FAMILY_NAMES)}"
        )
    started = time.perf_counter()
    fit_part, val, kind = next_term_validation(train, cfg.val_fraction, cfg.seed)
    actual = np.asarray(val.grades, dtype=np.float64)
    run = _Run(train, fit_part, val, actual, progress, log, scale_range)
    if log is not None:
        shown = "each student's latest term" if kind == "temporal" else f"a random {cfg.val_fraction:.0%}"
        log(f"choosing a model on {len(val):,} validation rows ({shown}), fitted on {len(fit_part):,}")

    for spec in candidate_specs(cfg, families, len(train)):
        run.try_spec(spec)
    if "ensemble" in families:
        run.try_ensemble(cfg, ensemble_members or ensemble_size(len(train)))
    if "blend" in families:
        run.try_blend(forced=tuple(families) == ("blend",))

    # Only the families asked for compete (neumf is fitted for an ensemble or a blend even when not asked for).
    best = winner_of(run.tried, families, run.fitted, lowest=True)
    winner = run.fitted[best.name]
    if log is not None:
        log(f"chose {best.name} (validation RMSE {best.value * scale_range:.4g}); fitting it again on all rows")  # type: ignore[operator]
    return conclude(
        Selection(winner.model, winner.model, best.name, winner.family, kind, fit_part, val, run.tried),
        again=winner.again,
        started=started,
        log=log,
    )


def winner_of(tried: Sequence[Tried], families: Sequence[str], kept: Container[str], *, lowest: bool) -> Tried:
    """The best of the candidates of ``families`` still ``kept`` (the first of equals): the lowest value, or the
    highest; a DataError naming each failure when none could be fitted."""
    eligible = [t for t in tried if t.value is not None and t.family in families and t.name in kept]
    if not eligible:
        reasons = "; ".join(f"{t.name}: {t.error}" for t in tried if t.error) or "no candidates"
        raise DataError(f"no model could be fitted for selection ({reasons})")
    pick = min if lowest else max  # both keep the first of equals
    return pick(eligible, key=lambda t: t.value)  # type: ignore[arg-type, return-value]


def conclude(
    chosen: Selection, *, again: Callable[[], Model], started: float, log: Callable[[str], None] | None
) -> Selection:
    """``chosen`` (whose ``model`` is still the one ``validated``) with its winner fitted again on every row by
    ``again``, and the seconds since ``started``. When the refit fails, the winner as fitted on the fit part
    serves (it has seen fewer rows, which the manifest says, with the reason)."""
    try:
        model, error = again(), None
    except Exception as exc:
        model, error = chosen.validated, reason(exc)
        if log is not None:
            log(f"refitting {chosen.chosen} on all rows failed ({error}); serving it as fitted on the fit part")
    return replace(chosen, model=model, refit_error=error, seconds=time.perf_counter() - started)


def refit_ncf(model: Any, train: Interactions, *, progress: bool = False) -> Model:
    """An NCF candidate's configuration and seed on every training row, for the epochs early stopping chose (a
    fixed count, no validation left to stop on). ``training.refit`` would train on fit part ∪ validation, which
    lacks the older attempts of retaken courses and is another set of rows than the one the caller has."""
    config = replace(model.config, epochs=max(1, int(model.best_epoch)), validation="none", refit=False)
    return fit(train, config, progress=progress)  # type: ignore[return-value]


def more_seeds(first: Any, fit_part: Interactions, size: int, *, progress: bool = False) -> tuple[list[Model], int]:
    """The ``size − 1`` NCF members an ensemble adds to ``first`` (a fitted NCF): its configuration with the next
    seeds, trained for the epochs ``first``'s early stopping chose — no validation pass per epoch and no patience
    epochs past the best, so each costs about 70% of a NeuMF fit. Returns them and that epoch count."""
    config = first.config
    epochs = max(1, int(getattr(first, "best_epoch", 0) or config.epochs or 1))
    members = [
        fit(fit_part, replace(config, seed=config.seed + i, epochs=epochs, validation="none"), progress=progress)
        for i in range(1, size)
    ]
    return members, epochs  # type: ignore[return-value]


def reason(exc: BaseException) -> str:
    """How a failed candidate is reported: the exception's type and message."""
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Run:
    """One selection's state: what was tried, and the fitted candidates by name."""

    train: Interactions  # every row: what the winner is fitted on again
    fit_part: Interactions
    val: Interactions
    actual: np.ndarray
    progress: bool
    log: Callable[[str], None] | None
    scale_range: float
    tried: list[Tried] = field(default_factory=list)
    fitted: dict[str, _Fitted] = field(default_factory=dict)

    def record(self, tried: Tried) -> None:
        self.tried.append(tried)
        if self.log is None:
            return
        if tried.error:
            self.log(f"  {tried.name:<26} failed: {tried.error}")
        else:
            assert tried.value is not None
            self.log(f"  {tried.name:<26} val_rmse {tried.value * self.scale_range:.5g}  ({tried.seconds:.1f} s)")

    def rmse(self, predictions: np.ndarray) -> float:
        return float(np.sqrt(np.mean((np.asarray(predictions, dtype=np.float64) - self.actual) ** 2)))

    def predict(self, model: Model) -> np.ndarray:
        return np.asarray(model.predict(self.val.students, self.val.courses), dtype=np.float64)

    def try_spec(self, spec: Spec) -> None:
        t0 = time.perf_counter()
        try:
            if spec.config is not None:
                model = self.fit_ncf(spec.config)
                again: Callable[[], Model] = lambda m=model: self.refit_ncf(m)  # noqa: E731
            else:
                assert spec.make is not None
                model = spec.make().fit(self.fit_part)
                again = lambda make=spec.make: make().fit(self.train)  # noqa: E731
            predictions = self.predict(model)
            if not np.isfinite(predictions).all():
                raise DataError("its validation predictions are not finite")
        except Exception as exc:  # any failure of one candidate is reported and the others go on
            self.record(Tried(spec.name, spec.family, spec.settings, None, time.perf_counter() - t0, reason(exc)))
            return
        self.fitted[spec.name] = _Fitted(spec.family, model, predictions, again)
        self.record(Tried(spec.name, spec.family, spec.settings, self.rmse(predictions), time.perf_counter() - t0))

    def fit_ncf(self, config: TrainConfig) -> Model:
        # Early stopping on the selection's own validation rows: the epochs it picks are the ones the refit runs.
        return fit(self.fit_part, config, validation=self.val, progress=self.progress)  # type: ignore[return-value]

    def refit_ncf(self, model: Any) -> Model:
        return refit_ncf(model, self.train, progress=self.progress)

    def try_ensemble(self, cfg: TrainConfig, size: int) -> None:
        """The better NeuMF (configured or small sizes) as member 0, plus ``size − 1`` more seeds."""
        neumfs = [t for t in self.tried if t.family == "neumf" and t.name in self.fitted]
        if not neumfs:
            why = "no NeuMF candidate could be fitted to seed it"
            self.record(Tried("ensemble", "ensemble", {"members": size}, None, 0.0, why))
            return
        first = min(neumfs, key=lambda t: t.value)  # type: ignore[arg-type, return-value]
        seed: Any = self.fitted[first.name].model  # an NCF: its config and best epoch
        settings: dict[str, Any] = {"members": size, "of": first.name}
        settings["seeds"] = [seed.config.seed + i for i in range(size)]
        t0 = time.perf_counter()
        try:
            more, settings["epochs"] = more_seeds(seed, self.fit_part, size, progress=self.progress)
            predictions = [self.fitted[first.name].predictions, *(self.predict(m) for m in more)]
        except Exception as exc:  # as in try_spec
            self.record(Tried("ensemble", "ensemble", settings, None, time.perf_counter() - t0, reason(exc)))
            return
        members = [seed, *more]
        mean = np.mean(predictions, axis=0)
        again = lambda: Ensemble.of([self.refit_ncf(m) for m in members])  # noqa: E731
        self.fitted["ensemble"] = _Fitted("ensemble", Ensemble.of(members), mean, again)
        # Seconds: the extra members only (member 0 is the NeuMF candidate, already counted).
        self.record(Tried("ensemble", "ensemble", settings, self.rmse(mean), time.perf_counter() - t0))

    def try_blend(self, forced: bool = False) -> None:
        """``forced`` (``--model blend``): a blend even when validation gives one side all the weight."""
        ncf = self.best(lambda t: t.family in (*NCF_NAMES, "ensemble"))
        baseline = self.best(lambda t: t.family in BASELINE_FAMILIES)
        if ncf is None or baseline is None:
            missing = "NCF model" if ncf is None else "baseline"
            self.record(Tried("blend", "blend", {}, None, 0.0, f"no {missing} could be fitted to blend"))
            return
        a, b = self.fitted[ncf.name], self.fitted[baseline.name]
        w, error = best_weight(a.predictions, b.predictions, self.actual)
        settings = {"first": ncf.name, "second": baseline.name, "weight": w}
        if forced or 0.0 < w < 1.0:
            blend = Blend.of(a.model, b.model, w)
            again = lambda: Blend.of(a.again(), b.again(), w)  # noqa: E731
            self.fitted["blend"] = _Fitted("blend", blend, w * a.predictions + (1 - w) * b.predictions, again)
        else:
            settings["same_as"] = ncf.name if w == 1.0 else baseline.name  # not a candidate of its own
        self.record(Tried("blend", "blend", settings, error, 0.0))

    def best(self, which: Callable[[Tried], bool]) -> Tried | None:
        ok = [t for t in self.tried if t.value is not None and t.name in self.fitted and which(t)]
        return min(ok, key=lambda t: t.value) if ok else None  # type: ignore[arg-type, return-value]
