"""What a recommendation request returns: the cards, the "why not X?" answers and a folded-in student.

Grades on cards are in the institution's scale (``points``, ``letter``); ``score`` is the model's output (the
predicted normalised grade, or the ranking score of an enrolment-only model). ``to_dict`` gives the plain
JSON-able form the CLI (``--json``) and the web API print, unchanged across versions of this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from electives.data.eligibility import Exclusion, Reason
from electives.data.scales import GradeScale
from electives.models.interface import FoldIn  # a folded-in student, as every model family returns it
from electives.serving.explanations import CohortStatistic, cohort_relation

__all__ = [
    "Basis",
    "FoldIn",
    "LazyRanking",
    "Recommendation",
    "Recommendations",
    "SimilarCourse",
    "WhyNot",
    "WhyNotReason",
]

Basis = Literal["trained", "folded-in"]
# Eligibility's reasons, plus the ranking's own answers.
# The cohort's relation to the card's prediction, as the API spells it.
_RELATION_KEYS = {"in line with": "in-line", "above": "above", "below": "below"}
WhyNotReason = Literal["recommended", "ranked-lower", Reason, "no-data", "not-a-course"]


@dataclass(frozen=True)
class SimilarCourse:
    """A course the student did well in whose learned vector is close to the recommended course's."""

    course: str
    name: str
    grade: float | None  # normalised; None for enrolment-only models
    points: float | None
    letter: str | None
    similarity: float


@dataclass(frozen=True)
class Recommendation:
    """One card. Grades are in the institution's scale (``points``, ``letter``); ``score`` is the model's
    output: the predicted normalised grade (explicit) or a score that ranks courses (implicit)."""

    rank: int
    course: str
    name: str
    description: str | None
    score: float
    points: float | None
    letter: str | None
    interval: tuple[float, float] | None  # points, at ``Recommendations.coverage``
    explanation: str | None
    similar: tuple[SimilarCourse, ...] = ()
    cohort: CohortStatistic | None = None  # mean normalised grade of similar students, ≥ min_cohort of them
    # The term's stored seat plan: True when more students have the course in their own top k than it has seats;
    # None when no plan for the term is stored (or it does not cover the course).
    likely_full: bool | None = None

    def to_dict(self, scale: GradeScale | None) -> dict[str, Any]:
        cohort = None
        if self.cohort is not None:
            cohort = {"size": self.cohort.size, "mean": round(self.cohort.mean, 4)}
            if scale is not None:
                points = scale.to_points(self.cohort.mean)
                relation = _RELATION_KEYS[cohort_relation(self.cohort.mean, self.score, scale)]
                cohort.update(points=round(points, 2), letter=scale.letter(points), relation=relation)
        return {
            "rank": self.rank,
            "course": self.course,
            "name": self.name,
            "description": self.description,
            "score": round(self.score, 4),
            "points": None if self.points is None else round(self.points, 2),
            "letter": self.letter,
            "interval": None if self.interval is None else [round(x, 2) for x in self.interval],
            "explanation": self.explanation,
            "similar_courses": [
                {
                    "course": s.course,
                    "name": s.name,
                    "points": None if s.points is None else round(s.points, 2),
                    "letter": s.letter,
                    "similarity": round(s.similarity, 3),
                }
                for s in self.similar
            ],
            "cohort": cohort,
            "likely_full": self.likely_full,
        }


@dataclass(frozen=True)
class WhyNot:
    """Why a course is (not) among the recommendations; ``exclusion`` when the eligibility rules left it out."""

    course: str
    reason: WhyNotReason
    message: str
    exclusion: Exclusion | None = None


@dataclass(frozen=True)
class Recommendations:
    """The top-k for one student and everything needed to answer "why not X?".

    ``basis`` says where the student's embedding came from (the trained model or a fold-in of ``grades_used``
    grades); ``excluded`` maps every candidate the eligibility rules left out to its :class:`Exclusion`;
    ``ignored`` lists entered or stored courses the model has no data on (they still count for eligibility);
    ``note`` is a few sentences about the answer as a whole (an enrolment-only model, an average student's ranking
    when no usable grade was entered, retakes)."""

    mode: str
    basis: Basis
    items: tuple[Recommendation, ...]
    k: int
    eligible: int
    excluded: Mapping[str, Exclusion]
    target_term: str | None
    scale: GradeScale | None = field(repr=False)
    coverage: float | None
    grades_used: int
    ignored: tuple[str, ...] = ()
    note: str | None = None
    retaken: tuple[str, ...] = ()  # entered courses whose earlier, failed attempt the later one replaced
    # Every eligible candidate, best first, with its score: ranks for why_not().
    ranking: Mapping[str, tuple[int, float]] = field(default_factory=dict, repr=False, compare=False)
    known: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)  # model and catalogue codes

    def __iter__(self) -> Iterator[Recommendation]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def courses(self) -> tuple[str, ...]:
        return tuple(r.course for r in self.items)

    def why_not(self, course: str) -> WhyNot:
        """Why ``course`` is not recommended (or that it is); the message is a sentence about the course."""
        code = course.strip()
        for item in self.items:
            if item.course == code:
                return WhyNot(code, "recommended", f"It is recommended (#{item.rank}).")
        if code in self.excluded:
            exclusion = self.excluded[code]
            return WhyNot(code, exclusion.reason, f"{exclusion.message}.", exclusion)
        ranked = self.ranking.get(code)
        if ranked is not None:
            rank, score = ranked
            if self.mode == "explicit" and self.scale is not None:
                points = self.scale.to_points(score)
                shown = f"predicted {self.scale.letter(points)}, {_fmt_points(points)}"
            else:
                shown = f"score {score:.3f}"
            return WhyNot(
                code,
                "ranked-lower",
                f"It is eligible but ranked {rank} of {len(self.ranking)} ({shown}); only the top {self.k} are shown.",
            )
        if code in self.known:
            message = "No student in the training data took it, so no grade can be predicted"
            on_record = " (it is on your record already)" if code in self.ignored else ""
            return WhyNot(code, "no-data", f"{message}{on_record}.")
        return WhyNot(code, "not-a-course", "It is not a course in the catalogue or the model.")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (CLI ``--json``, web API)."""
        return {
            "mode": self.mode,
            "basis": self.basis,
            "grades_used": self.grades_used,
            "k": self.k,
            "target_term": self.target_term,
            "scale": None if self.scale is None else self.scale.name,
            "coverage": self.coverage,
            "note": self.note,
            "recommendations": [r.to_dict(self.scale) for r in self.items],
            "eligible": self.eligible,
            "excluded": {code: {"reason": e.reason, "message": e.message} for code, e in self.excluded.items()},
            "ignored_courses": list(self.ignored),
            "retaken_courses": list(self.retaken),
        }


class LazyRanking(Mapping[str, tuple[int, float]]):
    """Every eligible course → (rank, score), built only when asked (why_not): most requests never ask."""

    def __init__(self, course_ids: Sequence[str], order: np.ndarray, scores: np.ndarray) -> None:
        self._course_ids, self._order, self._scores = course_ids, order, scores
        self._map: dict[str, tuple[int, float]] | None = None

    def _built(self) -> dict[str, tuple[int, float]]:
        if self._map is None:
            ids, scores = self._course_ids, self._scores
            self._map = {ids[c]: (r + 1, float(scores[c])) for r, c in enumerate(self._order.tolist())}
        return self._map

    def __getitem__(self, code: str) -> tuple[int, float]:
        return self._built()[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._order)


def _fmt_points(points: float) -> str:
    return f"{points:.2f}".rstrip("0").rstrip(".")
