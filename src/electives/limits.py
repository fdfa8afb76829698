"""Caps on the sizes users may ask for, in one torch-free place so that the command line and the web
configuration can check them without loading the model stack."""

from __future__ import annotations

import numbers

from electives.errors import DataError

__all__ = ["DEFAULT_K", "MAX_CHUNK", "MAX_K", "MAX_SCORE_ALL_K", "check_k"]

DEFAULT_K = 5  # recommendations shown when the user does not say
MAX_K = 50  # a page of recommendations, not a ranking dump
MAX_SCORE_ALL_K = 1000  # score-all writes a ranking dump; beyond this, score pairs instead
MAX_CHUNK = 1 << 20  # students per score-all chunk


def check_k(k: int) -> int:
    """``k`` as an int in 1..MAX_K, else a DataError (a page of recommendations, not a ranking dump)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= int(k) <= MAX_K:
        raise DataError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}")
    return int(k)
