"""The advisor's part of the OpenAPI document (only for a deployment with an advisor token): the terms with
figures and one term's figures, behind ``Authorization: Bearer TOKEN``; every count of fewer than 10 students is
null, with the reason in ``suppressed``."""

from __future__ import annotations

from typing import Any

from electives.web.inputs import MAX_TERM_CHARS
from electives.web.openapi_parts import error_answer, json_answer, nullable, rate_limited_answer, ref


def advisor_paths() -> dict[str, Any]:
    """The advisor's figures (only with an advisor token; ``Authorization: Bearer TOKEN``)."""
    errors = {
        "401": error_answer("no advisor token sent", {"WWW-Authenticate": {"schema": {"type": "string"}}}),
        "403": error_answer("the advisor token is not right"),
        "429": rate_limited_answer(),
    }
    term = {
        "name": "term",
        "in": "path",
        "required": True,
        "description": "a term from GET /api/v1/advisor/terms (any case or known form: fa2025 is 2025-Fall)",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TERM_CHARS},
    }
    figures = json_answer("the term's figures; every count of fewer than 10 students is null", ref("AdvisorTerm"))
    return {
        "/api/v1/advisor/terms": {
            "get": {
                "operationId": "advisorTerms",
                "summary": "Terms with figures: those with a stored seat plan and the term after the stored grades",
                "security": [{"advisorToken": []}],
                "responses": {"200": json_answer("the terms, latest first", ref("AdvisorTerms")), **errors},
            }
        },
        "/api/v1/advisor/terms/{term}": {
            "get": {
                "operationId": "advisorTerm",
                "summary": "Demand against seats per elective and at-risk counts per required course in a term",
                "security": [{"advisorToken": []}],
                "parameters": [term],
                "responses": {
                    "200": figures,
                    "202": {
                        **json_answer(
                            "the at-risk counts are being computed (`at_risk.status`); ask again", ref("AdvisorTerm")
                        ),
                        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
                    },
                    "400": error_answer("not one of the terms with figures; the message lists them"),
                    **errors,
                },
            }
        },
    }


def _object(properties: dict[str, Any], *, nullable_: bool = False) -> dict[str, Any]:
    """An object schema whose every property is required (null where the property's schema allows it)."""
    out: dict[str, Any] = {"type": "object", "required": list(properties), "properties": properties}
    if nullable_:
        out["nullable"] = True
    return out


_COUNT = {"type": "integer", "nullable": True, "minimum": 10, "description": "null: suppressed (see suppressed)"}
_SUPPRESSED = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "description": "field → why it is null: it counts fewer than 10 students, or would reveal a group of fewer",
}


def _figure_schemas() -> dict[str, Any]:
    """One elective's line of the plan, one required course's at-risk counts."""
    named = {"course": {"type": "string"}, "name": {"type": "string"}}
    return {
        "SeatFigures": _object(
            {
                **named,
                "seats": {**nullable("integer"), "description": "seats per offering; null: unlimited"},
                "demand": {**_COUNT, "description": "students with it in their own top k (null: suppressed)"},
                "allocated": dict(_COUNT),
                "likely_full": {"type": "boolean"},
                "suppressed": dict(_SUPPRESSED),
            }
        ),
        "RiskFigures": _object(
            {
                **named,
                **{f: dict(_COUNT) for f in ("due", "at_risk", "high_confidence")},
                "suppressed": dict(_SUPPRESSED),
            }
        ),
    }


def advisor_schemas() -> dict[str, Any]:
    def plan(courses: dict[str, Any]) -> dict[str, Any]:
        when = {"type": "string", "format": "date-time"}
        return _object({"k": {"type": "integer"}, "planned_at": when, "courses": courses}, nullable_=True)

    counts = _object(
        {
            "term": {"type": "string"},
            "scale": {"type": "string"},
            "pass": {"type": "number"},
            "coverage": nullable("number"),
            "students": dict(_COUNT),
            "courses": {"type": "array", "items": ref("RiskFigures")},
            "no_data_courses": {"type": "array", "items": {"type": "string"}},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "programmes": {"type": "integer"},
            "programmes_from": {"type": "string", "enum": ["catalogue", "departments", "co-enrolment", "none"]},
            "inactive": {
                "type": "integer",
                "nullable": True,
                "minimum": 0,
                "description": "students with no record since active_since, taken to have left and not counted "
                "(0, or at least 10; null: suppressed)",
            },
            "active_since": {"type": "string", "nullable": True},
        },
        nullable_=True,
    )
    status = {"type": "string", "enum": ["ready", "computing", "unavailable"]}
    term = {"term": {"type": "string"}, "next_term": {"type": "boolean"}}
    return {
        "AdvisorTerms": _object(
            {
                "terms": {"type": "array", "items": _object({**term, "plan": plan({"type": "integer"})})},
                "default": nullable("string"),
            }
        ),
        **_figure_schemas(),
        "AdvisorTerm": _object(
            {
                **term,
                "model_version": {"type": "string"},
                "min_students": {"type": "integer", "description": "no figure counts fewer students"},
                "plan": plan({"type": "array", "items": ref("SeatFigures")}),
                "plan_missing": {**nullable("string"), "description": "how to make the missing plan"},
                "at_risk": _object({"status": status, "message": nullable("string"), "counts": counts}),
            }
        ),
    }
