"""The recommendation cards of a ranked top-k: predicted grade and interval, similar courses, explanation.

:class:`CardMaker` turns course indices and model scores into :class:`~electives.serving.results.Recommendation`
cards for one model. "Similar courses" follow
:func:`~electives.serving.explanations.similar_taken_courses` (taken courses graded at least the student's own
average and passing, never the target itself, positive cosine, most similar first), computed for every card at
once over the model's course vectors (:func:`course_unit_vectors`; a model without them names no similar courses).
Intervals are the model's conformal calibration at its coverage, in points; enrolment-only models get neither
grades nor intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from electives.serving.explanations import CohortStatistic, explanation_sentence, typical_sentence
from electives.serving.results import Recommendation, SimilarCourse

if TYPE_CHECKING:
    from electives.data.scales import GradeScale
    from electives.models.calibration import ConformalInterval

__all__ = ["CardMaker", "course_unit_vectors"]

_SIMILAR_PER_CARD = 2


def course_unit_vectors(vectors: np.ndarray) -> np.ndarray:
    """A model's course vectors (``Model.course_vectors()``, (n_courses, d')) centred and at unit length: cosine of
    uncentred vectors mostly measures their common offset. Unit rows, once: every card's cosines are then one
    matrix product per request."""
    v = np.asarray(vectors, dtype=np.float64)
    v = np.ascontiguousarray(v - v.mean(0))
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


class CardMaker:
    """Cards for one model's courses (``course_ids``, with display ``names`` and ``descriptions`` in model order).
    ``unit_vectors``: :func:`course_unit_vectors` of the model's course vectors (None: the model has none).
    ``scale`` is the scale grades are shown on (explicit models), ``calibration`` the interval, if any;
    ``typical``: each course's mean prediction over trained students, for cards with nothing else to explain them."""

    def __init__(
        self,
        *,
        course_ids: Sequence[str],
        names: Sequence[str],
        descriptions: Sequence[str | None],
        unit_vectors: np.ndarray | None,
        explicit: bool,
        scale: GradeScale | None,
        calibration: ConformalInterval | None,
        typical: np.ndarray | None = None,
    ) -> None:
        self.course_ids, self.names, self.descriptions = course_ids, names, descriptions
        self.typical = typical  # per course: the mean prediction over trained students (normalised)
        self.unit_vectors = unit_vectors
        self.explicit, self.scale, self.calibration = explicit, scale, calibration
        self._letters: dict[float, str] = {}

    def cards(
        self,
        top: np.ndarray,
        scores: np.ndarray,
        grades: Mapping[int, float],
        cohorts: Sequence[CohortStatistic | None],
    ) -> tuple[Recommendation, ...]:
        """Cards for the courses ``top`` (best first) with their ``scores``; ``grades``: the student's fold-in
        targets (course index → normalised grade), ``cohorts``: each card's cohort figure."""
        similar = self._similar_courses(top, grades, self._good_threshold(grades))
        return tuple(
            self._card(rank + 1, int(c), float(scores[c]), similar[rank], grades, cohorts[rank])
            for rank, c in enumerate(top.tolist())
        )

    def _good_threshold(self, grades: Mapping[int, float]) -> float:
        """ "Did well": at or above the student's own average, and passing."""
        if not self.explicit:
            return 0.5  # every taken course has target 1
        floor = self.scale.normalise(self.scale.pass_points) if self.scale is not None else 0.5
        mean = sum(grades.values()) / len(grades) if grades else 1.0
        return max(mean, floor)

    def _similar_courses(
        self, targets: np.ndarray, grades: Mapping[int, float], good: float
    ) -> list[list[tuple[int, float]]]:
        good_idx = np.fromiter((i for i, g in grades.items() if g >= good), dtype=np.int64)
        if self.unit_vectors is None or not len(targets) or not good_idx.size:
            return [[] for _ in range(len(targets))]
        sims = self.unit_vectors[targets] @ self.unit_vectors[good_idx].T  # (cards, good courses)
        sims[targets[:, None] == good_idx[None, :]] = -np.inf
        order = np.argsort(-sims, axis=1, kind="stable")[:, :_SIMILAR_PER_CARD]
        return [
            [(int(good_idx[j]), float(row[j])) for j in picks.tolist() if row[j] > 0]
            for row, picks in zip(sims, order, strict=True)
        ]

    def _card(
        self,
        rank: int,
        c: int,
        score: float,
        similar_idx: list[tuple[int, float]],
        grade_of: Mapping[int, float],
        cohort: CohortStatistic | None,
    ) -> Recommendation:
        similar = [self._similar(i, sim, grade_of) for i, sim in similar_idx]
        points = letter = interval = explanation = None
        if self.explicit:
            scale = self.scale
            points = scale.to_points(score)
            letter = self._letter(points)
            cal = self.calibration
            if cal is not None:
                # ConformalInterval.interval for one float, without numpy's per-call overhead.
                lo, hi = min(1.0, max(0.0, score + cal.lower)), min(1.0, max(0.0, score + cal.upper))
                interval = (scale.to_points(lo), scale.to_points(hi))
            explanation = explanation_sentence([(s.name, s.grade) for s in similar], cohort, scale, predicted=score)
            if explanation is None and self.typical is not None:
                explanation = typical_sentence(float(self.typical[c]), score, scale)
        elif similar:
            names = [s.name for s in similar]
            listed = names[0] if len(names) == 1 else " and ".join(names)
            explanation = f"You took {listed}, which {'is' if len(names) == 1 else 'are'} similar."
        return Recommendation(
            rank=rank,
            course=self.course_ids[c],
            name=self.names[c],
            description=self.descriptions[c],
            score=score,
            points=points,
            letter=letter,
            interval=interval,
            explanation=explanation,
            similar=tuple(similar),
            cohort=cohort,
        )

    def _similar(self, i: int, similarity: float, grade_of: Mapping[int, float]) -> SimilarCourse:
        grade = grade_of[i] if self.explicit else None
        pts = self.scale.to_points(grade) if grade is not None and self.scale is not None else None
        return SimilarCourse(
            self.course_ids[i], self.names[i], grade, pts, None if pts is None else self._letter(pts), similarity
        )

    def _letter(self, points: float) -> str:
        # Marks repeat (entered grades), so a cache saves most of GradeScale.letter's per-call work.
        letter = self._letters.get(points)
        if letter is None:
            if len(self._letters) >= 4096:
                self._letters.clear()
            letter = self._letters[points] = self.scale.letter(points)
        return letter
