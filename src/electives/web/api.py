"""JSON API v1 (``/api/v1``) and the health probes; the OpenAPI document describes exactly these routes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from electives.serving.results import Recommendations
from electives.web.errors import HttpError, invalid
from electives.web.inputs import (
    MAX_QUERY_CHARS,
    Options,
    grades_query,
    json_body,
    query_bool,
    query_int,
    student_query,
)
from electives.web.live_model import ServedModel
from electives.web.openapi import openapi_document
from electives.web.recommend import run_grades, run_student, throttle
from electives.web.state import get_config, get_served, get_state, get_store

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
    store = get_store()
    served = get_served()
    body: dict[str, Any] = {
        "status": "ready",
        "model_version": served.version,
        "model_family": served.info.get("family"),
        "model_signed": bool(served.info.get("signed")),
        "database": None,
    }
    if store is not None:
        try:
            store.scale()
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
    return jsonify(openapi_document(get_config()))


@api.get(f"{PREFIX}/model")
def model_info() -> Response:
    served = get_served()
    return jsonify({**served.info, "loaded_at": served.loaded_at, "students_flow": get_store() is not None})


@api.get(f"{PREFIX}/courses")
def courses() -> Response:
    s = get_state()
    throttle(s.search_limiter, "searches")
    q = request.args.get("q", "")
    if len(q) > MAX_QUERY_CHARS:
        raise invalid("q", f"longer than {MAX_QUERY_CHARS} characters")
    limit = query_int("limit", s.config.default_course_limit, 1, s.config.max_course_limit)
    electives = query_bool("electives", False)
    hits, total = s.model.current.search(q, limit, electives_only=electives)
    return jsonify(courses=[c.to_dict() for c in hits], total=total)


@api.post(f"{PREFIX}/recommendations")
def recommendations() -> Response:
    s = get_state()
    throttle(s.api_limiter, "requests")
    served = get_served()
    query = grades_query(json_body(), s.config, served.explicit)
    recs = run_grades(served, query)
    return jsonify(recommendations_body(served, recs, query.options))


@api.post(f"{PREFIX}/students/recommendations")
def student_recommendations() -> Response:
    s = get_state()
    if s.store is None:
        raise HttpError(
            501,
            "students_unavailable",
            "this server has no grade database, so students on record cannot be served; send grades to "
            f"{PREFIX}/recommendations instead",
        )
    query = student_query(json_body(), s.config)
    served = get_served()
    recs = run_student(served, query)
    return jsonify(recommendations_body(served, recs, query.options))


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
        "retaken_courses": list(recs.retaken),
        "why_not": [
            {"course": w.course, "reason": w.reason, "message": w.message}
            for w in (recs.why_not(c) for c in options.why_not)
        ],
    }
