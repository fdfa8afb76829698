"""Caps on the sizes users may ask for, in one torch-free place so that the command line and the web
configuration can check them without loading the model stack."""

from __future__ import annotations

__all__ = ["DEFAULT_K", "MAX_CHUNK", "MAX_K", "MAX_SCORE_ALL_K"]

DEFAULT_K = 5  # recommendations shown when the user does not say
MAX_K = 50  # a page of recommendations, not a ranking dump
MAX_SCORE_ALL_K = 1000  # score-all writes a ranking dump; beyond this, score pairs instead
MAX_CHUNK = 1 << 20  # students per score-all chunk
