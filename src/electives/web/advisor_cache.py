"""The advisor page's slow reads, kept by the worker: the at-risk counts, computed once per (model version, term,
latest import) in a background thread, and the stored grades' terms, read once per import.

Counting a term's at-risk students reads every student's record and predicts their due courses (about a second on
the demo, longer on a large university): far too slow to redo per request, and not worth holding a request for
long. The first request for a key starts the computation and waits up to ``wait`` seconds; if it is not done by
then, the answer says "computing" and a later request picks the result up. A new model or a new import is a new
key, so figures never outlive what they were computed from. Only the counts under the k-anonymity rule are kept
(:class:`~electives.serving.term_overview.RiskOverview`), never a student's row.

The terms (which decide the term after the data) are a DISTINCT over every grade row: read again only when an
import has come since.

A computation that fails for a reason that will not change (an enrolment-only model, a catalogue with no required
course) is kept as its message; any other failure (the database away) is forgotten, so the next request retries.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Literal

from electives.errors import DataError, ModelError
from electives.serving.term_overview import RiskOverview

log = logging.getLogger("electives.web")

_MAX_KEYS = 16  # terms × models a worker keeps (a few terms are looked at; an old model's figures go first)
MODEL_MESSAGE = "the served model predicts no grades (it is enrolment-only), so no student can be found at risk"
FAILED_MESSAGE = "the at-risk counts could not be computed just now; the error has been logged; try again later"


@dataclass(frozen=True)
class RiskAnswer:
    """Where a key's computation stands: ``ready`` (``overview``), ``computing``, or ``unavailable`` (``message``
    says why, safe to show)."""

    status: Literal["ready", "computing", "unavailable"]
    overview: RiskOverview | None = None
    message: str | None = None


class _Job:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer = RiskAnswer("computing")


class AdvisorCache:
    """At-risk overviews by key, and the stored terms by import; thread-safe (see the module docstring)."""

    def __init__(self, max_keys: int = _MAX_KEYS) -> None:
        self._jobs: OrderedDict[Hashable, _Job] = OrderedDict()
        self._lock = threading.Lock()
        self._max_keys = max_keys
        self._terms: tuple[Hashable, list[tuple[str, int]]] | None = None

    def terms(self, last_import: Hashable, read: Callable[[], list[tuple[str, int]]]) -> list[tuple[str, int]]:
        """The stored grades' (label, key) terms as of ``last_import``: ``read`` once per import."""
        held = self._terms
        if held is not None and held[0] == last_import:
            return held[1]
        terms = read()
        self._terms = (last_import, terms)  # one reference assignment: readers see the old pair or the new one
        return terms

    def get(self, key: Hashable, compute: Callable[[], RiskOverview], *, wait: float) -> RiskAnswer:
        """``key``'s answer: cached, or computed by ``compute`` in a thread started now, waited for up to ``wait``
        seconds."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                job = self._jobs[key] = _Job()
                self._evict()
                threading.Thread(
                    target=self._run, args=(key, job, compute), name="electives-at-risk", daemon=True
                ).start()
            else:
                self._jobs.move_to_end(key)
        job.done.wait(wait)
        return job.answer

    def _run(self, key: Hashable, job: _Job, compute: Callable[[], RiskOverview]) -> None:
        try:
            job.answer = RiskAnswer("ready", overview=compute())
        except DataError as exc:  # names the term or the catalogue: safe to show, and it will not change
            job.answer = RiskAnswer("unavailable", message=str(exc))
        except ModelError:
            job.answer = RiskAnswer("unavailable", message=MODEL_MESSAGE)
        except Exception as exc:
            # Type and stack only (as every unexpected error is logged); the next request tries again.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("at-risk counts failed: %s\n%s", type(exc).__name__, frames)
            job.answer = RiskAnswer("unavailable", message=FAILED_MESSAGE)
            with self._lock:
                if self._jobs.get(key) is job:
                    del self._jobs[key]
        finally:
            job.done.set()

    def _evict(self) -> None:
        """Forget the least recently asked finished keys beyond ``max_keys`` (a running one finishes first)."""
        for old in [k for k, j in self._jobs.items() if j.done.is_set()][: max(0, len(self._jobs) - self._max_keys)]:
            del self._jobs[old]
