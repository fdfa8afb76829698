"""Top-k elective recommendations from a trained model, with intervals, reasons and "why not X?".

:class:`Recommender` serves one model of any family, through the :class:`~electives.models.interface.Model`
interface alone: a student is a vector (``student_vectors()`` for the trained ones, ``fold_in`` for anyone else),
ranked by ``scores(vector)``; "similar courses" come from ``course_vectors()``. Two entry points:

- :meth:`Recommender.recommend` for a student in the data, by raw id (pseudonymised here with the same key as at
  import). The model stores no grades, so the student's record comes from the grade database: it decides
  eligibility (grades imported after training already count) and feeds the explanations. Without a database
  there is no way to know what a student has passed, so a request by id then fails with a message saying so
  (enter the grades instead). A student the model was trained on keeps the trained embedding (grades imported
  since count for eligibility and explanations, and move the prediction at the next training); one only in the
  database (imported after training) is folded in from the stored grades. Anyone without a record gets one
  :class:`UnknownStudentError` whose message does not depend on the id.
- :meth:`Recommender.recommend_for_grades` for anyone else: grades typed in as ``(course, mark)`` are folded in
  (below). Nothing is stored and nothing is logged.

Fold-in (``Model.fold_in``; for NCF :mod:`~electives.models.ncf_foldin`): the student's vector is fitted to the
entered grades, with the noise level the model's validation RMSE (:mod:`~electives.serving.options`) and the
Recommender's prior strength, shrinkage and step bound. For NCF it is the MAP fit under a Gaussian prior fitted to
the trained students' embeddings. Measured (``benchmarks/foldin.py``): students held out of training entirely,
folded in, are predicted as well as students trained on (held-out / in-training RMSE 0.98 on the synthetic
university, 0.99 on college_grades), in ~2 ms. The model prepares its fold-in once per Recommender (warmed up
here), so a request is a few small matrix products: no autograd, no optimiser state, deterministic.

Implicit (enrolment-only) models predict no grade: courses are ranked by the model's score (NeuMF's interaction
probability, EASE's or iALS's score) and no interval is given; folding in is the family's own (NeuMF: "taken" (1)
against every other course (0, weighted like the training negatives) with log loss; EASE: the courses taken as
the vector; iALS: one regularised solve).

Explanations: similar courses the student did well in (:mod:`~electives.serving.cards`, over the model's course
vectors), and :func:`~electives.serving.explanations.cohort_from_similarities` over the trained students
who graded the course (:mod:`~electives.serving.cohorts`). Those per-course graders come from the database
(``Store.load_grades``, read once per Recommender), so without a database there is no cohort figure; a cohort
under ``min_cohort`` students (default 10, never below 5: k-anonymity) is never reported.

Seats: when the database holds a seat plan for the requested term (``electives plan``; per-course counts only),
each card says whether the course is likely full — more students have it in their own top k than it has seats. Nor is one for a record
under ``cohort_min_grades`` graded courses (default :data:`~electives.serving.cohorts.MIN_RECORD`): two grades
cannot define "records like yours", and the figure would then contradict the card's prediction with noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from electives.data.catalog import Catalog, canonical_term, read_catalog
from electives.data.eligibility import EligibilityIndex, EligibilityRules
from electives.data.scales import GradeScale
from electives.errors import DataError, ElectivesError
from electives.limits import DEFAULT_K, check_k
from electives.models.compute import torch_threads
from electives.models.interface import FoldIn
from electives.serving.cards import CardMaker, course_unit_vectors
from electives.serving.cohorts import MIN_RECORD, Graders
from electives.serving.entry import EligibilityRow, Entered, GradeReader
from electives.serving.explanations import MIN_COHORT, CohortStatistic, check_min_cohort
from electives.serving.options import fold_in_options
from electives.serving.results import Basis, LazyRanking, Recommendation, Recommendations

if TYPE_CHECKING:
    import torch

    from electives.data.pseudonyms import Pseudonymiser
    from electives.data.storage import Store
    from electives.models.artifact import TrainedModel

__all__ = ["Recommender", "UnknownStudentError"]

_NORMALISED = GradeScale(name="normalised", low=0.0, high=1.0, numeric=True, description="normalised grades")
_IMPLICIT_NOTE = (
    "Enrolment-only model: no grades are predicted; courses are ranked by how likely students with records like "
    "this one are to take them, and there is no interval."
)

_TYPICAL_SAMPLE = 4096


class UnknownStudentError(ElectivesError):
    """No record of the requested student; the message is the same for every id."""

    field = "student_id"


class Recommender:
    """Serves one trained model; see the module docstring.

    ``catalog``: course names, descriptions and the eligibility rules' data; when None and a ``store`` is given,
    the courses stored in the database are used. ``store``: the grade database (needed for requests by student id
    and for cohort figures). ``pseudonymiser``: the import key; when None it is read from the environment on the
    first request by id (never created: a new key would match no stored student). ``prior_strength`` scales the
    fold-in prior (1 = the Bayesian weight), ``fold_in_steps`` bounds its Gauss–Newton steps, ``threads`` is the
    torch thread count during a request (None: leave it alone). ``min_cohort``: the fewest students behind a cohort
    figure (k-anonymity; default 10, below 5 is an error); ``cohort_min_grades``: the fewest graded courses a record
    needs before cohort figures are shown (see :data:`~electives.serving.cohorts.MIN_RECORD`)."""

    def __init__(
        self,
        model: TrainedModel,
        catalog: Catalog | None = None,
        store: Store | None = None,
        pseudonymiser: Pseudonymiser | None = None,
        rules: EligibilityRules | None = None,
        *,
        prior_strength: float = 1.0,
        shrinkage: float = 0.1,
        fold_in_steps: int = 8,
        noise: float | None = None,
        cohorts: bool = True,
        min_cohort: int = MIN_COHORT,
        cohort_min_grades: int = MIN_RECORD,
        threads: int | None = 1,
    ) -> None:
        self.model = model
        self.store = store
        self.mode = model.mode
        self.explicit = self.mode == "explicit"
        self._pseudonymiser = pseudonymiser
        self.prior_strength = float(prior_strength)
        self.fold_in_steps = int(fold_in_steps)
        self.threads = threads
        self.cohorts = cohorts
        self.min_cohort = check_min_cohort(min_cohort)  # k-anonymity of every figure about other students
        self.cohort_min_grades = max(1, int(cohort_min_grades))
        if not (self.prior_strength > 0 and 0.0 <= shrinkage <= 1.0 and self.fold_in_steps >= 1):
            raise ValueError("prior_strength must be > 0, shrinkage in [0, 1] and fold_in_steps ≥ 1")
        db_scale = self._check_scales()
        # Grades are shown on the model's scale; eligibility needs some scale even for enrolment-only models.
        self.scale: GradeScale | None = (
            model.scale if model.scale is not None else (db_scale if self.explicit else None)
        )
        if self.explicit and self.scale is None:
            self.scale = _NORMALISED
        if catalog is None and store is not None:
            stored = store.courses()
            catalog = Catalog(tuple(stored), source=f"courses in {store.url}") if stored else None
        self.catalog = catalog
        self.course_ids: tuple[str, ...] = tuple(model.course_ids)
        self._course_index = {c: i for i, c in enumerate(self.course_ids)}
        self._student_index = model.student_index()
        catalog_codes = catalog.codes if catalog is not None else None
        self._reader = GradeReader(
            course_index=self._course_index, catalog_codes=catalog_codes, scale=self.scale, explicit=self.explicit
        )
        self._eligibility = self._eligibility_index(rules, db_scale)
        # Built once: the model keeps what it prepared for these options, so a request does no set-up.
        self._options = fold_in_options(
            model,
            noise=noise,
            prior_strength=self.prior_strength,
            shrinkage=float(shrinkage),
            max_steps=self.fold_in_steps,
        )
        self.noise = self._options.noise
        fitted = self._fitted = model.fitted
        with torch_threads(threads):
            self._vectors = fitted.student_vectors()
            # The trained students' average: cohorts compare students by their offsets from it.
            self._mean = self._vectors.astype(np.float64).mean(0).astype(np.float32)
            fitted.fold_in({}, self._options)  # warm-up: the model prepares its fold-in now, not in a request
            self._cards = self._card_maker()
        self._graders: Graders | None = None
        self._note = None if self.explicit else _IMPLICIT_NOTE

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        db_url: str | None = None,
        *,
        catalog: Catalog | str | Path | None = None,
        pseudonymiser: Pseudonymiser | None = None,
        rules: EligibilityRules | None = None,
        **options: Any,
    ) -> Recommender:
        """Load a model artifact (:func:`~electives.models.artifact.load_model`), open the database at ``db_url``
        (it must exist: recommending never creates one) and read ``catalog`` when it is a path."""
        from electives.models.artifact import load_model

        model = load_model(model_dir)
        if catalog is not None and not isinstance(catalog, Catalog):
            catalog = read_catalog(catalog)
        from electives.data.storage import open_store

        store = open_store(db_url) if db_url else None
        try:
            return cls(model, catalog, store, pseudonymiser, rules, **options)
        except BaseException:
            if store is not None:
                store.close()
            raise

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> Recommender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_scales(self) -> GradeScale | None:
        """The database's grade scale, after checking that it is the model's."""
        model, store = self.model, self.store
        db_scale = store.scale() if store is not None else None
        if model.scale is not None and db_scale is not None and db_scale.name != model.scale.name:
            raise DataError(
                f"the model was trained on grade scale {model.scale.name!r} but database {store.url} holds "
                f"grades on scale {db_scale.name!r}"
            )
        return db_scale

    def _eligibility_index(self, rules: EligibilityRules | None, db_scale: GradeScale | None) -> EligibilityIndex:
        from electives.data.importing import ENROLMENT_ONLY_SCALE

        scale = self.scale or db_scale or ENROLMENT_ONLY_SCALE
        return EligibilityIndex(self.catalog, self.course_ids, scale, rules)

    def _card_maker(self) -> CardMaker:
        catalog, course_vectors = self.catalog, self._fitted.course_vectors()
        entries = [catalog.get(c) if catalog is not None else None for c in self.course_ids]
        names = [
            (course.name if course is not None and course.name else None) or self.model.course_names.get(code) or code
            for code, course in zip(self.course_ids, entries, strict=True)
        ]
        return CardMaker(
            course_ids=self.course_ids,
            names=names,
            descriptions=[course.description if course is not None else None for course in entries],
            unit_vectors=None if course_vectors is None else course_unit_vectors(course_vectors),
            explicit=self.explicit,
            scale=self.scale,
            calibration=self.model.calibration,
            typical=self._typical() if self.explicit else None,
        )

    def _typical(self) -> np.ndarray:
        """Each course's mean prediction over the trained students (at most 4,096 of them, evenly spaced: a mean
        needs no more, and loading stays quick on a large university)."""
        n = self._fitted.n_students
        students = np.unique(np.linspace(0, n - 1, num=min(n, _TYPICAL_SAMPLE)).astype(np.int64))
        return np.asarray(self._fitted.score_all(students), dtype=np.float64).mean(axis=0)

    # ------------------------------------------------------------------ requests
    def recommend(self, student_id: str, k: int = DEFAULT_K, target_term: str | None = None) -> Recommendations:
        """Recommendations for a student on record, by raw id; see the module docstring."""
        k = check_k(k)
        if self.store is None:
            raise ElectivesError(
                "recommending by student id needs the grade database: the model stores no grades, so it cannot "
                "tell which courses the student has passed; enter the grades instead"
            )
        pseudonym = self._pseudonymiser_or_env().pseudonym(student_id)
        history = self.store.student_history(pseudonym)
        if history.empty:
            raise UnknownStudentError(
                "no grades on record for this student id in the database; check the id (and the secret key), "
                "or enter the grades instead"
            )
        rows, entries, ignored = self._reader.read_history(history)
        index = self._student_index.get(pseudonym)
        with torch_threads(self.threads):
            if index is not None:
                p, basis, used = self._vectors[index], "trained", 0
            else:
                fold = self._fold_in(entries)
                p, basis, used = fold.embedding, "folded-in", fold.grades_used
            return self._build(p, rows, entries, k, target_term, basis, used, ignored, exclude_student=index)

    def recommend_for_grades(
        self,
        grades: Sequence[tuple[str, str | float]],
        k: int = DEFAULT_K,
        target_term: str | None = None,
    ) -> Recommendations:
        """Recommendations for someone not on record, from ``(course, mark)`` pairs (marks on the model's scale).
        A course entered twice is refused unless the earlier mark is a fail: then it is a retake, the later
        attempt counts and the answer's note says so. Nothing is stored or logged."""
        k = check_k(k)
        entered = self._reader.read_entered(grades)
        with torch_threads(self.threads):
            fold = self._fold_in(entered.entries)
            recs = self._build(
                fold.embedding,
                entered.rows,
                entered.entries,
                k,
                target_term,
                "folded-in",
                fold.grades_used,
                entered.ignored,
            )
        return self._with_entry_notes(recs, entered)

    def fold_in(self, grades: Sequence[tuple[str, str | float]]) -> FoldIn:
        """The folded-in embedding for entered grades (what :meth:`recommend_for_grades` ranks with)."""
        entries = self._reader.read_entered(grades).entries
        with torch_threads(self.threads):
            return self._fold_in(entries)

    def scores(self, embedding: np.ndarray | torch.Tensor) -> np.ndarray:
        """Model output (normalised grade, or an implicit model's ranking score) of a student embedding for every course."""
        with torch_threads(self.threads):
            return self._scores(np.asarray(embedding, dtype=np.float32))

    def student_embedding(self, pseudonym: str) -> np.ndarray | None:
        """The trained embedding of a student in the model (by pseudonym), else None."""
        index = self._student_index.get(pseudonym)
        return None if index is None else self._vectors[index].copy()

    # ------------------------------------------------------------------ internals
    def _with_entry_notes(self, recs: Recommendations, entered: Entered) -> Recommendations:
        """The answer with what the entered grades left to say: an average student's ranking (nothing the model
        knows was entered) and the retakes whose later attempt counted."""
        notes = [recs.note] if recs.note else []
        if not entered.entries:
            what = "grades" if self.explicit else "courses"
            if not entered.rows:
                notes.append(f"No {what} were entered, so this is the ranking for an average student.")
            else:
                notes.append(
                    f"None of the {what} entered is one the model has data on, so this is the ranking for an "
                    "average student."
                )
        if entered.retaken:
            listed = ", ".join(entered.retaken)
            notes.append(
                f"{listed}: entered after a failed attempt, so the later attempt counts (as the registrar keeps it)."
            )
        if len(notes) == (1 if recs.note else 0):
            return recs
        return replace(recs, note=" ".join(notes), retaken=entered.retaken)

    def _pseudonymiser_or_env(self) -> Pseudonymiser:
        if self._pseudonymiser is None:
            from electives.data.pseudonyms import Pseudonymiser, load_key

            self._pseudonymiser = Pseudonymiser(load_key(create=False))
        return self._pseudonymiser

    def _fold_in(self, entries: Mapping[int, float]) -> FoldIn:
        return self._fitted.fold_in(entries, self._options)

    def _scores(self, p: np.ndarray) -> np.ndarray:
        return self._fitted.scores(p)

    def _build(
        self,
        p: np.ndarray,
        rows: Sequence[EligibilityRow],
        entries: Mapping[int, float],
        k: int,
        target_term: str | None,
        basis: Basis,
        used: int,
        ignored: tuple[str, ...],
        exclude_student: int | None = None,
    ) -> Recommendations:
        eligibility = self._eligibility.evaluate(rows, target_term)
        scores = self._scores(p)
        candidates = np.flatnonzero(eligibility.mask)
        # Stable sort on −score: ties go to catalogue (model) order, the same on every run.
        order = candidates[np.argsort(-scores[candidates], kind="stable")]
        top = order[:k]
        # A record too short to define "records like yours" gets no cohort figure (see cohorts.MIN_RECORD).
        long_enough = self.explicit and len(entries) >= self.cohort_min_grades
        cohorts = self._cohorts(top, p, exclude_student) if long_enough else [None] * len(top)
        cal = self.model.calibration if self.explicit else None
        return Recommendations(
            mode=self.mode,
            basis=basis,
            items=self._seat_outlook(self._cards.cards(top, scores, entries, cohorts), target_term),
            k=k,
            eligible=len(order),
            excluded=eligibility.excluded,
            target_term=target_term.strip() if target_term else None,
            scale=self.scale if self.explicit else None,
            coverage=None if cal is None else cal.coverage,
            grades_used=used,
            ignored=ignored,
            note=self._note,
            ranking=LazyRanking(self.course_ids, order, scores),
            known=self._reader.known,
        )

    def _seat_outlook(self, cards: tuple[Recommendation, ...], target_term: str | None) -> tuple[Recommendation, ...]:
        """Cards marked likely full (or not) from the term's stored seat plan (``electives plan``); unchanged when
        there is no database, no term or no plan for it."""
        term = canonical_term(target_term) if self.store is not None and target_term else None
        plan = self.store.plan(term) if term is not None else None
        if not plan:
            return cards
        return tuple(
            replace(card, likely_full=plan[card.course].likely_full) if card.course in plan else card for card in cards
        )

    def _cohorts(self, courses: np.ndarray, p: np.ndarray, exclude: int | None) -> list[CohortStatistic | None]:
        if not self.cohorts or self.store is None:
            return [None] * len(courses)
        if self._graders is None:
            # Built with the graders, not at load: without a database no cohort figure is ever computed.
            self._graders = Graders.from_store(
                self.store,
                student_index=self._student_index,
                course_index=self._course_index,
                embeddings=self._vectors,
                mean=self._mean,
            )
        return self._graders.cohorts(courses, p - self._mean, exclude=exclude, min_cohort=self.min_cohort)
