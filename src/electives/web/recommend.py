"""Answering recommendation requests: the steps the JSON API and the pages share.

Per-address rate limits, the access-code check of the known-student flow, and running the recommender with a
grade it cannot use pinned to where it was entered (a :class:`~electives.web.errors.GradeError`). Both blueprints
call these; neither imports the other.
"""

from __future__ import annotations

from flask import request

from electives.serving.entry import GradeEntryError
from electives.serving.results import Recommendations
from electives.web.errors import FieldError, GradeError, invalid, rate_limited
from electives.web.inputs import GradesQuery, StudentQuery
from electives.web.live_model import ServedModel
from electives.web.rate_limit import RateLimiter
from electives.web.state import get_state


def throttle(limiter: RateLimiter, what: str) -> None:
    """Count this request against the client address; a 429 once ``limiter`` says wait."""
    wait = limiter.hit(request.remote_addr or "-")
    if wait is not None:
        raise rate_limited(wait, what)


def run_grades(served: ServedModel, query: GradesQuery) -> Recommendations:
    """Recommendations for entered grades; a grade the model cannot use is a 400 naming its row and part."""
    try:
        return served.recommender.recommend_for_grades(
            list(query.grades), k=query.options.k, target_term=query.options.term
        )
    except GradeEntryError as exc:
        if not 0 <= exc.position < len(query.entry_rows):
            raise invalid("grades", str(exc)) from None
        row = query.entry_rows[exc.position]
        if exc.other is not None:
            # Both rows are at fault: the field is the later one, the message names the earlier one too.
            other = query.entry_rows[exc.other]
            detail = f"course {exc.course.strip()!r} is also entered at grades[{other}]; {exc.hint}"
            raise GradeError(row, "course", detail, other_row=other, hint=exc.hint) from None
        part = "grade" if exc.part == "mark" else "course"
        raise GradeError(row, part, str(exc)) from None


def check_access(query: StudentQuery) -> None:
    """Student number and access code must match; attempts are limited per address and per student number."""
    s = get_state()
    throttle(s.access_limiter, "access-code attempts")
    key = s.student_key(query.student_id)
    wait = s.failure_limiter.retry_after(key)
    if wait is not None:
        raise rate_limited(wait, "wrong access codes for this student number")
    assert s.pseudonymiser is not None
    # Codes are ASCII; anything else cannot match (and compare_digest refuses non-ASCII text).
    if not (query.access_code.isascii() and s.pseudonymiser.check_access_code(query.student_id, query.access_code)):
        s.failure_limiter.hit(key)
        raise FieldError(
            "access_code",
            "the student number and access code do not match (the registrar issues the code)",
            status=401,
            code="invalid_access_code",
        )


def run_student(served: ServedModel, query: StudentQuery, verified: bool = False) -> Recommendations:
    """Recommendations for a student on record; the access code is checked first unless already ``verified``."""
    if not verified:
        check_access(query)
    return served.recommender.recommend(query.student_id, k=query.options.k, target_term=query.options.term)
