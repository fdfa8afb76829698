"""The checkerboard: a data set with a known answer, shared by the model and baseline tests.

Two student groups × two course groups: a student does well in (explicit) or takes only (implicit) the courses
whose parity matches the student's, so any model that learned something orders matching courses first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from electives.data.interactions import Interactions


def checkerboard(implicit: bool = False, n_students: int = 40, n_courses: int = 20, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_students):
        pool = [c for c in range(n_courses) if not implicit or c % 2 == s % 2]
        for c in rng.choice(pool, 7 if implicit else 10, replace=False):
            good = c % 2 == s % 2
            grade = np.nan if implicit else float(np.clip((0.85 if good else 0.3) + rng.normal(0, 0.05), 0, 1))
            rows.append((f"s{s:02d}", f"c{c:02d}", int(rng.integers(1, 6)), grade))
    return Interactions.from_frame(pd.DataFrame(rows, columns=["student", "course", "term", "grade"]))


def ordered_pairs(scores: np.ndarray, *, data: Interactions, student: int, unseen: np.ndarray) -> tuple[int, int]:
    """(pairs ordered right, pairs): the (own-group, other-group) pairs of the ``unseen`` courses (a mask over the
    catalogue) that one student's ``scores`` (over the catalogue) put own group first."""
    course_group = np.array([int(c[1:]) % 2 for c in data.course_ids])
    own = int(data.student_ids[student][1:]) % 2
    good, bad = scores[unseen & (course_group == own)], scores[unseen & (course_group != own)]
    return int((good[:, None] > bad[None, :]).sum()), good.size * bad.size


def unseen_auc(model, data: Interactions, train: Interactions) -> float:
    """Share of (good, bad) unseen-course pairs per student that the model orders correctly."""
    scores = model.score_all(np.arange(data.n_students))
    taken = train.item_lookup().mask(np.arange(data.n_students))
    wins = total = 0
    for u in range(data.n_students):
        w, t = ordered_pairs(scores[u], data=data, student=u, unseen=~taken[u])
        wins, total = wins + w, total + t
    return wins / total


def implicit_fold_in_objective(model, prior, vector: np.ndarray, taken: list[int], n_negatives: int = 4) -> float:
    """An NCF's implicit fold-in objective (−log posterior, ncf_foldin) at embedding ``vector`` of a student who took
    ``taken``: the log loss of taken (1) against every other course (0, weighted to ``n_negatives`` per taken course,
    at most 1 each), plus ½‖L⁻¹(p − μ)‖² under ``prior`` (a :class:`~electives.models.ncf_foldin.Prior`)."""
    n = model.n_courses
    y = np.isin(np.arange(n), taken).astype(np.float64)
    weight = np.where(y > 0, 1.0, min(1.0, n_negatives * len(taken) / (n - len(taken))))
    s = np.clip(model.scores(vector).astype(np.float64), 1e-7, 1 - 1e-7)
    data = -float(weight @ (y * np.log(s) + (1 - y) * np.log1p(-s)))
    z = np.linalg.solve(prior.chol.astype(np.float64), (vector - prior.mean).astype(np.float64))
    return data + 0.5 * float(z @ z)
