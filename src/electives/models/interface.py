"""One interface for every model the product trains and serves (implicit's ``RecommenderBase`` is the example).

A :class:`Model` is fitted on :class:`~electives.data.interactions.Interactions` and then works in that data's
index space (students ``0..n_students-1``, courses ``0..n_courses-1``):

- ``predict(students, courses)`` and ``score_all(students)``: normalised grades in [0, 1] (explicit models,
  ``predicts_grades``) or scores that rank courses (implicit models);
- a student is a **vector** the model scores every course from: ``student_vectors()`` gives the trained students'
  (one row each), ``scores(vector)`` scores one, and ``fold_in(grades)`` makes one for a student the model never
  saw, from their entered grades (normalised) or, for implicit models, the courses they took. Serving ranks with
  these alone, so every family gets fold-in, intervals, explanations and eligibility the same way;
- ``course_vectors()``: what the model sees of each course, for "similar courses" in explanations (``None`` when
  the family has no such view);
- ``state()`` → ``(arrays, params)`` and ``Model.from_state(arrays, params)``: everything needed to rebuild the
  fitted model, as named float/int arrays (safetensors) and JSON-able parameters (the manifest). Never pickle.

Families register themselves with :func:`register` under the name stored in the artifact (``family``);
:func:`family_class` finds one by that name and says which exist when it does not (``models.families`` imports
every family, so that all are registered).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np

from electives.data.interactions import Interactions
from electives.errors import DataError, ModelError

__all__ = ["DEFAULT_OPTIONS", "FAMILIES", "FoldIn", "FoldInOptions", "Model", "family_class", "register"]

Mode = Literal["explicit", "implicit"]


@dataclass(frozen=True)
class FoldInOptions:
    """How a new student is folded in. ``noise``: σ of a grade around its prediction (normalised units; the
    weight of the data against the prior for families with one); ``prior_strength`` scales a family's prior or
    ridge penalty (1 = as fitted); ``shrinkage`` shrinks a learned prior's covariance towards its average variance;
    ``max_steps`` bounds iterative solvers; ``n_negatives``: implicit fold-in's weight of untaken courses."""

    noise: float = 0.1
    prior_strength: float = 1.0
    shrinkage: float = 0.1
    max_steps: int = 8
    n_negatives: int = 4

    def __post_init__(self) -> None:
        if not (self.noise > 0 and self.prior_strength > 0 and 0.0 <= self.shrinkage <= 1.0 and self.max_steps >= 1):
            raise ValueError("fold-in needs noise > 0, prior_strength > 0, shrinkage in [0, 1] and max_steps ≥ 1")


# fold_in's default for every family (one shared instance: the options are frozen).
DEFAULT_OPTIONS = FoldInOptions()


@dataclass(frozen=True)
class FoldIn:
    """A folded-in student: the vector the model scores with and how it was found."""

    embedding: np.ndarray
    iterations: int
    objective: float
    grades_used: int


class Model(ABC):
    """A fitted model in its training data's index space; see the module docstring."""

    family: ClassVar[str] = ""
    mode: Mode = "explicit"
    n_students: int = 0
    n_courses: int = 0
    train_fingerprint: str = ""

    @property
    def predicts_grades(self) -> bool:
        """Whether ``predict`` returns normalised grades (so RMSE and intervals mean something)."""
        return self.mode == "explicit"

    # -- learning and predicting ------------------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: Interactions) -> Self:
        """Fit on ``train`` (settings and seed come from the constructor) and return self."""

    def predict(self, students: np.ndarray, courses: np.ndarray) -> np.ndarray:
        """One output per (student, course) pair, float32."""
        s, c = self.check_pairs(students, courses)
        out = np.empty(len(s), dtype=np.float32)
        for u in np.unique(s):
            rows = np.flatnonzero(s == u)
            out[rows] = self.score_all(np.array([u]))[0, c[rows]]
        return out

    def score_all(self, students: np.ndarray) -> np.ndarray:
        """(len(students), n_courses) outputs on the scale of ``predict``."""
        s = self.check_students(students)
        vectors = self.student_vectors()
        return np.stack([self.scores(vectors[u]) for u in s]).astype(np.float32) if len(s) else self._empty()

    # -- students as vectors ---------------------------------------------------------------------------------
    @abstractmethod
    def student_vectors(self) -> np.ndarray:
        """(n_students, d) float32: the trained students, one row each."""

    @abstractmethod
    def scores(self, vector: np.ndarray) -> np.ndarray:
        """(n_courses,) float64 outputs for one student vector (a row of ``student_vectors`` or a fold-in)."""

    @abstractmethod
    def fold_in(self, entries: Mapping[int, float], options: FoldInOptions = DEFAULT_OPTIONS) -> FoldIn:
        """A vector for a student the model never saw. Explicit: ``entries`` maps course index → normalised
        grade. Implicit: its keys are the courses taken (values ignored)."""

    def course_vectors(self) -> np.ndarray | None:
        """(n_courses, d') what the model sees of each course, for similarity; None without such a view."""
        return None

    # -- persistence -----------------------------------------------------------------------------------------
    @abstractmethod
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Named arrays and JSON-able parameters that :meth:`from_state` rebuilds this fitted model from."""

    @classmethod
    @abstractmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Self:
        """The fitted model saved by :meth:`state`; a ModelError when the two do not describe one."""

    # -- checks every family shares --------------------------------------------------------------------------
    def check_students(self, students: np.ndarray) -> np.ndarray:
        s = np.asarray(students)
        if s.ndim != 1 or (len(s) and not np.issubdtype(s.dtype, np.integer)):
            raise DataError(f"students must be a 1-d array of integer indices, got shape {s.shape} of {s.dtype}")
        s = s.astype(np.int64)
        if len(s) and (s.min() < 0 or s.max() >= self.n_students):
            raise DataError(f"student index out of range: expected 0..{self.n_students - 1}")
        return s

    def check_pairs(self, students: np.ndarray, courses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s, c = self.check_students(students), np.asarray(courses)
        if c.shape != s.shape or (len(c) and not np.issubdtype(c.dtype, np.integer)):
            raise DataError(f"courses must be integer indices shaped like students {s.shape}, got {c.shape}")
        c = c.astype(np.int64)
        if len(c) and (c.min() < 0 or c.max() >= self.n_courses):
            raise DataError(f"course index out of range: expected 0..{self.n_courses - 1}")
        return s, c

    def check_entries(self, entries: Mapping[int, float]) -> tuple[np.ndarray, np.ndarray]:
        """Course indices and (explicit) normalised grades of a fold-in, checked."""
        c = np.fromiter(entries, dtype=np.int64, count=len(entries))
        g = np.fromiter(entries.values(), dtype=np.float64, count=len(entries))
        # Checked in Python: a fold-in has tens of entries, where five NumPy reductions cost a request ~25 µs.
        if len(c) and (min(entries) < 0 or max(entries) >= self.n_courses):
            raise DataError(f"fold-in course index out of range: expected 0..{self.n_courses - 1}")
        if self.mode == "explicit" and not all(0.0 <= v <= 1.0 for v in entries.values()):  # NaN fails too
            raise DataError("fold-in grades must be normalised grades in [0, 1]")
        return c, g

    def _empty(self) -> np.ndarray:
        return np.empty((0, self.n_courses), dtype=np.float32)


FAMILIES: dict[str, type[Model]] = {}


def register(*names: str) -> Callable[[type[Model]], type[Model]]:
    """Class decorator: each of ``names`` (as stored in artifacts) is this class. A class registered under one
    name has it as ``family``; one under several (NCF: neumf, gmf, mlp) says per instance which it is."""

    def add(cls: type[Model]) -> type[Model]:
        for name in names:
            if FAMILIES.get(name, cls) is not cls:
                raise ValueError(f"model family {name!r} is registered twice")
            FAMILIES[name] = cls
        if len(names) == 1:
            cls.family = names[0]
        return cls

    return add


def family_class(name: str) -> type[Model]:
    """The class of a model family by its stored name; a ModelError naming the known ones otherwise."""
    cls = FAMILIES.get(name)
    if cls is None:
        known = ", ".join(sorted(FAMILIES)) or "none"
        raise ModelError(f"model family {name!r} is unknown to this version of electives (it knows: {known})")
    return cls
