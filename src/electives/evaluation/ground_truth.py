"""Ground-truth lift on the synthetic university: how much of the best possible gain in TRUE grade a model's
top-k captures, against random eligible picks and an oracle that knows every student's expected grades."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from electives.data.catalog import Catalog, parse_catalog
from electives.data.eligibility import EligibilityIndex, EligibilityRules
from electives.data.interactions import Interactions
from electives.data.pseudonyms import Pseudonymiser
from electives.data.scales import GradeScale, load_scale
from electives.data.synth import CAREER_TERMS, University, term_label
from electives.errors import DataError
from electives.limits import DEFAULT_K, check_k

__all__ = ["GroundTruthLift", "ground_truth_lift"]


@dataclass(frozen=True)
class GroundTruthLift:
    """Mean TRUE grade (points) of the top-k recommended electives, of random eligible ones and of the oracle's
    best k, averaged over students; ``share`` = (recommended − random) / (oracle − random)."""

    model: str
    students: int
    k: int
    recommended: float
    random: float
    oracle: float

    @property
    def share(self) -> float:
        gap = self.oracle - self.random
        return (self.recommended - self.random) / gap if gap > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "students": self.students,
            "k": self.k,
            "recommended": self.recommended,
            "random": self.random,
            "oracle": self.oracle,
            "share": self.share,
        }


def ground_truth_lift(
    university: University,
    train: Interactions,
    models: Mapping[str, Any],
    *,
    pseudonymiser: Pseudonymiser,
    k: int = DEFAULT_K,
    target_term: str | None = None,
    catalog: Catalog | None = None,
    scale: GradeScale | None = None,
    rules: EligibilityRules | None = None,
) -> dict[str, GroundTruthLift]:
    """How much of the best possible gain in true grade each model's top-k captures, on a synthetic university.

    ``train`` holds the grades the models were fitted on (student ids = pseudonyms of the university's serials
    under ``pseudonymiser``, normalised grades of ``scale``, default percent); each model has
    ``score_all(student indices) → (n, n_courses)`` over ``train``'s index space (NCF and the baselines do).
    For every student still enrolled in ``target_term`` (default: the term after the export window) the eligible
    electives that term (catalogue rules, the student's grades in ``train``) are ranked; students with at most
    ``k`` eligible electives are skipped (there is nothing to choose). The random figure is the exact mean over
    the eligible set (the expectation of a random pick)."""
    k = check_k(k)
    cfg = university.config
    scale = scale or load_scale("percent")
    if catalog is None:
        catalog = parse_catalog(university.catalog.to_csv(index=False), source="synthetic catalogue")
    if target_term is None:
        year, season = term_label(cfg.n_terms, cfg.start_year)
        target_term = f"{year}-{season}"
    index = EligibilityIndex(catalog, train.course_ids, scale, rules)
    serial_of = {pseudonymiser.pseudonym(str(s)): i for i, s in enumerate(university.student_ids)}
    course_of = {c: i for i, c in enumerate(university.course_ids)}
    train_to_univ = np.array([course_of.get(c, -1) for c in train.course_ids])

    # Each student's graded rows, for eligibility (points back from the normalised grades).
    order = np.argsort(train.students, kind="stable")
    bounds = np.searchsorted(train.students[order], np.arange(train.n_students + 1))
    grades = train.grades if train.grades is not None else np.full(len(train), np.nan, dtype=np.float32)

    active = (cfg.n_terms - university.entry_term) < CAREER_TERMS
    students, masks, truths = [], [], []
    for u, pseudonym in enumerate(train.student_ids):
        s = serial_of.get(pseudonym)
        if s is None or not active[s]:
            continue
        rows_idx = order[bounds[u] : bounds[u + 1]]
        history = [
            (train.course_ids[c], None if math.isnan(g) else scale.to_points(float(g)), None)
            for c, g in zip(train.courses[rows_idx].tolist(), grades[rows_idx].tolist(), strict=True)
        ]
        mask = index.evaluate(history, target_term).mask & (train_to_univ >= 0)
        if mask.sum() <= k:
            continue
        students.append(u)
        masks.append(mask)
        truth = np.where(train_to_univ >= 0, university.expected[s, np.maximum(train_to_univ, 0)], np.nan)
        truths.append(truth)
    if not students:
        raise DataError(f"no student has more than {k} eligible electives in {target_term}")
    mask_m, truth_m = np.array(masks), np.array(truths)
    n = len(students)
    random = float(np.mean([truth_m[i, mask_m[i]].mean() for i in range(n)]))
    oracle_truth = np.where(mask_m, truth_m, -np.inf)
    oracle = float(np.mean(-np.sort(-oracle_truth, axis=1)[:, :k].mean(axis=1)))

    out: dict[str, GroundTruthLift] = {}
    for name, model in models.items():
        scores = np.asarray(model.score_all(np.array(students, dtype=np.int64)), dtype=np.float64)
        scores = np.where(mask_m, scores, -np.inf)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        rec = float(np.take_along_axis(truth_m, top, axis=1).mean())
        out[name] = GroundTruthLift(name, n, k, rec, random, oracle)
    return out
