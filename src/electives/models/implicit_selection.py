"""Implicit-mode selection: which family ranks each student's next course best (what `electives train --mode
implicit` does unless ``--model`` names a family).

Validation is each student's newest training course (leave-one-out: the highest term, then the latest row; a
student with one course stays in the fit part), ranked by every candidate fitted on the rest. The metric is
**NDCG@10 among 99 sampled courses** the student took in neither part (fewer on a small catalogue; the same
courses for every candidate): a served ranking is among the electives a student may take next term, a subset
of the catalogue as the sampled protocol's is. That subset is a different one for each student, though, and may
be most of the catalogue, so the served ranking must also rank the **whole catalogue** as well as the best
single candidate does: the winner is the best metric among the candidates (blends included) whose
full-catalogue HR@10 on the validation rows is at least the best single candidate's (:func:`served_choice`; no
tolerance below it — one binomial standard error at ML-1M's 6,040 rows, 0.004, is most of the gap this rule
closes there). HR@10 and the full-catalogue figures are recorded beside it.

Candidates, cheapest first (a tie goes to the one tried first):

- ``ease`` at λ = ½, 1, 2, 4 and 8 × the mean enrolments per course (the diagonal of XᵀX it is added to; on
  ML-1M the full-catalogue HR@10 peaks at 1×, so ½ brackets it, and a lighter-penalty EASE is the blend member
  that ranks the catalogue best);
- ``ials`` (:mod:`~electives.models.baselines.ials`) at a few (d, λ, α₀) around the published ML-1M setting;
- ``neumf`` from the configured settings, early-stopped on the validation rows (its own sampled HR@10);
- ``ensemble``: that NeuMF plus more seeds (:func:`~electives.models.ensemble.ensemble_size`), fitted only when
  the NeuMF is within :data:`ENSEMBLE_REACH` of the best candidate so far (averaging seeds closes a few per
  cent, not more; on ML-1M it would add four minutes to a NeuMF 7% behind) unless asked for by name;
- ``blend``: one candidate of each of two or three groups (EASE, iALS, NCF), each member's scores z-scored per
  student (:class:`~electives.models.ensemble.Blend` ``standardised``), the weights on the 0.1 simplex
  (:func:`blend_grid`); the best by the metric that reaches the full-catalogue floor. A member that ranks what
  the others miss need not be the best of its family alone (EASE ranks the catalogue's head best, iALS and
  NeuMF the sampled courses).

The winner is fitted again on every training row (NCF for the epochs early stopping chose).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from electives.data.interactions import Interactions
from electives.data.sampling import sample_negatives
from electives.data.splits import leave_one_out
from electives.errors import DataError
from electives.evaluation import metrics
from electives.models.baselines import EASE, IALS
from electives.models.config import IMPLICIT_FAMILY_NAMES, TrainConfig
from electives.models.ensemble import Blend, Ensemble, ensemble_size, standardise
from electives.models.interface import Model
from electives.models.selection import Selection, Tried, conclude, more_seeds, reason, refit_ncf, winner_of
from electives.models.training import fit

__all__ = ["ENSEMBLE_REACH", "FULL_HR", "METRIC", "blend_grid", "select_implicit", "served_choice"]

METRIC = "val_ndcg_at_10_sampled"
FULL_HR = "val_hr_at_10_full"  # what a served ranking must not lose against the best single candidate
ENSEMBLE_REACH = 0.05  # an ensemble is fitted when its NeuMF is within 5% of the best candidate's metric
EASE_FACTORS = (0.5, 1.0, 2.0, 4.0, 8.0)  # λ per mean enrolments of a course
# (d, λ, α₀): the published ML-1M setting (Rendle et al. 2022: d 192, λ 0.007, α₀ 0.3, 12 epochs), a smaller d
# for small catalogues, and more weight on the untaken pairs with a lighter penalty (on ML-1M's validation split
# as good on sampled NDCG@10 and better over the catalogue: HR@10 0.104 against 0.101).
IALS_GRID = ((64, 0.007, 0.3), (192, 0.007, 0.3), (192, 0.005, 0.5))
EASE_MAX_COURSES = 20_000  # EASE inverts a courses × courses matrix: past this, hours and gigabytes
VALIDATION_CELLS = 1 << 25  # validation students × courses scored at once; more students are sampled
NEGATIVES = 99
STEPS = 10  # a blend's weights are multiples of 1/STEPS (0.1: coarse, as one validation row per student is)
GROUPS = {"ease": "ease", "ials": "ials", "neumf": "ncf", "ensemble": "ncf"}


def blend_grid(groups: Sequence[Sequence[str]], steps: int = STEPS) -> list[tuple[tuple[str, float], ...]]:
    """Every blend of one name from each of two or more ``groups``: ((name, weight), …) with positive weights
    that are multiples of 1/``steps`` summing to 1; pairs first (the simpler blend wins a tie), in order."""
    out: list[tuple[tuple[str, float], ...]] = []
    for k in range(2, len(groups) + 1):
        parts = [p for p in itertools.product(range(1, steps), repeat=k) if sum(p) == steps]
        for chosen in itertools.combinations(groups, k):
            for names in itertools.product(*chosen):
                out += [tuple(zip(names, (i / steps for i in p), strict=True)) for p in parts]
    return out


def served_choice(tried: Sequence[Tried], families: Sequence[str], kept: Container[str]) -> tuple[Tried, float | None]:
    """The winner among the candidates of ``families`` still ``kept`` and the floor it had to reach: the best
    metric among those whose full-catalogue HR@10 (:data:`FULL_HR`) is at least the best single (not blended)
    candidate's of them — of every fitted one when only the blend was asked for; the first of equals wins.
    A DataError naming each failure when none could be fitted."""
    fitted = [t for t in tried if t.value is not None and t.name in kept]
    eligible = [t for t in fitted if t.family in families]
    singles = [t for t in eligible if t.family != "blend"] or [t for t in fitted if t.family != "blend"]
    if not singles:
        return winner_of(tried, families, kept, lowest=False), None
    floor = max(t.figures[FULL_HR] for t in singles)
    return winner_of([t for t in eligible if t.figures[FULL_HR] >= floor], families, kept, lowest=False), floor


@dataclass
class _Candidate:
    """A candidate's validation scores (z-scored per student, for blends), its model as fitted on the fit part
    (dropped while another of its family is better: ``fit_part`` fits it again should a blend need it), and how
    to fit it again on every row (``again``)."""

    family: str
    scores: np.ndarray
    model: Model | None
    fit_part: Callable[[], Model]
    again: Callable[[], Model]
    gathered: np.ndarray | None = None  # the scores of the validation course, then of its sampled courses

    def validated(self) -> Model:
        if self.model is None:
            self.model = self.fit_part()
        return self.model


@dataclass
class _Board:
    """The validation rows every candidate is measured on: one newest course per student, the courses each
    student has in the fit part (never ranked), and the sampled courses each is ranked among."""

    students: np.ndarray
    courses: np.ndarray
    exclude: np.ndarray  # (rows, n_courses) bool
    negatives: np.ndarray | None

    @classmethod
    def of(cls, fit_part: Interactions, val: Interactions, seed: int) -> _Board:
        rows = np.arange(len(val))
        most = max(1, VALIDATION_CELLS // max(1, val.n_courses))
        if len(rows) > most:  # a big university: a seeded sample of students keeps the scores in memory
            rows = np.sort(np.random.default_rng(seed).choice(len(rows), most, replace=False))
        students, courses = val.students[rows], val.courses[rows]
        both = fit_part.concat(val).item_lookup()
        free = val.n_courses - both.counts()[students]
        negatives = None
        if free.min() > 0:
            n = min(NEGATIVES, int(free.min()))
            negatives = sample_negatives(students, both, n, np.random.default_rng(seed), unique=True)
        return cls(students, courses, fit_part.item_lookup().mask(students), negatives)

    def scores(self, model: Model) -> np.ndarray:
        step = max(1, VALIDATION_CELLS // 8 // max(1, self.exclude.shape[1]))
        parts = [model.score_all(self.students[i : i + step]) for i in range(0, len(self.students), step)]
        out = np.concatenate(parts).astype(np.float64)
        if not np.isfinite(out).all():
            raise DataError("its validation scores are not finite")
        return out

    def gathered(self, scores: np.ndarray) -> np.ndarray | None:
        """Each row's validation course's score, then its sampled courses' (None without sampled courses)."""
        if self.negatives is None:
            return None
        rows = np.arange(len(self.students))
        return np.concatenate([scores[rows, self.courses][:, None], scores[rows[:, None], self.negatives]], axis=1)

    def sampled(self, gathered: np.ndarray) -> dict[str, float]:
        """HR@10 and NDCG@10 against the sampled courses, from :meth:`gathered` scores."""
        ranks = metrics.sampled_ranks(gathered[:, 0], gathered[:, 1:])
        return {"val_hr_at_10_sampled": metrics.hit_rate(ranks, 10), METRIC: metrics.ndcg(ranks, 10)}

    def figures(self, scores: np.ndarray) -> dict[str, float]:
        """HR@10 and NDCG@10 against the sampled courses and over the catalogue (as ``evaluate`` names them)."""
        gathered = self.gathered(scores)
        out = {} if gathered is None else self.sampled(gathered)
        ranks = metrics.full_ranks(scores, self.courses, self.exclude)
        out.update({FULL_HR: metrics.hit_rate(ranks, 10), "val_ndcg_at_10_full": metrics.ndcg(ranks, 10)})
        return out

    @property
    def metric(self) -> str:
        return METRIC if self.negatives is not None else "val_ndcg_at_10_full"  # every course taken by someone


def select_implicit(
    train: Interactions,
    base: TrainConfig | None = None,
    *,
    families: Sequence[str] = IMPLICIT_FAMILY_NAMES,
    ensemble_members: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Selection:
    """Choose among ``families`` on leave-one-out validation and refit the winner on every row of ``train``.

    ``base``: the NeuMF candidate's settings (implicit mode). ``ensemble_members``: N, or None for
    :func:`ensemble_size`. Raises DataError when no candidate could be fitted (naming each one's reason).
    """
    cfg = replace((base or TrainConfig(mode="implicit")).resolved(), refit=False)
    if cfg.mode != "implicit":
        raise DataError("implicit selection ranks courses taken; train it with mode='implicit'")
    unknown = sorted(set(families) - set(IMPLICIT_FAMILY_NAMES))
    if unknown:
        raise DataError(
            f"model family {', '.join(unknown)} does not rank enrolments; choose from {', '.join(IMPLICIT_FAMILY_NAMES)}"
        )
    started = time.perf_counter()
    fit_part, val = leave_one_out(train)
    if len(val) == 0:
        raise DataError("no student has two courses: there is no newest course to validate on")
    run = _Run(train, fit_part, val, _Board.of(fit_part, val, cfg.seed), progress, log)
    if log is not None:
        log(
            f"choosing a model on {len(run.board.students):,} validation rows (each student's newest course), "
            f"fitted on {len(fit_part):,}; metric {run.board.metric}"
        )
    alone = tuple(families)
    if "ease" in families or alone == ("blend",):
        run.try_ease()
    if "ials" in families or alone == ("blend",):
        run.try_ials(cfg.seed)
    if {"neumf", "ensemble"} & set(families):
        run.try_neumf(cfg)
    if "ensemble" in families:
        run.try_ensemble(ensemble_members or ensemble_size(len(train)), forced=alone == ("ensemble",))
    if "blend" in families:
        run.try_blend()
    best = run.winner(families)
    winner = run.fitted[best.name]
    if log is not None:
        log(f"chose {best.name} ({run.board.metric} {best.value:.4f}); fitting it again on all rows")
    validated = winner.validated()  # a blend's partner may have to be fitted on the fit part again
    chosen = Selection(validated, validated, best.name, winner.family, "loo", fit_part, val, run.tried)
    return conclude(replace(chosen, metric=run.board.metric), again=winner.again, started=started, log=log)


@dataclass
class _Run:
    """One selection's state: what was tried, and every fitted candidate by name (its validation scores; the
    model itself only for the best of each family)."""

    train: Interactions
    fit_part: Interactions
    val: Interactions
    board: _Board
    progress: bool
    log: Callable[[str], None] | None
    tried: list[Tried] = field(default_factory=list)
    fitted: dict[str, _Candidate] = field(default_factory=dict)

    def record(self, tried: Tried) -> None:
        self.tried.append(tried)
        if self.log is None:
            return
        if tried.error or tried.skipped:
            self.log(f"  {tried.name:<30} {f'failed: {tried.error}' if tried.error else f'skipped: {tried.skipped}'}")
        else:
            shown = "  ".join(f"{k[4:]} {v:.4f}" for k, v in tried.figures.items())
            self.log(f"  {tried.name:<30} {shown}  ({tried.seconds:.1f} s)")

    def keep(self, name: str, candidate: _Candidate, settings: dict[str, Any], seconds: float) -> None:
        """Record a fitted candidate and keep its scores (any may partner a blend); of each family only the best
        keeps its model."""
        figures = self.board.figures(candidate.scores)
        value = figures[self.board.metric]
        rival = self.best(lambda t: t.family == candidate.family)
        self.record(Tried(name, candidate.family, settings, value, seconds, metric=self.board.metric, figures=figures))
        candidate.scores = standardise(candidate.scores).astype(np.float32)
        candidate.gathered = self.board.gathered(candidate.scores)
        self.fitted[name] = candidate
        if rival is not None:
            worse = self.fitted[rival.name] if value > rival.value else candidate  # type: ignore[operator]
            worse.model = None

    def attempt(self, name: str, family: str, settings: dict[str, Any], make: Callable[[], Model]) -> None:
        """Fit ``make()`` on the fit part and score it; a failure is recorded and the others go on."""
        t0 = time.perf_counter()
        try:
            model = make().fit(self.fit_part)
            scores = self.board.scores(model)
        except Exception as exc:
            self.record(Tried(name, family, settings, None, time.perf_counter() - t0, reason(exc)))
            return
        fit_part = lambda: make().fit(self.fit_part)  # noqa: E731
        again = lambda: make().fit(self.train)  # noqa: E731
        candidate = _Candidate(family, scores, model, fit_part, again)
        self.keep(name, candidate, settings, time.perf_counter() - t0)

    def try_ease(self) -> None:
        if self.train.n_courses > EASE_MAX_COURSES:
            why = f"{self.train.n_courses:,} courses: EASE inverts a courses × courses matrix (at most {EASE_MAX_COURSES:,})"
            self.record(Tried("ease", "ease", {}, None, 0.0, why))
            return
        per_course = len(self.fit_part) / max(1, self.fit_part.n_courses)
        for factor in EASE_FACTORS:
            lam = float(f"{factor * per_course:.3g}")
            self.attempt(f"ease(λ={lam:g})", "ease", {"lam": lam}, partial(EASE, lam=lam))

    def try_ials(self, seed: int) -> None:
        for d, reg, alpha in IALS_GRID:
            settings = {"factors": d, "reg": reg, "unobserved_weight": alpha, "epochs": 12, "seed": seed}
            self.attempt(f"ials(d={d},λ={reg:g},α₀={alpha:g})", "ials", settings, partial(IALS, **settings))

    def try_neumf(self, cfg: TrainConfig) -> None:
        config = replace(cfg, model="neumf")
        settings = {"gmf_dim": config.gmf_dim, "mlp_dim": config.mlp_dim, "mlp_layers": list(config.mlp_layers or ())}
        t0 = time.perf_counter()
        try:
            # Early stopping on the selection's validation rows: the epochs it picks are the ones the refit runs.
            model: Any = fit(self.fit_part, config, validation=self.val, progress=self.progress)
            scores = self.board.scores(model)
        except Exception as exc:
            self.record(Tried("neumf", "neumf", settings, None, time.perf_counter() - t0, reason(exc)))
            return
        settings["epochs"] = int(model.best_epoch)
        again = lambda: refit_ncf(model, self.train, progress=self.progress)  # noqa: E731
        self.keep("neumf", _Candidate("neumf", scores, model, lambda: model, again), settings, time.perf_counter() - t0)

    def try_ensemble(self, size: int, *, forced: bool) -> None:
        seed = self.fitted.get("neumf")
        leader = self.best(lambda t: True)
        if seed is None or leader is None:
            self.record(Tried("ensemble", "ensemble", {"members": size}, None, 0.0, "no NeuMF to seed it"))
            return
        first: Any = seed.validated()
        neumf = next(t for t in self.tried if t.name == "neumf")
        settings: dict[str, Any] = {"members": size, "seeds": [first.config.seed + i for i in range(size)]}
        if not forced and neumf.value < (1 - ENSEMBLE_REACH) * leader.value:  # type: ignore[operator]
            why = f"NeuMF is more than {ENSEMBLE_REACH:.0%} behind {leader.name}"
            self.record(Tried("ensemble", "ensemble", settings, None, 0.0, skipped=why))
            return
        t0 = time.perf_counter()
        try:
            more, settings["epochs"] = more_seeds(first, self.fit_part, size, progress=self.progress)
            members = [first, *more]
            model = Ensemble.of(members)
            scores = self.board.scores(model)
        except Exception as exc:
            self.record(Tried("ensemble", "ensemble", settings, None, time.perf_counter() - t0, reason(exc)))
            return
        again = lambda: Ensemble.of([refit_ncf(m, self.train, progress=self.progress) for m in members])  # noqa: E731
        candidate = _Candidate("ensemble", scores, model, lambda: model, again)
        # Seconds: the extra members only (member 0 is the NeuMF candidate, already counted).
        self.keep("ensemble", candidate, settings, time.perf_counter() - t0)

    def try_blend(self) -> None:
        """Σ wᵢ·memberᵢ, z-scored: one fitted candidate of each of two or three groups (EASE, iALS, NCF), the
        weights on the 0.1 simplex (:func:`blend_grid`), ranked by the metric; the best one whose full-catalogue
        HR@10 reaches the best single candidate's (as :func:`served_choice` asks) is the blend. A member that ranks what another
        misses need not be the best of its family alone."""
        kept = [t for t in self.tried if t.value is not None and t.name in self.fitted and t.family != "blend"]
        by_group: dict[str, list[Tried]] = {}
        for t in kept:
            by_group.setdefault(GROUPS[t.family], []).append(t)
        if len(by_group) < 2:
            self.record(Tried("blend", "blend", {}, None, 0.0, "fewer than two families could be fitted to blend"))
            return
        t0 = time.perf_counter()
        mixes = blend_grid([[t.name for t in group] for group in by_group.values()])
        floor = max(t.figures[FULL_HR] for t in kept)
        found = self.first_admitted(mixes, floor)
        if found is None:
            why = f"no blend reaches the best single candidate's full-catalogue HR@10 ({floor:.4f})"
            self.record(Tried("blend", "blend", {}, None, time.perf_counter() - t0, skipped=why))
            return
        mix, figures = found
        names, weights = [n for n, _ in mix], [w for _, w in mix]
        members = [self.fitted[n] for n in names]
        settings = {"members": names, "weights": weights, "standardised": True}
        validated = lambda: Blend.mix([m.validated() for m in members], weights, standardised=True)  # noqa: E731
        again = lambda: Blend.mix([m.again() for m in members], weights, standardised=True)  # noqa: E731
        self.fitted["blend"] = _Candidate("blend", np.empty(0, dtype=np.float32), None, validated, again)
        value = figures[self.board.metric]
        seconds = time.perf_counter() - t0
        self.record(Tried("blend", "blend", settings, value, seconds, metric=self.board.metric, figures=figures))

    def first_admitted(
        self, mixes: list[tuple[tuple[str, float], ...]], floor: float
    ) -> tuple[tuple[tuple[str, float], ...], dict[str, float]] | None:
        """The mix with the best metric whose full-catalogue HR@10 is at least ``floor``, and its figures: mixes
        in order of the metric (cheap on the sampled courses; the first listed of equals first), the
        full-catalogue figures computed down that order until one is admitted."""
        if self.board.negatives is None:  # the metric is itself a full-catalogue one: every mix is scored fully
            order = [(self.board.figures(self.mixed(mix)), mix) for mix in mixes]
        else:
            order = [(self.board.sampled(self.mixed(mix, sampled=True)), mix) for mix in mixes]
        order.sort(key=lambda fm: -fm[0][self.board.metric])  # stable: the simpler, earlier mix wins a tie
        for figures, mix in order:
            if FULL_HR not in figures:
                figures = self.board.figures(self.mixed(mix))
            if figures[FULL_HR] >= floor:
                return mix, figures
        return None

    def mixed(self, mix: tuple[tuple[str, float], ...], *, sampled: bool = False) -> np.ndarray:
        """Σ wᵢ·zᵢ of the members' z-scored validation scores: every course, or (``sampled``) the validation
        course then its sampled courses."""
        out: np.ndarray | None = None
        for name, w in mix:
            member = self.fitted[name]
            part = member.gathered if sampled else member.scores
            out = w * part if out is None else out + np.float32(w) * part
        assert out is not None
        return out

    def winner(self, families: Sequence[str]) -> Tried:
        best, floor = served_choice(self.tried, families, self.fitted)
        if self.log is not None and floor is not None:
            self.log(f"  admitted: full-catalogue HR@10 ≥ {floor:.4f} (the best single candidate's)")
        return best

    def best(self, which: Callable[[Tried], bool]) -> Tried | None:
        ok = [t for t in self.tried if t.value is not None and t.name in self.fitted and which(t)]
        return max(ok, key=lambda t: t.value) if ok else None  # type: ignore[arg-type, return-value]
