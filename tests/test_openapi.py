"""The OpenAPI document at /api/v1/openapi.json: valid, complete, and true to the app's behaviour (schemathesis
generates requests from it, valid and invalid, and checks every answer against it)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from web_support import ADVISOR_TOKEN, advisor_app, known_student, make_app, web_world

from electives.web import RateLimit

UNLIMITED = RateLimit(0, 1)


@pytest.fixture(scope="module")
def app():
    return make_app(
        web_world(),
        api_rate_limit=UNLIMITED,
        search_rate_limit=UNLIMITED,
        access_code_rate_limit=UNLIMITED,
        access_code_failures=UNLIMITED,
    )


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


def operations(api_schema) -> list:
    return [result.ok() for result in api_schema.get_all_operations()]


# schemathesis' own pytest integration (from_fixture) does not run under pytest 9, so each operation gets a
# Hypothesis test here, over both kinds of generated data.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_the_api_behaves_as_documented(api_schema, mode: GenerationMode) -> None:
    ops = operations(api_schema)
    assert {op.label for op in ops} >= {"POST /api/v1/recommendations", "POST /api/v1/students/recommendations"}
    calls = []
    for op in ops:
        if mode is GenerationMode.NEGATIVE and not (len(op.query) or len(op.body)):
            continue  # no input: nothing can be invalid

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            # Every default check (no 5xx, documented status codes, content types, headers and bodies, invalid
            # input rejected with a 4xx, 405 with Allow for other methods) except positive_data_acceptance: a
            # request of the right shape can still name a course the model does not know, a documented 400.
            response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
            calls.append(response.status_code)

        check()
    assert len(calls) >= len(ops) // 2
    if mode is GenerationMode.NEGATIVE:
        assert any(400 <= status < 500 for status in calls)


def test_every_route_is_documented(app) -> None:
    doc = app.test_client().get("/api/v1/openapi.json").json
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/api/", "/healthz", "/readyz"))
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == served


def test_documented_limits_are_the_configured_ones(app) -> None:
    doc = app.test_client().get("/api/v1/openapi.json").json
    config = app.extensions["electives"].config
    grades = doc["components"]["schemas"]["GradesRequest"]["properties"]
    assert grades["grades"]["maxItems"] == config.max_grades
    assert grades["k"]["maximum"] == config.max_k and grades["k"]["default"] == config.default_k
    assert doc["openapi"].startswith("3.")


def test_documented_example_works(app) -> None:
    """The request the document describes, with a real record, gets the documented answer."""
    world = web_world()
    student = known_student(world)
    body = {"grades": [{"course": c, "grade": m} for c, m in world.grades_of(student)], "k": 3, "why_not": ["CS101"]}
    r = app.test_client().post("/api/v1/recommendations", json=body)
    assert r.status_code == 200
    required = (
        app.test_client().get("/api/v1/openapi.json").json["components"]["schemas"]["Recommendations"]["required"]
    )
    assert set(required) <= set(r.json)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_the_advisor_api_behaves_as_documented(mode: GenerationMode) -> None:
    """With an advisor token, the advisor's routes are in the document and answer as it says, with the token
    and without it (401), for terms that exist and any other string (400)."""
    app = advisor_app(web_world(), advisor_token_failures=UNLIMITED)
    ops = [
        op for op in operations(schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)) if "advisor" in op.label
    ]
    assert {op.label for op in ops} == {"GET /api/v1/advisor/terms", "GET /api/v1/advisor/terms/{term}"}
    calls: list[int] = []
    for op in ops:
        for headers in ({"Authorization": f"Bearer {ADVISOR_TOKEN}"}, {}):
            checker(op, mode, headers, calls)()
    assert {200, 400, 401} <= set(calls)


def checker(op, mode: GenerationMode, headers: dict[str, str], calls: list[int]):
    """A Hypothesis test of ``op``: each generated request, sent with ``headers``, answers as documented."""

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        response = case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
        calls.append(response.status_code)

    return check
