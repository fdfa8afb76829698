"""The OpenAPI 3.0 document of API v1, written by hand; the limits come from the running configuration and
:mod:`electives.web.inputs`, so the document states what the server enforces (tests/test_openapi.py checks it
with schemathesis)."""

from __future__ import annotations

from typing import Any

from electives import __version__
from electives.serving.cohorts import MIN_RECORD
from electives.web.advisor_openapi import advisor_paths, advisor_schemas
from electives.web.config import WebConfig
from electives.web.inputs import (
    MAX_ACCESS_CODE_CHARS,
    MAX_CODE_CHARS,
    MAX_MARK_CHARS,
    MAX_QUERY_CHARS,
    MAX_TERM_CHARS,
)
from electives.web.openapi_parts import (
    error_answer,
    get_path,
    json_answer,
    nullable,
    rate_limited_answer,
    ref,
    string_schema,
)


def openapi_document(config: WebConfig) -> dict[str, Any]:
    """The document for ``config``: paths in route order, then the schemas they refer to (the advisor's only
    when the deployment has an advisor token: without one those routes do not exist)."""
    advisor = config.advisor_token is not None
    document = {
        "openapi": "3.0.3",
        "info": _info(config),
        "paths": {
            **_probe_paths(),
            **_read_paths(config),
            **_recommend_paths(config),
            **(advisor_paths() if advisor else {}),
        },
        "components": {
            "schemas": {
                **_status_schemas(),
                "ModelInfo": _model_info_schema(),
                **_course_schemas(),
                **_request_schemas(config),
                **_recommendation_schemas(config),
                **(advisor_schemas() if advisor else {}),
            }
        },
    }
    if advisor:
        bearer = {"type": "http", "scheme": "bearer", "description": "the deployment's advisor token"}
        document["components"]["securitySchemes"] = {"advisorToken": bearer}
    return document


def _info(config: WebConfig) -> dict[str, Any]:
    return {
        "title": "electives",
        "version": __version__,
        "description": (
            "Elective-course recommendations from a NeuMF model trained on past final grades. Grades sent to "
            "`POST /api/v1/recommendations` are used for that one answer and never stored or logged. Errors are "
            '`{"error": code, "message": text}`, with `field` naming the input at fault. Rate limits are '
            f"per client address and per worker: {config.api_rate_limit} for recommendations, "
            f"{config.search_rate_limit} for course searches, {config.access_code_rate_limit} for access-code "
            f"attempts and {config.access_code_failures} wrong codes per student number."
        ),
    }


# ---------------------------------------------------------------------------------------------------- paths


def _common_errors(config: WebConfig) -> dict[str, Any]:
    """The errors every recommendation request can get."""
    return {
        "400": error_answer("a field is missing or invalid; `field` names it"),
        "413": error_answer(f"the body is larger than {config.max_content_length} bytes"),
        "415": error_answer("the body is not JSON"),
        "429": rate_limited_answer(),
        "503": error_answer("the model or the grade database is not available"),
    }


def _probe_paths() -> dict[str, Any]:
    ready = json_answer("ready", ref("Ready"))
    return {
        "/healthz": get_path("healthz", "Liveness probe", "the process is up", ref("Health")),
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness probe: model loaded, database reachable",
                "responses": {"200": ready, "503": {**ready, "description": "not ready"}},
            }
        },
    }


def _read_paths(config: WebConfig) -> dict[str, Any]:
    """This document, the model and the course search."""
    parameters = [
        {
            "name": "q",
            "in": "query",
            "description": "words that the course code or name must contain (case-insensitive)",
            "schema": {"type": "string", "maxLength": MAX_QUERY_CHARS},
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": config.max_course_limit,
                "default": config.default_course_limit,
            },
        },
        {
            "name": "electives",
            "in": "query",
            "description": "only courses the catalogue marks as electives",
            "schema": {"type": "boolean", "default": False},
        },
    ]
    return {
        "/api/v1/openapi.json": get_path("openapi", "This document", "OpenAPI 3 document", {"type": "object"}),
        "/api/v1/model": get_path(
            "model", "The served model: version, data size, validation metrics", "model information", ref("ModelInfo")
        ),
        "/api/v1/courses": {
            "get": {
                "operationId": "courses",
                "summary": "Search the catalogue (for grade entry)",
                "parameters": parameters,
                "responses": {
                    "200": json_answer("matching courses, codes starting with the query first", ref("CourseList")),
                    "400": _common_errors(config)["400"],
                    "429": rate_limited_answer(),
                },
            }
        },
    }


def _recommend_paths(config: WebConfig) -> dict[str, Any]:
    def post(operation_id: str, summary: str, request: str, errors: dict[str, Any]) -> dict[str, Any]:
        return {
            "post": {
                "operationId": operation_id,
                "summary": summary,
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref(request)}}},
                "responses": {"200": json_answer("the top-k eligible electives", ref("Recommendations")), **errors},
            }
        }

    common = _common_errors(config)
    return {
        "/api/v1/recommendations": post(
            "recommendForGrades", "Recommendations for entered grades (nothing is stored)", "GradesRequest", common
        ),
        "/api/v1/students/recommendations": post(
            "recommendForStudent",
            "Recommendations for a student on record (student number and access code)",
            "StudentRequest",
            {
                **common,
                "401": error_answer("the student number and access code do not match"),
                "404": error_answer("no grades on record for this student"),
                "501": error_answer("this server has no grade database"),
            },
        ),
    }


# ---------------------------------------------------------------------------------------------------- schemas


def _status_schemas() -> dict[str, Any]:
    """The error body and the probes' answers."""
    return {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "stable code, e.g. invalid_field"},
                "message": {"type": "string", "description": "what is wrong, naming the field"},
                "field": {"type": "string", "description": "the input at fault, e.g. grades[2].course"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok"]}},
        },
        "Ready": {
            "type": "object",
            "required": ["status", "model_version", "database"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "unavailable"]},
                "model_version": {"type": "string"},
                "model_family": {"type": "string", "description": "the served model family (e.g. neumf, bias)"},
                "model_signed": {
                    "type": "boolean",
                    "description": "the artifact is signed with this deployment's key (checked when loaded)",
                },
                "database": {"type": "string", "nullable": True, "enum": ["ok", "unavailable", None]},
            },
        },
    }


def _model_info_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["version", "mode", "students", "courses", "metrics"],
        "properties": {
            "version": {"type": "string"},
            "mode": {"type": "string", "enum": ["explicit", "implicit"]},
            "family": {
                "type": "string",
                "description": "the served model family: neumf, gmf, mlp, bias, mf, knn, ease, ials, ensemble or blend",
            },
            "model_selection": {
                "type": "object",
                "nullable": True,
                "description": (
                    "how the family was chosen: every candidate's value of the metric (validation RMSE with grades, "
                    "NDCG@10 against sampled courses on enrolments; null when forced)"
                ),
                "properties": {
                    "chosen": nullable("string"),
                    "validation": nullable("string"),
                    "metric": nullable("string"),
                    "candidates": {"type": "array", "items": {"type": "object"}},
                },
            },
            "students": {"type": "integer"},
            "courses": {"type": "integer"},
            "training_rows": {"type": "integer", "nullable": True},
            "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
            "interval_coverage": nullable("number"),
            "signed": {"type": "boolean", "description": "signed with this deployment's key (checked when loaded)"},
            "privacy": {
                "type": "object",
                "nullable": True,
                "description": "the differential-privacy budget spent in training; null without DP",
                "properties": {
                    "epsilon": {"type": "number"},
                    "delta": {"type": "number"},
                    "target_epsilon": nullable("number"),
                    "max_grad_norm": nullable("number"),
                    "unit": nullable("string"),
                },
            },
        },
    }


def _course_schemas() -> dict[str, Any]:
    return {
        "Course": {
            "type": "object",
            "required": ["course", "name", "elective", "department"],
            "properties": {
                "course": {"type": "string"},
                "name": {"type": "string"},
                "elective": {"type": "boolean", "nullable": True},
                "department": nullable("string"),
            },
        },
        "CourseList": {
            "type": "object",
            "required": ["courses", "total"],
            "properties": {
                "courses": {"type": "array", "items": ref("Course")},
                "total": {"type": "integer", "minimum": 0},
            },
        },
    }


def _options(config: WebConfig) -> dict[str, Any]:
    """The properties every recommendation request shares (:class:`electives.web.inputs.Options`)."""
    return {
        "k": {
            "type": "integer",
            "minimum": 1,
            "maximum": config.max_k,
            "default": config.default_k,
            "description": "how many electives to recommend",
        },
        "term": {
            **string_schema(
                MAX_TERM_CHARS, "target term: a season (Fall) or a term (2025-Fall); only courses offered then"
            ),
            "nullable": True,
            "example": "Fall",
        },
        "why_not": {
            "type": "array",
            "maxItems": config.max_why_not,
            "items": string_schema(MAX_CODE_CHARS, "a course code"),
            "description": "courses to explain: why each is (not) recommended",
        },
    }


def _request_schemas(config: WebConfig) -> dict[str, Any]:
    options = _options(config)
    return {
        "Grade": {
            "type": "object",
            "required": ["course"],
            "additionalProperties": False,
            "properties": {
                "course": string_schema(MAX_CODE_CHARS, "course code (or exact name of a catalogue course)", "CS101"),
                "grade": {
                    "description": "mark on the model's grade scale (a letter or a number); required "
                    "unless the model is enrolment-only",
                    "oneOf": [
                        {"type": "string", "minLength": 1, "maxLength": MAX_MARK_CHARS},
                        {"type": "number"},
                    ],
                    "example": "B+",
                },
            },
        },
        "GradesRequest": {
            "type": "object",
            "required": ["grades"],
            "additionalProperties": False,
            "properties": {
                "grades": {
                    "type": "array",
                    "maxItems": config.max_grades,
                    "items": ref("Grade"),
                    "description": "each course once; a course may appear twice only as a failed mark followed "
                    "by its retake (the later attempt counts); any other repeat is a 400 naming both entries",
                },
                **options,
            },
        },
        "StudentRequest": {
            "type": "object",
            "required": ["student_id", "access_code"],
            "additionalProperties": False,
            "properties": {
                "student_id": string_schema(MAX_CODE_CHARS, "student number as the registrar writes it"),
                "access_code": string_schema(MAX_ACCESS_CODE_CHARS, "code from `electives access-code ID`"),
                **options,
            },
        },
    }


def _recommendation_schema() -> dict[str, Any]:
    """One card."""
    similar = {
        "type": "object",
        "required": ["course", "name", "points", "letter", "similarity"],
        "properties": {
            "course": {"type": "string"},
            "name": {"type": "string"},
            "points": nullable("number"),
            "letter": nullable("string"),
            "similarity": {"type": "number"},
        },
    }
    return {
        "type": "object",
        "required": ["rank", "course", "name", "score", "points", "letter", "interval", "explanation"],
        "properties": {
            "rank": {"type": "integer", "minimum": 1},
            "course": {"type": "string"},
            "name": {"type": "string"},
            "description": nullable("string"),
            "score": {
                "type": "number",
                "description": "predicted normalised grade, or (enrolment-only models) a score that ranks courses",
            },
            "points": {**nullable("number"), "description": "predicted grade on the scale"},
            "letter": nullable("string"),
            "interval": {"type": "array", "nullable": True, "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
            "explanation": nullable("string"),
            "similar_courses": {"type": "array", "items": similar},
            "cohort": {
                "type": "object",
                "nullable": True,
                "properties": {
                    "size": {"type": "integer", "minimum": 10},
                    "mean": {"type": "number"},
                    "points": {"type": "number"},
                    "letter": {"type": "string"},
                    "relation": {
                        "type": "string",
                        "enum": ["in-line", "above", "below"],
                        "description": "the cohort's letter against this card's predicted letter",
                    },
                },
                "description": "how students with records like this one did; only for a record of at least "
                f"{MIN_RECORD} graded courses the model knows (fewer cannot define 'records like yours')",
            },
            "likely_full": {
                **nullable("boolean"),
                "description": "from the term's seat plan (electives plan): true when more students have the course "
                "in their own top k than it has seats; null when no plan for the term is stored",
            },
        },
    }


def _recommendation_schemas(config: WebConfig) -> dict[str, Any]:
    """The answer of both recommendation requests: cards and "why not?" answers."""
    return {
        "Recommendation": _recommendation_schema(),
        "WhyNot": {
            "type": "object",
            "required": ["course", "reason", "message"],
            "properties": {
                "course": {"type": "string"},
                "reason": {"type": "string", "description": "stable key, e.g. already-passed, ranked-lower"},
                "message": {"type": "string"},
            },
        },
        "Recommendations": {
            "type": "object",
            "required": ["model_version", "mode", "basis", "k", "recommendations", "eligible", "why_not"],
            "properties": {
                "model_version": {"type": "string"},
                "mode": {"type": "string", "enum": ["explicit", "implicit"]},
                "basis": {"type": "string", "enum": ["trained", "folded-in"]},
                "grades_used": {"type": "integer", "minimum": 0},
                "k": {"type": "integer", "minimum": 1},
                "target_term": nullable("string"),
                "scale": nullable("string"),
                "coverage": nullable("number"),
                "note": {
                    **nullable("string"),
                    "description": "sentences about the whole answer: an enrolment-only model; an average "
                    "student's ranking when no grade the model knows was entered; retaken courses",
                },
                "recommendations": {"type": "array", "maxItems": config.max_k, "items": ref("Recommendation")},
                "eligible": {"type": "integer", "minimum": 0},
                "excluded_count": {"type": "integer", "minimum": 0},
                "ignored_courses": {"type": "array", "items": {"type": "string"}},
                "retaken_courses": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "courses entered twice as a failed mark, then a retake (the later attempt counts)",
                },
                "why_not": {"type": "array", "items": ref("WhyNot")},
            },
        },
    }
