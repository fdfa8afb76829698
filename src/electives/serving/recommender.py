"""Top-k elective recommendations from a trained NCF model, with intervals, reasons and "why not X?".

:class:`Recommender` serves one model. Two entry points:

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

Fold-in. The student's GMF and MLP embeddings ``p`` are fitted to the entered grades with everything else frozen,
as a MAP estimate: squared error of the predicted normalised grades over the noise variance ``σ²`` (the model's
validation RMSE) plus a Gaussian prior whose mean and (shrunk) covariance are those of the trained students'
embeddings. Writing ``p = μ + L z`` (``Σ = L Lᵀ``) the prior term is ``½‖z‖²``; a few Gauss–Newton
(Levenberg–Marquardt) steps from ``z = 0`` (the average student) converge, each solving an ``n × n`` system for
``n`` grades (or the ``d × d`` one when ``n > d``). Measured (``benchmarks/foldin.py``): students held out of
training entirely, folded in, are predicted as well as students trained on (held-out / in-training RMSE 0.98 on
the synthetic university, 0.99 on college_grades), in ~2 ms. The course side of the network (the GMF course vectors times the output weights,
the MLP first layer applied to every course embedding) is computed once per Recommender, so a request is a few
small matrix products: no autograd, no optimiser state, deterministic.

Implicit (enrolment-only) models predict no grade: courses are ranked by the model's interaction probability and
no interval is given; folding in then fits "taken" (1) against every other course (0, weighted like the training
negatives) with log loss.

Explanations: :func:`~electives.serving.explanations.similar_taken_courses` over the course side's learned vectors (GMF
course vectors times the GMF output weights, next to the MLP first-layer course projections, each block centred
and scaled to equal weight), and :func:`~electives.serving.explanations.cohort_from_similarities` over the trained students who
graded the course. Those per-course graders come from the database (``Store.load_grades``, read once per
Recommender), so without a database there is no cohort figure; a cohort under ``min_cohort`` students (default
10, never below 5: k-anonymity) is never reported.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch

from electives.data.catalog import Catalog, read_catalog
from electives.data.eligibility import EligibilityIndex, EligibilityRules, Exclusion, Reason
from electives.data.scales import GradeScale, MarkError
from electives.errors import DataError, ElectivesError
from electives.limits import DEFAULT_K, check_k
from electives.serving.explanations import (
    MIN_COHORT,
    CohortStatistic,
    check_min_cohort,
    cohort_from_similarities,
    explanation_sentence,
)

if TYPE_CHECKING:
    from electives.data.pseudonyms import Pseudonymiser
    from electives.data.storage import Store
    from electives.models.artifact import TrainedModel

__all__ = [
    "DEFAULT_K",
    "FoldIn",
    "GradeEntryError",
    "Recommendation",
    "Recommendations",
    "Recommender",
    "SimilarCourse",
    "UnknownStudentError",
    "WhyNot",
]

# Fallback noise (normalised units) when the model records no validation RMSE: typical for grade data.
_DEFAULT_NOISE = 0.1
_TOLERANCE = 1e-2  # fold-in stops once a step lowers the objective by less than this share
# Above this many multiply-adds in one product OpenBLAS spreads it over every core, which on shared cores is far
# slower than one thread (measured: 5 ms instead of 40 µs); such fold-ins stay with torch (its threads are set).
_NUMPY_FOLD_IN_WORK = 262_144
_NORMALISED = GradeScale(name="normalised", low=0.0, high=1.0, numeric=True, description="normalised grades")
Basis = Literal["trained", "folded-in"]
# Eligibility's reasons, plus the ranking's own answers.
WhyNotReason = Literal["recommended", "ranked-lower", Reason, "no-data", "not-a-course"]


class UnknownStudentError(ElectivesError):
    """No record of the requested student; the message is the same for every id."""

    field = "student_id"


class GradeEntryError(DataError):
    """An entered grade cannot be used; ``position`` is its index in the list given (for line numbers) and
    ``part`` says whether the course or the mark is at fault (for pointing at a form field)."""

    def __init__(self, message: str, position: int, course: str, part: Literal["course", "mark"] = "course") -> None:
        super().__init__(message)
        self.position = position
        self.course = course
        self.part = part


# ---------------------------------------------------------------------------------------------------- results


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
    output: the predicted normalised grade (explicit) or the interaction probability (implicit)."""

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

    def to_dict(self, scale: GradeScale | None) -> dict[str, Any]:
        cohort = None
        if self.cohort is not None:
            cohort = {"size": self.cohort.size, "mean": round(self.cohort.mean, 4)}
            if scale is not None:
                points = scale.to_points(self.cohort.mean)
                cohort.update(points=round(points, 2), letter=scale.letter(points))
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
    ``ignored`` lists entered or stored courses the model has no data on (they still count for eligibility)."""

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
    # Every eligible candidate, best first, with its score: ranks for why_not().
    _ranking: Mapping[str, tuple[int, float]] = field(default_factory=dict, repr=False, compare=False)
    _known: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)  # catalogue codes

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
        ranked = self._ranking.get(code)
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
                f"It is eligible but ranked {rank} of {len(self._ranking)} ({shown}); only the top {self.k} are shown.",
            )
        if code in self._known:
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
        }


@dataclass(frozen=True)
class FoldIn:
    """A folded-in student: the embedding (GMF part first) and the optimisation's trace."""

    embedding: np.ndarray
    iterations: int
    objective: float
    grades_used: int


class _Ranking(Mapping[str, tuple[int, float]]):
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


# ---------------------------------------------------------------------------------------------------- the network


class _Network:
    """The frozen course side of an NCF model as plain tensors, for scoring one student against every course and
    for the Jacobian of the logits with respect to one student's embedding."""

    def __init__(self, module: torch.nn.Module) -> None:
        with torch.no_grad():
            gmf, mlp = getattr(module, "gmf", None), getattr(module, "mlp", None)
            out_w = module.out.weight.detach().float().cpu()[0]
            self.bias = float(module.out.bias.detach().float().cpu()[0])
            self.dg = gmf.student.embedding_dim if gmf is not None else 0
            self.dm = mlp.student.embedding_dim if mlp is not None else 0
            self.d = self.dg + self.dm
            self.n_courses = int(module.n_courses)
            parts = []
            if gmf is not None:
                parts.append(gmf.student.weight.detach().float().cpu())
                # wᵀ(p ⊙ q) = (q ⊙ w)ᵀ p: the GMF logit is linear in p.
                self.a = (gmf.course.weight.detach().float().cpu() * out_w[: self.dg]).contiguous()
            if mlp is not None:
                parts.append(mlp.student.weight.detach().float().cpu())
                first = mlp.layers[0]
                w1 = first.weight.detach().float().cpu()
                self.w1s = w1[:, : self.dm].contiguous()
                self.b1 = first.bias.detach().float().cpu().clone()
                self.course_half = (mlp.course.weight.detach().float().cpu() @ w1[:, self.dm :].T).contiguous()
                self.rest = [
                    (lin.weight.detach().float().cpu().contiguous(), lin.bias.detach().float().cpu().clone())
                    for lin in mlp.layers[1:]
                ]
                self.wm = out_w[self.dg :].contiguous()
            self.students = torch.cat(parts, dim=1).contiguous()  # (n_students, d)

    def logits(self, p: torch.Tensor) -> torch.Tensor:
        """Logits of one student (embedding ``p``) for every course."""
        z = torch.full((self.n_courses,), self.bias)
        if self.dg:
            z = torch.addmv(z, self.a, p[: self.dg])
        if self.dm:
            h = torch.relu(self.course_half + torch.addmv(self.b1, self.w1s, p[self.dg :]))
            for w, b in self.rest:
                h = torch.relu(torch.addmm(b, h, w.T))
            z = torch.addmv(z, h, self.wm)
        return z

    def set_prior(self, mu: torch.Tensor, chol: torch.Tensor) -> None:
        """Precompute the student side in whitened coordinates p = μ + L z: the GMF logit becomes
        base + (A L_g) z and the MLP's first layer first_base + (W₁ˢ L_m) z, so a fold-in step never forms p."""
        self.mu, self.chol = mu, chol
        base = torch.full((self.n_courses,), self.bias)
        self.z_gmf = None
        if self.dg:
            base = torch.addmv(base, self.a, mu[: self.dg])
            self.z_gmf = (self.a @ chol[: self.dg]).contiguous()
        self.base = base
        if self.dm:
            self.first_base = torch.addmv(self.b1, self.w1s, mu[self.dg :])
            self.z_first = (self.w1s @ chol[self.dg :]).contiguous()
        # Every fold-in starts at the average student (z = 0): its logits and Jacobian for all courses, once.
        self.logits0, self.jac0 = self.rows_logits_and_jacobian(torch.zeros(self.d), self.gather(None))
        # NumPy views of the same tensors for the explicit fold-in: its matrices are a few rows by a few dozen
        # columns, where NumPy's per-operation cost is a fraction of torch's (the web API's hot path).
        self.np_mu, self.np_chol = mu.numpy(), chol.numpy()
        self.np_base, self.np_logits0, self.np_jac0 = self.base.numpy(), self.logits0.numpy(), self.jac0.numpy()
        self.np_z_gmf = None if self.z_gmf is None else self.z_gmf.numpy()
        if self.dm:
            self.np_course_half, self.np_first_base = self.course_half.numpy(), self.first_base.numpy()
            self.np_z_first, self.np_wm = self.z_first.numpy(), self.wm.numpy()
            self.np_rest = [(np.ascontiguousarray(w.numpy().T), w.numpy(), b.numpy()) for w, b in self.rest]
        # Multiply-adds per entered grade in the largest product of a NumPy fold-in step (see _NUMPY_FOLD_IN_WORK).
        layers = self.rest if self.dm else []
        self.np_row_work = max([self.d * self.z_first.shape[0] if self.dm else self.d, *(w.numel() for w, _ in layers)])

    def np_rows_logits_and_jacobian(
        self, z: np.ndarray, gathered: tuple[np.ndarray, np.ndarray | None, np.ndarray | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`rows_logits_and_jacobian` in NumPy (same formulas) for the gathered courses."""
        base, zg, ch = gathered
        logits = base if zg is None else base + zg @ z
        jac = zg
        if ch is not None:
            pre = [ch + (self.np_first_base + self.np_z_first @ z)]
            for w_t, _, b in self.np_rest:
                pre.append(np.maximum(pre[-1], 0) @ w_t + b)
            logits = logits + np.maximum(pre[-1], 0) @ self.np_wm
            g = self.np_wm * (pre[-1] > 0)
            for (_, w, _), h in zip(reversed(self.np_rest), reversed(pre[:-1]), strict=True):
                g = (g @ w) * (h > 0)
            jac = g @ self.np_z_first if jac is None else jac + g @ self.np_z_first
        assert jac is not None
        return logits, jac

    def gather(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The per-course tensors of the courses ``rows`` (all when None), gathered once per fold-in."""
        if rows is None:
            return self.base, self.z_gmf, self.course_half if self.dm else None
        return (
            self.base[rows],
            None if self.z_gmf is None else self.z_gmf[rows],
            self.course_half[rows] if self.dm else None,
        )

    def rows_logits_and_jacobian(
        self, z: torch.Tensor, gathered: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the gathered courses at whitened ``z`` and their Jacobian (n, d) in z, by hand (no autograd:
        its graph bookkeeping costs more than these small products)."""
        base, zg, ch = gathered
        logits = base if zg is None else torch.addmv(base, zg, z)
        jac = zg
        if ch is not None:
            pre = [ch + torch.addmv(self.first_base, self.z_first, z)]
            for w, b in self.rest:
                pre.append(torch.addmm(b, torch.relu(pre[-1]), w.T))
            logits = torch.addmv(logits, torch.relu(pre[-1]), self.wm)
            g = self.wm * (pre[-1] > 0)  # ∂logit / ∂(last pre-activation), (n, h_L)
            for (w, _), h in zip(reversed(self.rest), reversed(pre[:-1]), strict=True):
                g = (g @ w) * (h > 0)
            jac = g @ self.z_first if jac is None else torch.addmm(jac, g, self.z_first)
        assert jac is not None
        return logits, jac


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    # One request is a handful of small matrix products: extra threads only add scheduling jitter (on a loaded
    # 2-core machine, 2 threads gave a 36 ms p99 for what takes 0.3 ms on one).
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if before != n:
            torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------- recommender


@dataclass
class _Graders:
    """Per course: the trained students with a grade on it (model indices) and their normalised grades; and every
    trained student's centred vector at unit length (zero at the mean), so that a cohort's cosines are a product."""

    students: list[np.ndarray]
    grades: list[np.ndarray]
    units: np.ndarray


class Recommender:
    """Serves one trained model; see the module docstring.

    ``catalog``: course names, descriptions and the eligibility rules' data; when None and a ``store`` is given,
    the courses stored in the database are used. ``store``: the grade database (needed for requests by student id
    and for cohort figures). ``pseudonymiser``: the import key; when None it is read from the environment on the
    first request by id (never created: a new key would match no stored student). ``prior_strength`` scales the
    fold-in prior (1 = the Bayesian weight), ``fold_in_steps`` bounds its Gauss–Newton steps, ``threads`` is the
    torch thread count during a request (None: leave it alone). ``min_cohort``: the fewest students behind a cohort
    figure (k-anonymity; default 10, below 5 is an error)."""

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
        if not (self.prior_strength > 0 and 0.0 <= shrinkage <= 1.0 and self.fold_in_steps >= 1):
            raise ValueError("prior_strength must be > 0, shrinkage in [0, 1] and fold_in_steps ≥ 1")

        db_scale = store.scale() if store is not None else None
        if model.scale is not None and db_scale is not None and db_scale.name != model.scale.name:
            raise DataError(
                f"the model was trained on grade scale {model.scale.name!r} but database {store.url} holds "
                f"grades on scale {db_scale.name!r}"
            )
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
        self._casefold: dict[str, str | None] = {}
        for code in (*self.course_ids, *(catalog.codes if catalog is not None else ())):
            key = code.casefold()
            self._casefold[key] = code if self._casefold.get(key, code) == code else None  # None: ambiguous
        self._student_index = model.student_index()
        from electives.data.importing import ENROLMENT_ONLY_SCALE

        self._eligibility = EligibilityIndex(
            catalog, self.course_ids, self.scale or db_scale or ENROLMENT_ONLY_SCALE, rules
        )
        self._names = [self._course_name(c) for c in self.course_ids]
        self._descriptions = [
            (catalog.get(c).description if catalog is not None and catalog.get(c) is not None else None)
            for c in self.course_ids
        ]
        self._known_codes = frozenset(self.course_ids) | (catalog.codes if catalog is not None else frozenset())

        with _torch_threads(threads), torch.no_grad():
            self._net = _Network(model.fitted.model)
            s = self._net.students.double()
            self._mu = s.mean(0)
            cov = torch.cov(s.T) if len(s) > 1 else torch.eye(self._net.d, dtype=torch.float64) * 1e-4
            cov = cov.reshape(self._net.d, self._net.d)
            # Shrink towards the average variance: a few hundred students do not pin down every direction.
            avg = float(torch.diagonal(cov).mean()) or 1e-4
            cov = (1 - shrinkage) * cov + shrinkage * avg * torch.eye(self._net.d, dtype=torch.float64)
            cov = cov + 1e-8 * avg * torch.eye(self._net.d, dtype=torch.float64)
            self._net.set_prior(self._mu.float(), torch.linalg.cholesky(cov).float())
            self._mu = self._mu.float()
            self._course_vectors = self._explanation_vectors()
            norms = np.linalg.norm(self._course_vectors, axis=1, keepdims=True)
            # Unit rows, once: the cosines of every card's explanation are then one matrix product per request.
            self._unit_vectors = np.divide(
                self._course_vectors, norms, out=np.zeros_like(self._course_vectors), where=norms > 0
            )
        self.noise = float(noise) if noise is not None else self._noise_from_model()
        self._graders: _Graders | None = None
        self._letters: dict[float, str] = {}
        self._note = (
            None
            if self.explicit
            else "Enrolment-only model: no grades are predicted; courses are ranked by how likely students with "
            "records like this one are to take them, and there is no interval."
        )

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

    def _course_name(self, code: str) -> str:
        course = self.catalog.get(code) if self.catalog is not None else None
        return (
            (course.name if course is not None and course.name else None) or self.model.course_names.get(code) or code
        )

    def _noise_from_model(self) -> float:
        """σ of a grade around its prediction (normalised): the validation RMSE the model recorded, else the
        calibration interval's half-width read as a normal quantile, else a typical value."""
        metrics = self.model.manifest.get("metrics") or {}
        rmse = metrics.get("val_rmse")
        span = self.model.scale.span if self.model.scale is not None else 1.0
        if isinstance(rmse, int | float) and math.isfinite(rmse) and rmse > 0:
            return float(rmse) / span
        cal = self.model.calibration
        if cal is not None:
            z = _normal_quantile(0.5 + cal.coverage / 2)
            half = (cal.upper - cal.lower) / 2
            if half > 0:
                return half / z
        return _DEFAULT_NOISE

    def _explanation_vectors(self) -> np.ndarray:
        """Per course, what the network sees of it: GMF vector ⊙ output weights and the MLP first-layer projection,
        each centred (cosine of uncentred vectors mostly measures the common offset) and scaled to equal weight."""
        blocks = []
        net = self._net
        for block in (net.a if net.dg else None, net.course_half if net.dm else None):
            if block is None:
                continue
            b = block.double().numpy()
            b = b - b.mean(0)
            scale = float(np.sqrt((b**2).sum(1).mean())) or 1.0
            blocks.append(b / scale)
        return np.ascontiguousarray(np.hstack(blocks))

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
        rows, entries, ignored = self._history_from_frame(history)
        index = self._student_index.get(pseudonym)
        with _torch_threads(self.threads), torch.inference_mode():
            if index is not None:
                p, basis, used = self._net.students[index], "trained", 0
            else:
                fold = self._fold_in(entries)
                p, basis, used = torch.from_numpy(fold.embedding), "folded-in", fold.grades_used
            return self._build(p, rows, entries, k, target_term, basis, used, ignored, exclude_student=index)

    def recommend_for_grades(
        self,
        grades: Sequence[tuple[str, str | float]],
        k: int = DEFAULT_K,
        target_term: str | None = None,
    ) -> Recommendations:
        """Recommendations for someone not on record, from ``(course, mark)`` pairs (marks on the model's scale;
        a later entry of the same course is the later attempt). Nothing is stored or logged."""
        k = check_k(k)
        rows, entries, ignored = self._parse_grades(grades)
        with _torch_threads(self.threads), torch.inference_mode():
            fold = self._fold_in(entries)
            p = torch.from_numpy(fold.embedding)
            return self._build(p, rows, entries, k, target_term, "folded-in", fold.grades_used, ignored, None)

    def fold_in(self, grades: Sequence[tuple[str, str | float]]) -> FoldIn:
        """The folded-in embedding for entered grades (what :meth:`recommend_for_grades` ranks with)."""
        _, entries, _ = self._parse_grades(grades)
        with _torch_threads(self.threads), torch.inference_mode():
            return self._fold_in(entries)

    def scores(self, embedding: np.ndarray | torch.Tensor) -> np.ndarray:
        """Model output (normalised grade or probability) of a student embedding for every course."""
        p = torch.as_tensor(np.asarray(embedding, dtype=np.float32))
        with _torch_threads(self.threads), torch.inference_mode():
            return torch.sigmoid(self._net.logits(p)).numpy().astype(np.float64)

    def student_embedding(self, pseudonym: str) -> np.ndarray | None:
        """The trained embedding of a student in the model (by pseudonym), else None."""
        index = self._student_index.get(pseudonym)
        return None if index is None else self._net.students[index].numpy().copy()

    # ------------------------------------------------------------------ parsing
    def _pseudonymiser_or_env(self) -> Pseudonymiser:
        if self._pseudonymiser is None:
            from electives.data.pseudonyms import Pseudonymiser, load_key

            self._pseudonymiser = Pseudonymiser(load_key(create=False))
        return self._pseudonymiser

    def _resolve(self, code: str) -> str | None:
        code = code.strip()
        if code in self._course_index or code in self._known_codes:
            return code
        return self._casefold.get(code.casefold())

    def _parse_grades(
        self, grades: Sequence[tuple[str, str | float]]
    ) -> tuple[list[tuple[str, float | None, None]], dict[int, float], tuple[str, ...]]:
        """Eligibility rows, fold-in targets {course index: normalised grade (latest entry)} and the entered
        courses the model has no data on."""
        rows: list[tuple[str, float | None, None]] = []
        entries: dict[int, float] = {}
        ignored: dict[str, None] = {}
        for position, item in enumerate(grades):
            try:
                raw_course, raw_mark = item
            except (TypeError, ValueError):
                raise GradeEntryError(
                    f"grade {position + 1}: expected a (course, mark) pair, got {item!r}", position, ""
                ) from None
            course = self._resolve(str(raw_course))
            if course is None:
                where = "the model's courses or the catalogue" if self.catalog is not None else "the model's courses"
                raise GradeEntryError(
                    f"unknown course {str(raw_course).strip()!r}: not in {where}", position, str(raw_course)
                )
            points = self._parse_mark(raw_mark, course, position)
            rows.append((course, points, None))
            index = self._course_index.get(course)
            if index is None:
                ignored[course] = None
                continue
            if self.explicit:
                if points is not None:
                    entries.pop(index, None)  # re-insert: the latest attempt counts, in entry order
                    entries[index] = self.scale.normalise(points)
            else:
                entries[index] = 1.0
        return rows, entries, tuple(ignored)

    def _parse_mark(self, raw: str | float, course: str, position: int) -> float | None:
        if not self.explicit and self.model.scale is None:
            return None  # enrolment-only: a course on record counts as taken, whatever the mark says
        text = raw if isinstance(raw, str) else (f"{raw:g}" if isinstance(raw, int | float) else str(raw))
        try:
            return self.scale.parse(text).points
        except MarkError as exc:
            raise GradeEntryError(f"course {course!r}: {exc}", position, course, "mark") from None

    def _history_from_frame(
        self, history: pd.DataFrame
    ) -> tuple[list[tuple[str, float | None, int | None]], dict[int, float], tuple[str, ...]]:
        """A stored history (all attempts, oldest first) as eligibility rows and fold-in targets (latest graded
        attempt per course, like training's default retake policy)."""
        courses = history["course"].astype(str).tolist()
        points = [
            None if p is None or (isinstance(p, float) and math.isnan(p)) else float(p) for p in history["points"]
        ]
        grades = history["grade"].to_numpy(dtype=float)
        keys = [None if pd.isna(k) else int(k) for k in history["term_key"].astype(object)]
        rows = list(zip(courses, points, keys, strict=True))
        entries: dict[int, float] = {}
        ignored: dict[str, None] = {}
        for course, grade in zip(courses, grades, strict=True):
            index = self._course_index.get(course)
            if index is None:
                ignored[course] = None
            elif not self.explicit:
                entries[index] = 1.0
            elif not math.isnan(grade):
                entries.pop(index, None)
                entries[index] = float(grade)
        return rows, entries, tuple(ignored)

    # ------------------------------------------------------------------ fold-in
    def _fold_in(self, entries: Mapping[int, float]) -> FoldIn:
        if self.explicit and len(entries) * self._net.np_row_work <= _NUMPY_FOLD_IN_WORK:
            return self._fold_in_explicit(entries)
        net = self._net
        lam = self.prior_strength
        mu = net.mu
        if self.explicit:
            if not entries:
                return FoldIn(mu.numpy().copy(), 0, 0.0, 0)
            rows = torch.tensor(list(entries.keys()), dtype=torch.int64)
            y = torch.tensor(list(entries.values()), dtype=torch.float32)
            weight: float | torch.Tensor = 1.0 / self.noise**2
            used = len(entries)
        else:
            taken = torch.zeros(net.n_courses, dtype=torch.bool)
            if entries:
                taken[list(entries.keys())] = True
            rows = torch.arange(net.n_courses)
            y = taken.float()
            used = int(taken.sum())
            if used == 0 or used == net.n_courses:
                return FoldIn(mu.numpy().copy(), 0, 0.0, used)
            # Training sees n_negatives sampled negatives per positive: weight all negatives to that total.
            neg_w = min(1.0, self.model.fitted.config.n_negatives * used / (net.n_courses - used))
            weight = torch.where(taken, 1.0, neg_w)
        gathered = net.gather(rows)

        def objective(z: torch.Tensor, logits: torch.Tensor) -> tuple[float, torch.Tensor]:
            # −log posterior: ½Σ(s − y)²/σ² (Gaussian grades) or Σ log loss, plus ½λ‖z‖² (z ~ N(0, I)).
            s = torch.sigmoid(logits)
            if isinstance(weight, float):
                data = 0.5 * weight * float(torch.dot(s - y, s - y))
            else:
                bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
                data = float(torch.dot(weight, bce))
            return data + 0.5 * lam * float(torch.dot(z, z)), s

        z = torch.zeros(net.d)
        logits, jac = net.logits0[rows], net.jac0[rows]
        current, s = objective(z, logits)
        damping, steps = 0.0, 0
        for _ in range(self.fold_in_steps):
            steps += 1
            if isinstance(weight, float):
                slope = s * (1 - s)
                g_coef = (weight * (s - y)) * slope  # ∂/∂logit of ½·w·(s − y)²
                h_sqrt = slope * math.sqrt(weight)  # √ of its Gauss–Newton curvature
            else:
                g_coef = weight * (s - y)
                h_sqrt = (weight * s * (1 - s)).sqrt()
            grad = torch.addmv(z, jac.T, g_coef, beta=lam)
            z_new = z - _solve_damped(jac * h_sqrt[:, None], grad, lam + damping)
            logits_new, jac_new = net.rows_logits_and_jacobian(z_new, gathered)
            value, s_new = objective(z_new, logits_new)
            accepted, damping, converged = _damped_step(value, current, damping, lam)
            if accepted:
                z, jac, s, current = z_new, jac_new, s_new, value
            if converged:
                break
        p = torch.addmv(mu, net.chol, z)
        return FoldIn(p.numpy().copy(), steps, current, used)

    def _fold_in_explicit(self, entries: Mapping[int, float]) -> FoldIn:
        """The grade fold-in of :meth:`_fold_in` (same objective, steps and stopping rule) in NumPy float32."""
        net = self._net
        lam = self.prior_strength
        if not entries:
            return FoldIn(net.np_mu.copy(), 0, 0.0, 0)
        rows = np.fromiter(entries.keys(), dtype=np.int64, count=len(entries))
        y = np.fromiter(entries.values(), dtype=np.float32, count=len(entries))
        weight = 1.0 / self.noise**2
        root_weight = math.sqrt(weight)
        gathered = (
            net.np_base[rows],
            None if net.np_z_gmf is None else net.np_z_gmf[rows],
            net.np_course_half[rows] if net.dm else None,
        )

        def objective(z: np.ndarray, logits: np.ndarray) -> tuple[float, np.ndarray]:
            s = 1.0 / (1.0 + np.exp(-logits))
            r = s - y
            return 0.5 * weight * float(r @ r) + 0.5 * lam * float(z @ z), s

        z = np.zeros(net.d, dtype=np.float32)
        logits, jac = net.np_logits0[rows], net.np_jac0[rows]
        current, s = objective(z, logits)
        damping, steps = 0.0, 0
        for _ in range(self.fold_in_steps):
            steps += 1
            slope = s * (1 - s)
            grad = lam * z + jac.T @ ((weight * (s - y)) * slope)
            step = _np_solve_damped(jac * (slope * root_weight)[:, None], grad, lam + damping)
            z_new = (z - step).astype(np.float32, copy=False)
            logits_new, jac_new = net.np_rows_logits_and_jacobian(z_new, gathered)
            value, s_new = objective(z_new, logits_new)
            accepted, damping, converged = _damped_step(value, current, damping, lam)
            if accepted:
                z, jac, s, current = z_new, jac_new, s_new, value
            if converged:
                break
        return FoldIn((net.np_mu + net.np_chol @ z).astype(np.float32), steps, current, len(entries))

    # ------------------------------------------------------------------ cards
    def _build(
        self,
        p: torch.Tensor,
        rows: Sequence[tuple[str, float | None, int | None]],
        entries: Mapping[int, float],
        k: int,
        target_term: str | None,
        basis: Basis,
        used: int,
        ignored: tuple[str, ...],
        exclude_student: int | None,
    ) -> Recommendations:
        eligibility = self._eligibility.evaluate(rows, target_term)
        scores = torch.sigmoid(self._net.logits(p)).numpy().astype(np.float64)
        candidates = np.flatnonzero(eligibility.mask)
        # Stable sort on −score: ties go to catalogue (model) order, the same on every run.
        order = candidates[np.argsort(-scores[candidates], kind="stable")]
        ranking = _Ranking(self.course_ids, order, scores)
        top = order[:k]
        similar = self._similar_courses(top, entries, self._good_threshold(entries))
        cohorts = self._cohorts(top, p, exclude_student) if self.explicit else [None] * len(top)
        items = [
            self._card(rank + 1, int(c), float(scores[c]), similar[rank], entries, cohorts[rank])
            for rank, c in enumerate(top.tolist())
        ]
        cal = self.model.calibration if self.explicit else None
        return Recommendations(
            mode=self.mode,
            basis=basis,
            items=tuple(items),
            k=k,
            eligible=len(order),
            excluded=eligibility.excluded,
            target_term=target_term.strip() if target_term else None,
            scale=self.scale if self.explicit else None,
            coverage=None if cal is None else cal.coverage,
            grades_used=used,
            ignored=ignored,
            note=self._note,
            _ranking=ranking,
            _known=self._known_codes,
        )

    def _good_threshold(self, entries: Mapping[int, float]) -> float:
        """ "Did well": at or above the student's own average, and passing."""
        if not self.explicit:
            return 0.5  # every taken course has target 1
        floor = self.scale.normalise(self.scale.pass_points) if self.scale is not None else 0.5
        mean = sum(entries.values()) / len(entries) if entries else 1.0
        return max(mean, floor)

    def _similar_courses(
        self, targets: np.ndarray, entries: Mapping[int, float], good: float, k: int = 2
    ) -> list[list[tuple[int, float]]]:
        """:func:`~electives.serving.explanations.similar_taken_courses` for every card at once (same rule: taken courses
        graded at least ``good``, never the target itself, positive cosine, most similar first, up to ``k``)."""
        good_idx = np.fromiter((i for i, g in entries.items() if g >= good), dtype=np.int64)
        if not len(targets) or not good_idx.size:
            return [[] for _ in range(len(targets))]
        sims = self._unit_vectors[targets] @ self._unit_vectors[good_idx].T  # (cards, good courses)
        sims[targets[:, None] == good_idx[None, :]] = -np.inf
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
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
        similar = []
        for i, sim in similar_idx:
            grade = grade_of[i] if self.explicit else None
            pts = self.scale.to_points(grade) if grade is not None and self.scale is not None else None
            similar.append(
                SimilarCourse(
                    self.course_ids[i],
                    self._names[i],
                    grade,
                    pts,
                    None if pts is None else self._letter(pts),
                    sim,
                )
            )
        if self.explicit:
            scale = self.scale
            points = scale.to_points(score)
            letter = self._letter(points)
            interval = None
            cal = self.model.calibration
            if cal is not None:
                # ConformalInterval.interval for one float, without numpy's per-call overhead.
                lo, hi = min(1.0, max(0.0, score + cal.lower)), min(1.0, max(0.0, score + cal.upper))
                interval = (scale.to_points(lo), scale.to_points(hi))
            explanation = explanation_sentence([(s.name, s.grade) for s in similar], cohort, scale)
        else:
            points = letter = interval = None
            explanation = None
            if similar:
                names = [s.name for s in similar]
                listed = names[0] if len(names) == 1 else " and ".join(names)
                explanation = f"You took {listed}, which {'is' if len(names) == 1 else 'are'} similar."
        return Recommendation(
            rank=rank,
            course=self.course_ids[c],
            name=self._names[c],
            description=self._descriptions[c],
            score=score,
            points=points,
            letter=letter,
            interval=interval,
            explanation=explanation,
            similar=tuple(similar),
            cohort=cohort,
        )

    def _letter(self, points: float) -> str:
        # Marks repeat (entered grades), so a cache saves most of GradeScale.letter's per-call work.
        letter = self._letters.get(points)
        if letter is None:
            if len(self._letters) >= 4096:
                self._letters.clear()
            letter = self._letters[points] = self.scale.letter(points)
        return letter

    def _cohorts(self, courses: np.ndarray, p: torch.Tensor, exclude: int | None) -> list[CohortStatistic | None]:
        """The cohort figure of each card's course (None where fewer than ``min_cohort`` similar graders)."""
        graders = self._load_graders()
        if graders is None:
            return [None] * len(courses)
        v = (p - self._mu).double().numpy()
        length = float(np.linalg.norm(v))
        unit = v / length if length > 0 else np.zeros_like(v)
        # One product over every student beats gathering each course's graders once they outnumber the students.
        every = None
        if sum(len(graders.students[c]) for c in courses) >= len(graders.units):
            every = graders.units @ unit
        out: list[CohortStatistic | None] = []
        for c in courses.tolist():
            students, grades = graders.students[c], graders.grades[c]
            if exclude is not None and len(students):
                keep = students != exclude  # the student being explained never counts towards their own cohort
                students, grades = students[keep], grades[keep]
            if len(students) < self.min_cohort:
                out.append(None)
                continue
            sims = every[students] if every is not None else graders.units[students] @ unit
            out.append(
                cohort_from_similarities(sims, grades, neighbours=max(30, self.min_cohort), min_cohort=self.min_cohort)
            )
        return out

    def _load_graders(self) -> _Graders | None:
        if not self.cohorts or self.store is None:
            return None
        if self._graders is None:
            frame = self.store.load_grades()
            n = len(self.course_ids)
            s = frame["student"].map(self._student_index)
            c = frame["course"].map(self._course_index)
            g = frame["grade"].to_numpy(dtype=float)
            keep = s.notna().to_numpy() & c.notna().to_numpy() & ~np.isnan(g)
            s = s.to_numpy()[keep].astype(np.int64)
            c = c.to_numpy()[keep].astype(np.int64)
            g = g[keep]
            order = np.argsort(c, kind="stable")
            bounds = np.searchsorted(c[order], np.arange(n + 1))
            # Built with the graders, not at load: without a database no cohort figure is ever computed.
            centred = (self._net.students - self._mu).double().numpy()
            lengths = np.linalg.norm(centred, axis=1, keepdims=True)
            self._graders = _Graders(
                [s[order[bounds[i] : bounds[i + 1]]] for i in range(n)],
                [g[order[bounds[i] : bounds[i + 1]]] for i in range(n)],
                np.divide(centred, lengths, out=np.zeros_like(centred), where=lengths > 0),
            )
        return self._graders


def _damped_step(value: float, current: float, damping: float, lam: float) -> tuple[bool, float, bool]:
    """Levenberg–Marquardt bookkeeping shared by both fold-ins: (accept the step, next damping, converged).

    A step that lowers the objective is kept and the damping relaxed; one that does not is undone and the damping
    raised. Gauss–Newton converges in a handful of steps; once a step gains less than `_TOLERANCE` of the objective
    the rest would move the scores by ~1e-4."""
    if value <= current:
        converged = current - value <= _TOLERANCE * max(value, 1e-12)
        return True, (damping / 4 if damping > 1e-3 * lam else 0.0), converged
    return False, max(4 * damping, lam), False


def _np_solve_damped(b: np.ndarray, grad: np.ndarray, c: float) -> np.ndarray:
    """:func:`_solve_damped` in NumPy."""
    n, d = b.shape
    if n < d:
        gram = b @ b.T
        gram[np.diag_indices(n)] += c
        return (grad - b.T @ np.linalg.solve(gram, b @ grad)) / c
    gram = b.T @ b
    gram[np.diag_indices(d)] += c
    return np.linalg.solve(gram, grad)


def _solve_damped(b: torch.Tensor, grad: torch.Tensor, c: float) -> torch.Tensor:
    """(BᵀB + cI)⁻¹ grad, through the n × n system when B has fewer rows than columns (push-through identity)."""
    n, d = b.shape
    if n < d:
        gram = b @ b.T
        gram.diagonal().add_(c)
        chol, _ = torch.linalg.cholesky_ex(gram)
        inner = torch.cholesky_solve((b @ grad)[:, None], chol)[:, 0]
        return (grad - b.T @ inner) / c
    gram = b.T @ b
    gram.diagonal().add_(c)
    chol, _ = torch.linalg.cholesky_ex(gram)
    return torch.cholesky_solve(grad[:, None], chol)[:, 0]


def _normal_quantile(q: float) -> float:
    """Inverse standard normal CDF (bisection on erf: called once per Recommender)."""
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _fmt_points(points: float) -> str:
    return f"{points:.2f}".rstrip("0").rstrip(".")
