"""Evaluation metrics as pure, vectorised functions.

Grades are in normalised units ([0, 1]); pass `scale_range` (max − min of the institution's scale, e.g. 4 for
1–5 stars or 0–4 grade points) to get errors in the scale's points.

Ranks are 0-based and pessimistic about ties: an item scored equal to the positive counts as ranked above
it, so a model that scores everything alike gets no credit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "full_ranks",
    "grade_ndcg",
    "hit_rate",
    "mae",
    "ndcg",
    "rmse",
    "sampled_ranks",
    "spearman",
    "within",
]


def _pair(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
    if p.size == 0:
        raise ValueError("no predictions to score")
    return p, t


def rmse(pred: np.ndarray, true: np.ndarray, scale_range: float = 1.0) -> float:
    """RMSE = scale_range · √(mean((ŷ − y)²))."""
    p, t = _pair(pred, true)
    return float(np.sqrt(np.mean((p - t) ** 2)) * scale_range)


def mae(pred: np.ndarray, true: np.ndarray, scale_range: float = 1.0) -> float:
    """MAE = scale_range · mean(|ŷ − y|)."""
    p, t = _pair(pred, true)
    return float(np.mean(np.abs(p - t)) * scale_range)


def within(pred: np.ndarray, true: np.ndarray, step: float) -> float:
    """Share of predictions within one step: mean(|ŷ − y| ≤ step), `step` in the same units as y.

    E.g. one letter step on a 0–4 scale with thirds is 1/3 point, i.e. step = (1/3) / 4 in normalised units.
    """
    p, t = _pair(pred, true)
    return float(np.mean(np.abs(p - t) <= step * (1 + 1e-9)))


def _finite(*arrays: np.ndarray) -> None:
    for a in arrays:
        if np.isnan(a).any():
            raise ValueError("scores contain NaN")


def sampled_ranks(pos_scores: np.ndarray, neg_scores: np.ndarray) -> np.ndarray:
    """Rank of each positive among itself and its sampled negatives: rank_u = #{j : s_uj ≥ s_u⁺}.

    pos_scores (n,), neg_scores (n, m) → int64 (n,) in [0, m].
    """
    pos = np.asarray(pos_scores, dtype=np.float64)
    neg = np.asarray(neg_scores, dtype=np.float64)
    _finite(pos, neg)
    return (neg >= pos[:, None]).sum(axis=1).astype(np.int64)


def full_ranks(scores: np.ndarray, positives: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Rank of each positive among the whole catalogue minus excluded items.

    rank_u = #{j ≠ i_u⁺ : not exclude_uj, s_uj ≥ s_{u,i_u⁺}}; scores (n, m), positives (n,), exclude (n, m) bool
    (a user's training items). The positive itself is never excluded.
    """
    s = np.asarray(scores)
    _finite(s)
    rows = np.arange(len(s))
    pos = np.asarray(positives, dtype=np.int64)
    better = s >= s[rows, pos][:, None]
    if exclude is not None:
        better &= ~exclude
    better[rows, pos] = False
    return better.sum(axis=1).astype(np.int64)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """HR@K = mean(rank < K)."""
    r = np.asarray(ranks)
    return float(np.mean(r < k))


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@K for one relevant item per row = mean(1 / log₂(rank + 2) if rank < K else 0)."""
    r = np.asarray(ranks, dtype=np.float64)
    return float(np.mean(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)))


def grade_ndcg(students: np.ndarray, pred: np.ndarray, true: np.ndarray, k: int | None = None) -> float:
    """Mean over students of NDCG of their held-out courses ordered by prediction, with the grade as gain.

    DCG_u = Σ_{p < K} y_(p) / log₂(p + 2) with courses sorted by ŷ descending (ties: lower true grade first),
    IDCG_u the same sorted by y. Students with fewer than 2 held-out courses or IDCG = 0 are skipped; NaN if
    none remain.
    """
    s = np.asarray(students, dtype=np.int64)
    p, t = _pair(pred, true)
    dcg = _dcg(s, np.lexsort((t, -p, s)), t, k)
    idcg = _dcg(s, np.lexsort((-t, s)), t, k)
    counts = np.bincount(s)
    ok = (counts >= 2) & (idcg > 0)
    return float(np.mean(dcg[ok] / idcg[ok])) if ok.any() else float("nan")


def _dcg(s: np.ndarray, order: np.ndarray, gain: np.ndarray, k: int | None) -> np.ndarray:
    so = s[order]
    start = np.r_[0, np.flatnonzero(so[1:] != so[:-1]) + 1]
    pos = np.arange(len(so)) - np.repeat(start, np.diff(np.r_[start, len(so)]))
    disc = 1.0 / np.log2(pos + 2.0)
    if k is not None:
        disc[pos >= k] = 0.0
    return np.bincount(so, weights=gain[order] * disc, minlength=s.max() + 1)


def spearman(students: np.ndarray, pred: np.ndarray, true: np.ndarray) -> float:
    """Mean over students of Spearman's ρ between predicted and held-out grades.

    ρ_u = Pearson correlation of the (tie-averaged) ranks. Students with fewer than 2 held-out courses or
    all-equal true grades are skipped; all-equal predictions give ρ_u = 0. NaN if no student remains.
    """
    s = np.asarray(students, dtype=np.int64)
    p, t = _pair(pred, true)
    df = pd.DataFrame({"s": s, "p": p, "t": t})
    g = df.groupby("s")
    rp, rt = g["p"].rank().to_numpy(), g["t"].rank().to_numpy()
    n = np.bincount(s).astype(np.float64)
    m = s.max() + 1
    mp, mt = np.bincount(s, rp, m), np.bincount(s, rt, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        mp, mt = mp / n, mt / n
        dp, dt = rp - mp[s], rt - mt[s]
        cov = np.bincount(s, dp * dt, m)
        vp, vt = np.bincount(s, dp * dp, m), np.bincount(s, dt * dt, m)
        ok = (n >= 2) & (vt > 1e-12)
        rho = np.where(vp > 1e-12, cov / np.sqrt(vp * vt), 0.0)
    return float(np.mean(rho[ok])) if ok.any() else float("nan")
