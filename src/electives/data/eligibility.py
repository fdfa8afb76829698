"""Which candidate courses a student may be recommended, and why each other candidate is left out.

Build an :class:`EligibilityIndex` once per model (candidates = the model's courses) and call
:meth:`EligibilityIndex.evaluate` per student; :func:`check_eligibility` does both for one-off use.

A student's history is a sequence of ``(course, points, term_key)`` rows, every attempt included; ``points`` is
None (or NaN) for a mark without a grade (W, I, P, enrolment only). ``Store.student_history`` rows fit directly:
``frame[["course", "points", "term_key"]].itertuples(index=False, name=None)``. The term is accepted but no
current rule uses it.

Rules, in the order they are checked; the first that applies is the one reported:

1. History. A course's *best* graded attempt decides: passed (``scale.passed``) → ``already-passed``; graded but
   never passed → eligible when ``allow_retake_failed``, else ``failed-retake-not-allowed``; on record with no
   grade at all → ``already-taken`` unless ``allow_retake_ungraded`` (points alone cannot tell a withdrawal from
   a pass/fail pass or a course in progress, so by default none of them is recommended again).
2. Catalogue (only when one is given). A candidate the catalogue does not list → ``unknown-course`` (it may have
   been discontinued) when ``require_listed``. When ``electives_only`` and the catalogue marks at least one course
   elective, a course not marked elective (``no`` or left empty) → ``not-an-elective``; a catalogue that marks no
   course elective says nothing, so the rule is off.
3. Prerequisites (``require_prerequisites``): every direct prerequisite must have a passing best grade; a
   W-only or failed prerequisite is not met → ``missing-prerequisites`` with the missing codes.
4. Offering (``require_offered``, with a target term): ``Course.offered_in(target_term)`` is False →
   ``not-offered``; when the catalogue does not say (None) the course stays eligible.

No catalogue: only rule 1 applies, so every candidate is eligible except those passed or on record without a
grade (and failed ones when retakes are off).

Evaluating one student against 500 candidates takes about 0.1 ms: the rules run as array operations, and each
:class:`Exclusion` (with its message) is built only when it is looked up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from electives.data.catalog import Catalog, Course
from electives.data.scales import GradeScale

Reason = Literal[
    "already-passed",
    "already-taken",
    "failed-retake-not-allowed",
    "unknown-course",
    "not-an-elective",
    "missing-prerequisites",
    "not-offered",
]
HistoryRow = tuple[str, float | None, int | None]

_TERM_CACHE = 64  # distinct target terms remembered per index


@dataclass(frozen=True)
class EligibilityRules:
    """What makes a course eligible; see the module docstring for exactly how each rule applies."""

    electives_only: bool = True
    allow_retake_failed: bool = True
    allow_retake_ungraded: bool = False
    require_prerequisites: bool = True
    require_offered: bool = True
    require_listed: bool = True


@dataclass(frozen=True)
class Exclusion:
    """Why one course is left out: ``reason`` is a stable key, ``message`` a sentence for people."""

    reason: Reason
    message: str
    missing: tuple[str, ...] = ()  # missing-prerequisites: the prerequisites not passed
    term: str | None = None  # not-offered: the target term as given


@dataclass(frozen=True)
class Eligibility:
    """``eligible`` in candidate order; ``excluded`` maps every other candidate, in candidate order, to its
    :class:`Exclusion` (built when first looked up, so evaluating stays cheap); ``mask`` is True for eligible
    candidates, aligned with the index's candidates (for masking scores)."""

    eligible: tuple[str, ...]
    excluded: Mapping[str, Exclusion]
    mask: np.ndarray = field(repr=False, compare=False)


# Reason codes in the per-candidate array; a higher-precedence rule overwrites a lower one.
_OK, _HISTORY, _STATIC, _PREREQ, _OFFER = 0, 1, 2, 3, 4


class EligibilityIndex:
    """Per-catalogue structures, so that evaluating one student is a few array operations."""

    def __init__(
        self,
        catalog: Catalog | None,
        candidates: Sequence[str],
        scale: GradeScale,
        rules: EligibilityRules | None = None,
    ) -> None:
        self.candidates: tuple[str, ...] = tuple(candidates)
        if len(set(self.candidates)) != len(self.candidates):
            dupes = sorted({c for c in self.candidates if self.candidates.count(c) > 1})
            raise ValueError(f"candidate courses must be unique; repeated: {', '.join(dupes)}")
        self.catalog = catalog
        self.scale = scale
        self.rules = rules or EligibilityRules()
        self._position = {code: i for i, code in enumerate(self.candidates)}
        n = len(self.candidates)
        # Rule 2 does not depend on the student: decide it once.
        self._static: dict[int, Exclusion] = {}
        prerequisites: list[tuple[str, ...]] = [()] * n
        self._timed: list[tuple[int, Course]] = []  # listed candidates that say when they run (rule 4)
        if catalog is not None:
            marks_electives = self.rules.electives_only and any(c.elective for c in catalog)
            for i, code in enumerate(self.candidates):
                course = catalog.get(code)
                if course is None:
                    if self.rules.require_listed:
                        self._static[i] = Exclusion("unknown-course", "Not in the course catalogue")
                    elif marks_electives:
                        self._static[i] = Exclusion("not-an-elective", "Not marked as an elective in the catalogue")
                    continue
                if marks_electives and not course.elective:
                    message = "Not an elective" if course.elective is False else "Not marked as an elective"
                    self._static[i] = Exclusion("not-an-elective", message + " in the catalogue")
                    continue
                if self.rules.require_prerequisites:
                    prerequisites[i] = course.prerequisites
                if course.terms_offered and self.rules.require_offered:
                    self._timed.append((i, course))
        self._static_idx = np.fromiter(self._static, dtype=np.int64, count=len(self._static))
        # Rule 3 as a flat list of (candidate, prerequisite) pairs over the prerequisites' own numbering.
        self._prereq_codes: dict[str, int] = {}
        for pres in prerequisites:
            for p in pres:
                self._prereq_codes.setdefault(p, len(self._prereq_codes))
        self._prerequisites = prerequisites
        self._pre_owner = np.repeat(np.arange(n, dtype=np.int64), [len(p) for p in prerequisites])
        self._pre_ids = np.fromiter(
            (self._prereq_codes[p] for pres in prerequisites for p in pres), dtype=np.int64, count=len(self._pre_owner)
        )
        self._not_offered: dict[str, np.ndarray] = {}
        self._letters: dict[float, str] = {}

    def evaluate(self, history: Iterable[HistoryRow], target_term: str | None = None) -> Eligibility:
        """Eligibility of every candidate for a student with this ``history`` in ``target_term`` (a season such
        as ``Fall`` or a term such as ``2025-Fall``; None: offering is not checked). Raises
        :class:`~electives.errors.DataError` when ``target_term`` is neither a season nor a term."""
        best: dict[str, float | None] = {}
        for course, points, _term in history:
            if points is None or math.isnan(points):
                best.setdefault(course, None)
            else:
                previous = best.get(course)
                if previous is None or points > previous:
                    best[course] = float(points)
        passed = {code for code, points in best.items() if points is not None and self.scale.passed(points)}

        reasons = np.zeros(len(self.candidates), dtype=np.int8)
        term = None
        if target_term is not None:
            term = target_term.strip()
            reasons[self._offering(term)] = _OFFER
        if len(self._pre_ids):
            met = np.zeros(len(self._prereq_codes), dtype=bool)
            met[[self._prereq_codes[c] for c in passed if c in self._prereq_codes]] = True
            reasons[self._pre_owner[~met[self._pre_ids]]] = _PREREQ
        reasons[self._static_idx] = _STATIC
        taken: dict[int, float | None] = {}
        for code, points in best.items():
            i = self._position.get(code)
            if i is not None and self._excluded_by_history(code, points, passed):
                reasons[i] = _HISTORY
                taken[i] = points

        mask = reasons == _OK
        eligible = tuple(self.candidates[i] for i in np.flatnonzero(mask).tolist())
        return Eligibility(eligible, _Exclusions(self, reasons, taken, passed, term), mask)

    def _excluded_by_history(self, code: str, points: float | None, passed: set[str]) -> bool:
        if points is None:
            return not self.rules.allow_retake_ungraded
        return code in passed or not self.rules.allow_retake_failed

    def _history_exclusion(self, points: float | None, passed: bool) -> Exclusion:
        if points is None:
            return Exclusion(
                "already-taken", "Already on your record without a grade (withdrawn, pass/fail, incomplete or ongoing)"
            )
        if passed:
            return Exclusion("already-passed", f"Already passed ({self._letter(points)})")
        return Exclusion(
            "failed-retake-not-allowed",
            f"Taken before without passing ({self._letter(points)}); retakes are not recommended",
        )

    def _letter(self, points: float) -> str:
        letter = self._letters.get(points)
        if letter is None:
            if len(self._letters) >= 4096:  # numeric scales: many distinct values
                self._letters.clear()
            letter = self._letters[points] = self.scale.letter(points)
        return letter

    def _offering(self, term: str) -> np.ndarray:
        """Candidates not offered in ``term`` (cached per term)."""
        cached = self._not_offered.get(term)
        if cached is not None:
            return cached
        # Validate even when no candidate lists its terms, so a mistyped term fails the same way every time.
        Course("", None, terms_offered=("Fall",)).offered_in(term)
        result = np.array([i for i, c in self._timed if c.offered_in(term) is False], dtype=np.int64)
        if len(self._not_offered) >= _TERM_CACHE:
            self._not_offered.clear()
        self._not_offered[term] = result
        return result


class _Exclusions(Mapping[str, Exclusion]):
    """The excluded candidates of one evaluation; each :class:`Exclusion` is built on first look-up."""

    def __init__(
        self,
        index: EligibilityIndex,
        reasons: np.ndarray,
        taken: dict[int, float | None],
        passed: set[str],
        term: str | None,
    ) -> None:
        self._index, self._reasons, self._taken, self._passed, self._term = index, reasons, taken, passed, term
        self._order = np.flatnonzero(reasons).tolist()
        self._codes: list[int] | None = None  # reasons as Python ints: numpy scalars are slow one at a time
        self._built: dict[int, Exclusion] = {}

    def __getitem__(self, code: str) -> Exclusion:
        exclusion = self._built.get(self._index._position.get(code, -1))
        if exclusion is not None:
            return exclusion
        if self._codes is None:
            self._codes = self._reasons.tolist()
        i = self._index._position.get(code)
        if i is None or not self._codes[i]:
            raise KeyError(code)
        exclusion = self._built[i] = self._build(i, code, self._codes[i])
        return exclusion

    def _build(self, i: int, code: str, reason: int) -> Exclusion:
        if reason == _HISTORY:
            return self._index._history_exclusion(self._taken[i], code in self._passed)
        if reason == _STATIC:
            return self._index._static[i]
        if reason == _PREREQ:
            missing = tuple(p for p in self._index._prerequisites[i] if p not in self._passed)
            label = "Prerequisites" if len(missing) > 1 else "Prerequisite"
            return Exclusion("missing-prerequisites", f"{label} not passed: {', '.join(missing)}", missing=missing)
        return Exclusion("not-offered", f"Not offered in {self._term}", term=self._term)

    def __iter__(self) -> Iterator[str]:
        return (self._index.candidates[i] for i in self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        return f"<{len(self)} excluded courses>"


def check_eligibility(
    candidates: Sequence[str],
    catalog: Catalog | None,
    history: Iterable[HistoryRow],
    scale: GradeScale,
    target_term: str | None = None,
    rules: EligibilityRules | None = None,
) -> Eligibility:
    """One-off :meth:`EligibilityIndex.evaluate`; build the index yourself to evaluate many students."""
    return EligibilityIndex(catalog, candidates, scale, rules).evaluate(history, target_term)
