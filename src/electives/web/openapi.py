"""The OpenAPI 3.0 document of API v1, written by hand; the limits come from the running configuration and
:mod:`electives.web.inputs`, so the document states what the server enforces (tests/test_openapi.py checks it
with schemathesis)."""

from __future__ import annotations

from typing import Any

from electives import __version__
from electives.web.config import WebConfig
from electives.web.inputs import (
    MAX_ACCESS_CODE_CHARS,
    MAX_CODE_CHARS,
    MAX_MARK_CHARS,
    MAX_QUERY_CHARS,
    MAX_TERM_CHARS,
)


def _string(max_chars: int, description: str, example: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_chars, "description": description}
    if example is not None:
        out["example"] = example
    return out


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        out["headers"] = headers
    return out


def openapi_document(config: WebConfig) -> dict[str, Any]:
    nullable_number = {"type": "number", "nullable": True}
    nullable_string = {"type": "string", "nullable": True}
    options = {
        "k": {
            "type": "integer",
            "minimum": 1,
            "maximum": config.max_k,
            "default": config.default_k,
            "description": "how many electives to recommend",
        },
        "term": {
            **_string(MAX_TERM_CHARS, "target term: a season (Fall) or a term (2025-Fall); only courses offered then"),
            "nullable": True,
            "example": "Fall",
        },
        "why_not": {
            "type": "array",
            "maxItems": config.max_why_not,
            "items": _string(MAX_CODE_CHARS, "a course code"),
            "description": "courses to explain: why each is (not) recommended",
        },
    }
    rate_limited = _error(
        "too many requests from this address (per worker process)",
        {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
    )
    common_errors = {
        "400": _error("a field is missing or invalid; `field` names it"),
        "413": _error(f"the body is larger than {config.max_content_length} bytes"),
        "415": _error("the body is not JSON"),
        "429": rate_limited,
        "503": _error("the model or the grade database is not available"),
    }
    similar = {
        "type": "object",
        "required": ["course", "name", "points", "letter", "similarity"],
        "properties": {
            "course": {"type": "string"},
            "name": {"type": "string"},
            "points": nullable_number,
            "letter": nullable_string,
            "similarity": {"type": "number"},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
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
        },
        "paths": {
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness probe",
                    "responses": {
                        "200": {
                            "description": "the process is up",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                        }
                    },
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness probe: model loaded, database reachable",
                    "responses": {
                        "200": {
                            "description": "ready",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}},
                        },
                        "503": {
                            "description": "not ready",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}},
                        },
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3 document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/api/v1/model": {
                "get": {
                    "operationId": "model",
                    "summary": "The served model: version, data size, validation metrics",
                    "responses": {
                        "200": {
                            "description": "model information",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelInfo"}}},
                        }
                    },
                }
            },
            "/api/v1/courses": {
                "get": {
                    "operationId": "courses",
                    "summary": "Search the catalogue (for grade entry)",
                    "parameters": [
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
                    ],
                    "responses": {
                        "200": {
                            "description": "matching courses, codes starting with the query first",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CourseList"}}},
                        },
                        "400": common_errors["400"],
                        "429": rate_limited,
                    },
                }
            },
            "/api/v1/recommendations": {
                "post": {
                    "operationId": "recommendForGrades",
                    "summary": "Recommendations for entered grades (nothing is stored)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GradesRequest"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "the top-k eligible electives",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Recommendations"}}
                            },
                        },
                        **common_errors,
                    },
                }
            },
            "/api/v1/students/recommendations": {
                "post": {
                    "operationId": "recommendForStudent",
                    "summary": "Recommendations for a student on record (student number and access code)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StudentRequest"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "the top-k eligible electives",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Recommendations"}}
                            },
                        },
                        **common_errors,
                        "401": _error("the student number and access code do not match"),
                        "404": _error("no grades on record for this student"),
                        "501": _error("this server has no grade database"),
                    },
                }
            },
        },
        "components": {
            "schemas": {
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
                        "database": {"type": "string", "nullable": True, "enum": ["ok", "unavailable", None]},
                    },
                },
                "ModelInfo": {
                    "type": "object",
                    "required": ["version", "mode", "students", "courses", "metrics"],
                    "properties": {
                        "version": {"type": "string"},
                        "mode": {"type": "string", "enum": ["explicit", "implicit"]},
                        "students": {"type": "integer"},
                        "courses": {"type": "integer"},
                        "training_rows": {"type": "integer", "nullable": True},
                        "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
                        "interval_coverage": nullable_number,
                        "privacy": {
                            "type": "object",
                            "nullable": True,
                            "description": "the differential-privacy budget spent in training; null without DP",
                            "properties": {
                                "epsilon": {"type": "number"},
                                "delta": {"type": "number"},
                                "target_epsilon": nullable_number,
                                "max_grad_norm": nullable_number,
                                "unit": nullable_string,
                            },
                        },
                    },
                },
                "Course": {
                    "type": "object",
                    "required": ["course", "name", "elective", "department"],
                    "properties": {
                        "course": {"type": "string"},
                        "name": {"type": "string"},
                        "elective": {"type": "boolean", "nullable": True},
                        "department": nullable_string,
                    },
                },
                "CourseList": {
                    "type": "object",
                    "required": ["courses", "total"],
                    "properties": {
                        "courses": {"type": "array", "items": {"$ref": "#/components/schemas/Course"}},
                        "total": {"type": "integer", "minimum": 0},
                    },
                },
                "Grade": {
                    "type": "object",
                    "required": ["course"],
                    "additionalProperties": False,
                    "properties": {
                        "course": _string(MAX_CODE_CHARS, "course code (or exact name of a catalogue course)", "CS101"),
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
                            "items": {"$ref": "#/components/schemas/Grade"},
                        },
                        **options,
                    },
                },
                "StudentRequest": {
                    "type": "object",
                    "required": ["student_id", "access_code"],
                    "additionalProperties": False,
                    "properties": {
                        "student_id": _string(MAX_CODE_CHARS, "student number as the registrar writes it"),
                        "access_code": _string(MAX_ACCESS_CODE_CHARS, "code from `electives access-code ID`"),
                        **options,
                    },
                },
                "Recommendation": {
                    "type": "object",
                    "required": ["rank", "course", "name", "score", "points", "letter", "interval", "explanation"],
                    "properties": {
                        "rank": {"type": "integer", "minimum": 1},
                        "course": {"type": "string"},
                        "name": {"type": "string"},
                        "description": nullable_string,
                        "score": {"type": "number", "description": "predicted normalised grade (or probability)"},
                        "points": {**nullable_number, "description": "predicted grade on the scale"},
                        "letter": nullable_string,
                        "interval": {
                            "type": "array",
                            "nullable": True,
                            "items": {"type": "number"},
                            "minItems": 2,
                            "maxItems": 2,
                        },
                        "explanation": nullable_string,
                        "similar_courses": {"type": "array", "items": similar},
                        "cohort": {
                            "type": "object",
                            "nullable": True,
                            "properties": {
                                "size": {"type": "integer", "minimum": 10},
                                "mean": {"type": "number"},
                                "points": {"type": "number"},
                                "letter": {"type": "string"},
                            },
                        },
                    },
                },
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
                        "target_term": nullable_string,
                        "scale": nullable_string,
                        "coverage": nullable_number,
                        "note": nullable_string,
                        "recommendations": {
                            "type": "array",
                            "maxItems": config.max_k,
                            "items": {"$ref": "#/components/schemas/Recommendation"},
                        },
                        "eligible": {"type": "integer", "minimum": 0},
                        "excluded_count": {"type": "integer", "minimum": 0},
                        "ignored_courses": {"type": "array", "items": {"type": "string"}},
                        "why_not": {"type": "array", "items": {"$ref": "#/components/schemas/WhyNot"}},
                    },
                },
            }
        },
    }
