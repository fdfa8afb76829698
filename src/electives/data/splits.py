"""Train/test splits of `Interactions`, all sharing the input's id maps.

- `leave_one_out`: each student's latest interaction (highest term, then latest row) is held out.
- `temporal`: each student's whole latest term is held out.
- `random_split`: a seeded random fraction of rows is held out.

Students with a single interaction (loo) or a single term (temporal) stay wholly in train, so that every
held-out student was seen in training. A student can retake a course: train rows of a (student, course) pair
that is held out are dropped, so that no pair is in both sets (`check_no_overlap`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from electives.data.interactions import Interactions, isin_sorted, sorted_unique
from electives.errors import DataError

__all__ = [
    "SplitKind",
    "check_no_overlap",
    "leave_one_out",
    "next_term_validation",
    "random_split",
    "split",
    "temporal",
    "validation_split",
]

SplitKind = Literal["loo", "temporal", "random"]


def _finish(data: Interactions, test_mask: np.ndarray) -> tuple[Interactions, Interactions]:
    keys = data.keys()
    held = sorted_unique(keys[test_mask])
    train_mask = ~test_mask & ~isin_sorted(keys, held)
    return data.subset(train_mask), data.subset(test_mask)


def leave_one_out(data: Interactions) -> tuple[Interactions, Interactions]:
    """Hold out each student's latest interaction (max term; ties → the later row)."""
    n = len(data)
    order = np.lexsort((np.arange(n), data.terms, data.students))
    s = data.students[order]
    last = np.ones(n, dtype=bool)
    last[:-1] = s[1:] != s[:-1]
    counts = np.bincount(data.students, minlength=data.n_students)
    pick = order[last & (counts[s] > 1)]
    mask = np.zeros(n, dtype=bool)
    mask[pick] = True
    return _finish(data, mask)


def temporal(data: Interactions) -> tuple[Interactions, Interactions]:
    """Hold out each student's whole latest term; students with a single term stay in train."""
    big = np.iinfo(np.int64).max
    t_max = np.full(data.n_students, np.iinfo(np.int64).min, dtype=np.int64)
    t_min = np.full(data.n_students, big, dtype=np.int64)
    np.maximum.at(t_max, data.students, data.terms)
    np.minimum.at(t_min, data.students, data.terms)
    s = data.students
    mask = (data.terms == t_max[s]) & (t_min[s] < t_max[s])
    return _finish(data, mask)


def random_split(data: Interactions, fraction: float = 0.2, seed: int = 0) -> tuple[Interactions, Interactions]:
    """Hold out round(fraction · rows) rows chosen uniformly at random (seeded)."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"test fraction must be in (0, 1), got {fraction}")
    n = len(data)
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: round(fraction * n)]] = True
    return _finish(data, mask)


def split(
    data: Interactions, kind: SplitKind, fraction: float = 0.2, seed: int = 0
) -> tuple[Interactions, Interactions]:
    """Dispatch on `kind`; `fraction` and `seed` are used by "random" only."""
    if kind == "loo":
        return leave_one_out(data)
    if kind == "temporal":
        return temporal(data)
    if kind == "random":
        return random_split(data, fraction, seed)
    raise DataError(f"unknown split kind {kind!r}; expected one of 'loo', 'temporal', 'random'")


def validation_split(
    train: Interactions, kind: SplitKind = "loo", fraction: float = 0.1, seed: int = 0
) -> tuple[Interactions, Interactions]:
    """Carve (fit, validation) out of a TRAINING set, for early stopping; the test set is never touched."""
    fit, val = split(train, kind, fraction, seed)
    if len(val) == 0:
        raise DataError(f"a {kind!r} validation split of {len(train)} training rows is empty")
    return fit, val


def next_term_validation(
    train: Interactions, fraction: float = 0.1, seed: int = 0
) -> tuple[Interactions, Interactions, SplitKind]:
    """(fit, validation, kind) for choosing a model: each student's latest term in `train` (students with one term
    stay in fit), the situation a model is deployed in — predicting next term. On grade data this ranks model
    families as the test part does; a random share of rows does not. Data without terms (or where every
    student has one) falls back to a random `fraction`."""
    fit, val = temporal(train)
    if len(val):
        return fit, val, "temporal"
    fit, val = validation_split(train, "random", fraction, seed)
    return fit, val, "random"


def check_no_overlap(train: Interactions, test: Interactions) -> None:
    """Raise DataError if the sets use different id maps or share a (student, course) pair."""
    if not train.same_index_space(test):
        raise DataError("train and test use different student/course id maps; build both with the same maps")
    test_keys = sorted_unique(test.keys())
    common = sorted_unique(train.keys()[isin_sorted(train.keys(), test_keys)])
    if len(common):
        k = int(common[0])
        s, c = train.student_ids[k // train.n_courses], train.course_ids[k % train.n_courses]
        raise DataError(
            f"{len(common)} (student, course) pairs are in both train and test, "
            f"e.g. student {s!r} course {c!r}; a held-out pair must not be trained on"
        )
