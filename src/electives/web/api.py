"""JSON API v1 (``/api/v1``) and the health probes; the OpenAPI document describes exactly these routes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from electives.serving.entry import GradeEntryError
from electives.serving.results import Recommendations
from electives.web.app import state
from electives.web.errors import HttpError, invalid, rate_limited
from electives.web.inputs import (
    MAX_QUERY_CHARS,
    GradesQuery,
    Options,
    StudentQuery,
    grades_query,
    json_body,
    query_bool,
    query_int,
    student_query,
)
from electives.web.live_model import ServedModel
from electives.web.openapi import openapi_document

api = Blueprint("api", __name__)
PREFIX = "/api/v1"


# ---------------------------------------------------------------------------------------------------- probes


@api.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers (no model or database work)."""
    return jsonify(status="ok")


@api.get("/readyz")
def readyz() -> Response:
    """Readiness: a model is loaded and the grade database (when configured) answers."""
    s = state()
    served = s.model.current
    body: dict[str, Any] = {"status": "ready", "model_version": served.version, "database": None}
    if s.store is not None:
        try:
            s.store.scale()
            body["database"] = "ok"
        except Exception:  # any failure means not ready; the reason is not the client's business
            body.update(status="unavailable", database="unavailable")
            response = jsonify(body)
            response.status_code = 503
            return response
    return jsonify(body)


# ---------------------------------------------------------------------------------------------------- API v1


@api.get(f"{PREFIX}/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document(state().config))


@api.get(f"{PREFIX}/model")
def model_info() -> Response:
    served = state().model.current
    return jsonify({**served.info, "loaded_at": served.loaded_at, "students_flow": state().store is not None})


@api.get(f"{PREFIX}/courses")
def courses() -> Response:
    s = state()
    _limit(s.search_limiter, "searches")
    q = request.args.get("q", "")
    if len(q) > MAX_QUERY_CHARS:
        raise invalid("q", f"longer than {MAX_QUERY_CHARS} characters")
    limit = query_int("limit", s.config.default_course_limit, 1, s.config.max_course_limit)
    electives = query_bool("electives", False)
    hits, total = s.model.current.search(q, limit, electives_only=electives)
    return jsonify(courses=[c.to_dict() for c in hits], total=total)


@api.post(f"{PREFIX}/recommendations")
def recommendations() -> Response:
    s = state()
    _limit(s.api_limiter, "requests")
    served = s.model.current
    query = grades_query(json_body(), s.config, served.explicit)
    recs = run_grades(served, query)
    return jsonify(recommendations_body(served, recs, query.options))


@api.post(f"{PREFIX}/students/recommendations")
def student_recommendations() -> Response:
    s = state()
    if s.store is None:
        raise HttpError(
            501,
            "students_unavailable",
            "this server has no grade database, so students on record cannot be served; send grades to "
            f"{PREFIX}/recommendations instead",
        )
    query = student_query(json_body(), s.config)
    served = s.model.current
    recs = run_student(served, query)
    return jsonify(recommendations_body(served, recs, query.options))


# ---------------------------------------------------------------------------------------------------- shared with pages


def run_grades(served: ServedModel, query: GradesQuery) -> Recommendations:
    """Recommendations for entered grades; a grade the model cannot use is a 400 naming its field."""
    try:
        return served.recommender.recommend_for_grades(
            list(query.grades), k=query.options.k, target_term=query.options.term
        )
    except GradeEntryError as exc:
        field = query.fields[exc.position] if 0 <= exc.position < len(query.fields) else "grades"
        raise invalid(f"{field}.{'grade' if exc.part == 'mark' else 'course'}", str(exc)) from None


def check_access(query: StudentQuery) -> None:
    """Student number and access code must match; attempts are limited per address and per student number."""
    s = state()
    _limit(s.access_limiter, "access-code attempts")
    key = s.student_key(query.student_id)
    wait = s.failure_limiter.retry_after(key)
    if wait is not None:
        raise rate_limited(wait, "wrong access codes for this student number")
    assert s.pseudonymiser is not None
    # Codes are ASCII; anything else cannot match (and compare_digest refuses non-ASCII text).
    if not (query.access_code.isascii() and s.pseudonymiser.check_access_code(query.student_id, query.access_code)):
        s.failure_limiter.hit(key)
        raise HttpError(
            401,
            "invalid_access_code",
            "access_code: the student number and access code do not match (the registrar issues the code)",
            field="access_code",
        )


def run_student(served: ServedModel, query: StudentQuery, verified: bool = False) -> Recommendations:
    if not verified:
        check_access(query)
    return served.recommender.recommend(query.student_id, k=query.options.k, target_term=query.options.term)


def recommendations_body(served: ServedModel, recs: Recommendations, options: Options) -> dict[str, Any]:
    """``Recommendations.to_dict()`` without the full exclusion map (a count instead: ask ``why_not``)."""
    scale = recs.scale
    return {
        "model_version": served.version,
        "mode": recs.mode,
        "basis": recs.basis,
        "grades_used": recs.grades_used,
        "k": recs.k,
        "target_term": recs.target_term,
        "scale": None if scale is None else scale.name,
        "coverage": recs.coverage,
        "note": recs.note,
        "recommendations": [r.to_dict(scale) for r in recs.items],
        "eligible": recs.eligible,
        "excluded_count": len(recs.excluded),
        "ignored_courses": list(recs.ignored),
        "why_not": [
            {"course": w.course, "reason": w.reason, "message": w.message}
            for w in (recs.why_not(c) for c in options.why_not)
        ],
    }


def _limit(limiter: Any, what: str) -> None:
    wait = limiter.hit(request.remote_addr or "-")
    if wait is not None:
        raise rate_limited(wait, what)
