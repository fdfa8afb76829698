"""Models made of other models: a seed ensemble of NeuMF (``ensemble``) and a blend of families (``blend``).

Both are a weighted mean of their members' outputs and implement :class:`~electives.models.interface.Model`
through them: a student's vector is the concatenation of the members' vectors, ``scores`` is the weighted mean of
each member scoring its own part, ``fold_in`` folds the student into every member, ``course_vectors`` are the
first member's, and ``state`` stores each member's arrays under ``m0.``, ``m1.``, … with the members' families
and parameters in ``params`` (so loading rebuilds each member through its own family).

- :class:`Ensemble`: N NeuMF (or GMF/MLP: ``config.model``) members with seeds ``seed … seed+N−1``, averaged.
  NeuMF's seed-to-seed spread on small registrars is larger than the gap between families (±0.025 RMSE on
  college_grades); averaging N members divides the variance part of that by N.
- :class:`Blend`: ``w·A + (1−w)·B``, typically the best NCF model and the best baseline, ``w`` chosen on a
  validation split (selection does that with its own split; :meth:`Blend.fit` carves one); implicit selection
  also serves a blend of three (:meth:`Blend.mix`: one candidate of each ranking family). Ranking families
  (EASE, iALS, NeuMF's probabilities) score on unrelated scales: a blend of them is ``standardised``, each
  member's scores of one student z-scored over the catalogue before they are weighed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Self

import numpy as np

from electives.data.interactions import Interactions
from electives.data.splits import next_term_validation
from electives.errors import DataError, ModelError
from electives.models.config import TrainConfig
from electives.models.interface import DEFAULT_OPTIONS, FoldIn, FoldInOptions, Model, family_class, register

__all__ = ["Blend", "Combination", "Ensemble", "best_weight", "ensemble_size", "standardise"]

WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))  # the blend's grid: coarse, as validation sets are small


def ensemble_size(rows: int) -> int:
    """Members for ``rows`` training grades: 5 on a few thousand, where seed noise is largest (NeuMF's seed sd on
    college_grades, 4k grades, exceeds the gap between families) and a fit takes seconds; 2 above that, where one
    fit's seed noise has shrunk with the data and each member (fitted, then refitted) costs a whole NeuMF fit
    against selection's budget of 5 (the demo university's 40k grades are there)."""
    return 5 if rows <= 20_000 else 2


def best_weight(a: np.ndarray, b: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """(w, RMSE) of the w in :data:`WEIGHTS` whose ``w·a + (1−w)·b`` is closest to ``actual``; ties → larger w."""
    best = (1.0, float("inf"))
    for w in WEIGHTS:
        err = float(np.sqrt(np.mean((w * a + (1.0 - w) * b - actual) ** 2)))
        if err < best[1] - 1e-12:
            best = (w, err)
    return best


def standardise(scores: np.ndarray) -> np.ndarray:
    """Each row (one student's scores of every course) z-scored: mean 0, sd 1 (a constant row becomes 0)."""
    x = np.asarray(scores, dtype=np.float64)
    sd = x.std(axis=-1, keepdims=True)
    return (x - x.mean(axis=-1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


class Combination(Model):
    """A fitted weighted mean of member models (all fitted on the same data); see the module docstring."""

    members: list[Model]
    weights: np.ndarray
    standardised: bool = False  # each member's scores z-scored per student over the catalogue before weighing

    def _set_members(self, members: Sequence[Model], weights: Sequence[float]) -> Self:
        if not members or len(members) != len(weights):
            raise ModelError(f"{self.family}: needs members and one weight each, got {len(members)} and {len(weights)}")
        shapes = {(m.n_students, m.n_courses, m.mode) for m in members}
        if len(shapes) != 1:
            raise ModelError(f"{self.family}: members were fitted on different data or modes: {sorted(shapes)}")
        w = np.asarray(weights, dtype=np.float64)
        if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
            raise ModelError(f"{self.family}: weights must be non-negative with a positive sum, got {list(w)}")
        self.members, self.weights = list(members), w / w.sum()
        self.n_students, self.n_courses, self.mode = shapes.pop()
        self.train_fingerprint = members[0].train_fingerprint
        self._dims: list[int] | None = None
        return self

    # -- outputs ---------------------------------------------------------------------------------------------
    def predict(self, students: np.ndarray, courses: np.ndarray) -> np.ndarray:
        s, c = self.check_pairs(students, courses)
        if self.standardised:  # a z-score needs the student's every course: through score_all, by student
            users, row = np.unique(s, return_inverse=True)
            out = np.empty(len(s), dtype=np.float32)
            for i in range(0, len(users), 1024):
                chunk = (row >= i) & (row < i + 1024)
                out[chunk] = self.score_all(users[i : i + 1024])[row[chunk] - i, c[chunk]]
            return out
        out = sum(w * m.predict(s, c).astype(np.float64) for w, m in self._active())
        return np.asarray(out, dtype=np.float32)

    def score_all(self, students: np.ndarray) -> np.ndarray:
        s = self.check_students(students)
        out = sum(w * self._standard(m.score_all(s)) for w, m in self._active())
        return np.asarray(out, dtype=np.float32).reshape(len(s), self.n_courses)

    def _standard(self, scores: np.ndarray) -> np.ndarray:
        """One member's scores (a row per student) as weighed: z-scored per row when ``standardised``."""
        x = np.asarray(scores, dtype=np.float64)
        return standardise(x) if self.standardised else x

    def _active(self) -> list[tuple[float, Model]]:
        # A member with weight 0 (a blend that chose one side) is not asked at all.
        return [(float(w), m) for w, m in zip(self.weights, self.members, strict=True) if w > 0]

    # -- students as vectors ---------------------------------------------------------------------------------
    def _split_points(self) -> list[int]:
        if self._dims is None:
            self._dims = [m.student_vectors().shape[1] for m in self.members]
        return list(np.cumsum(self._dims)[:-1])

    def student_vectors(self) -> np.ndarray:
        return np.hstack([m.student_vectors() for m in self.members]).astype(np.float32)

    def scores(self, vector: np.ndarray) -> np.ndarray:
        parts = np.split(np.asarray(vector), self._split_points())
        out = np.zeros(self.n_courses)
        for w, m, part in zip(self.weights, self.members, parts, strict=True):
            if w > 0:
                out += w * self._standard(m.scores(part))
        return out

    def fold_in(self, entries: Mapping[int, float], options: FoldInOptions = DEFAULT_OPTIONS) -> FoldIn:
        self.check_entries(entries)
        folds = [m.fold_in(entries, options) for m in self.members]
        return FoldIn(
            embedding=np.concatenate([np.asarray(f.embedding, dtype=np.float64) for f in folds]),
            iterations=max(f.iterations for f in folds),
            objective=float(sum(f.objective for f in folds)),
            grades_used=folds[0].grades_used,
        )

    def course_vectors(self) -> np.ndarray | None:
        return self.members[0].course_vectors()

    # -- persistence -----------------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {}
        members = []
        for i, m in enumerate(self.members):
            a, p = m.state()
            arrays.update({f"m{i}.{k}": v for k, v in a.items()})
            members.append({"family": m.family, "params": p})
        return arrays, {"members": members, "weights": [float(w) for w in self.weights], **self._own_params()}

    def _own_params(self) -> dict[str, Any]:
        return {}

    @classmethod
    def members_from_state(
        cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]
    ) -> tuple[list[Model], list[float]]:
        """The members and weights that :meth:`state` stored; a ModelError naming what is wrong otherwise."""
        described, weights = params.get("members"), params.get("weights")
        if not isinstance(described, list) or not isinstance(weights, list) or len(described) != len(weights):
            raise ModelError(f"{cls.family}: params need 'members' and one 'weight' each")
        members = []
        for i, d in enumerate(described):
            if not isinstance(d, Mapping) or not isinstance(d.get("family"), str):
                raise ModelError(f"{cls.family}: member {i} names no family")
            prefix = f"m{i}."
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            extra = {"device": params["device"]} if "device" in params else {}
            try:
                members.append(family_class(d["family"]).from_state(own, {**dict(d.get("params") or {}), **extra}))
            except ModelError as exc:
                raise ModelError(f"{cls.family} member {i} ({d['family']}): {exc}") from None
        return members, [float(w) for w in weights]


@register("ensemble")
class Ensemble(Combination):
    """N members of ``config.model`` (NeuMF by default) with seeds ``config.seed … config.seed+N−1``, averaged.
    ``size``: N, or None to choose it from the number of training rows (:func:`ensemble_size`)."""

    def __init__(self, config: TrainConfig | None = None, size: int | None = None, *, progress: bool = False) -> None:
        if size is not None and size < 1:
            raise DataError(f"an ensemble needs at least one member, got {size}")
        self.config, self.size, self.progress = config or TrainConfig(), size, progress

    def fit(self, train: Interactions) -> Self:
        from electives.models.training import NCF

        n = self.size or ensemble_size(len(train))
        members = [NCF(replace(self.config, seed=self.config.seed + i), progress=self.progress) for i in range(n)]
        return self._set_members([m.fit(train) for m in members], [1.0] * n)

    @classmethod
    def of(cls, members: Sequence[Model]) -> Ensemble:
        """An ensemble of already fitted members, weighted equally."""
        return cls(size=len(members))._set_members(members, [1.0] * len(members))

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Self:
        members, weights = cls.members_from_state(arrays, params)
        return cls(size=len(members))._set_members(members, weights)


@register("blend")
class Blend(Combination):
    """``w·A + (1−w)·B`` of two families. ``first``/``second`` make unfitted members; ``weight`` is w, or None to
    choose it on a validation split carved from the training rows (each student's latest term when there are
    terms, else a random tenth; graded rows only), after which both are fitted again on every row.
    ``standardised``: each member's scores z-scored per student before they are weighed (ranking families)."""

    def __init__(
        self,
        first: Callable[[], Model] | None = None,
        second: Callable[[], Model] | None = None,
        weight: float | None = None,
        *,
        standardised: bool = False,
    ) -> None:
        if weight is not None and not 0.0 <= weight <= 1.0:
            raise DataError(f"a blend's weight must be in [0, 1], got {weight}")
        self.first, self.second, self.weight, self.standardised = first, second, weight, standardised

    def fit(self, train: Interactions) -> Self:
        if self.first is None or self.second is None:
            raise ModelError("this blend was loaded, not configured: it has no member factories to fit")
        w = self.weight
        if w is None:
            if train.grades is None:
                raise DataError("a blend chooses its weight on predicted grades; these interactions have none")
            fit_part, val, _ = next_term_validation(train)
            a, b = self.first().fit(fit_part), self.second().fit(fit_part)
            actual = np.asarray(val.grades, dtype=np.float64)
            w, _ = best_weight(a.predict(val.students, val.courses), b.predict(val.students, val.courses), actual)
        return self.of(self.first().fit(train), self.second().fit(train), w, standardised=self.standardised)

    @classmethod
    def of(cls, first: Model, second: Model, weight: float, *, standardised: bool = False) -> Blend:
        """The blend ``weight·first + (1−weight)·second`` of two fitted models."""
        return cls(weight=weight, standardised=standardised)._set_members([first, second], [weight, 1.0 - weight])

    @classmethod
    def mix(cls, members: Sequence[Model], weights: Sequence[float], *, standardised: bool = False) -> Blend:
        """The blend ``Σ wᵢ·memberᵢ`` of two or more fitted models (weights normalised to sum 1)."""
        if len(members) < 2:
            raise ModelError(f"blend: needs two or more members, got {len(members)}")
        blend = cls(standardised=standardised)._set_members(members, weights)
        blend.weight = blend.weight_of_first
        return blend

    @property
    def weight_of_first(self) -> float:
        return float(self.weights[0])

    def _own_params(self) -> dict[str, Any]:
        return {"standardised": self.standardised}

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Self:
        members, weights = cls.members_from_state(arrays, params)
        if len(members) < 2:
            raise ModelError(f"blend: expected 2 or more members, found {len(members)}")
        standardised = params.get("standardised", False)  # absent in blends saved before it existed: raw
        if not isinstance(standardised, bool):
            raise ModelError(f"blend: 'standardised' must be true or false, got {standardised!r}")
        return cls.mix(members, weights, standardised=standardised)
