"""Web app and JSON API: happy paths, every error path, security headers, CSRF, rate limits, size caps, model
swap, privacy of the logs, configuration and the serve/access-code commands."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from itsdangerous import TimestampSigner
from web_support import KEY, TRAIN, WEB_SECRET, WebWorld, known_student, make_app, save_variant, tiny_png, web_world

from electives.data.splits import validation_split
from electives.serving.recommender import Recommender
from electives.web import RateLimit, WebConfig, create_app
from electives.web.config import ConfigError
from electives.web.rate_limit import RateLimiter

API = "/api/v1/recommendations"
STUDENTS = "/api/v1/students/recommendations"
UNLIMITED = RateLimit(0, 1)


@pytest.fixture(scope="module")
def world() -> WebWorld:
    return web_world()


@pytest.fixture(scope="module")
def app(world: WebWorld):
    return make_app(
        world,
        api_rate_limit=UNLIMITED,
        search_rate_limit=UNLIMITED,
        access_code_rate_limit=UNLIMITED,
        access_code_failures=UNLIMITED,
    )


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def student(world: WebWorld) -> str:
    return known_student(world)


def body_for(world: WebWorld, raw: str, **extra) -> dict:
    return {"grades": [{"course": c, "grade": m} for c, m in world.grades_of(raw)], **extra}


def passed(world: WebWorld, raw: str) -> set[str]:
    return {c for c, m in world.grades_of(raw) if float(m) >= world.result.scale.pass_points}


def csrf_token(client, path: str = "/recommend") -> str:
    page = client.get(path)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


# ------------------------------------------------------------------------------------------------ probes


def test_health_and_readiness(client, world: WebWorld) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json == {"status": "ok"}
    r = client.get("/readyz")
    manifest = json.loads((world.model_dir / "manifest.json").read_text())
    assert r.status_code == 200
    assert r.json == {
        "status": "ready",
        "model_version": manifest["weights_sha256"][:12],
        "model_family": manifest["family"],
        "model_signed": False,  # the test world's model is saved without a key
        "database": "ok",
    }


def test_not_ready_when_the_database_fails(world: WebWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    from electives.errors import StorageError

    app = make_app(world)
    store = app.extensions["electives"].store

    def broken() -> None:
        raise StorageError("database is down")

    monkeypatch.setattr(store, "scale", broken)
    r = app.test_client().get("/readyz")
    assert r.status_code == 503 and r.json["status"] == "unavailable" and r.json["database"] == "unavailable"


# ------------------------------------------------------------------------------------------------ grades API


def test_recommendations_for_grades(client, world: WebWorld, student: str, app) -> None:
    taken = passed(world, student)
    some_passed = sorted(taken)[0]
    r = client.post(API, json=body_for(world, student, k=3, why_not=[some_passed, "NOPE999"]))
    assert r.status_code == 200, r.json
    out = r.json
    assert out["basis"] == "folded-in" and out["mode"] == "explicit" and out["scale"] == "percent"
    assert 1 <= len(out["recommendations"]) <= 3 and out["eligible"] >= len(out["recommendations"])
    for rank, item in enumerate(out["recommendations"], start=1):
        assert item["rank"] == rank
        assert item["course"] not in taken
        assert world.catalog[item["course"]].elective
        assert item["name"] == world.catalog[item["course"]].name
        assert item["description"] == world.catalog[item["course"]].description
        lo, hi = item["interval"]
        assert lo <= item["points"] <= hi and item["letter"]
        assert item["explanation"]
    why = {w["course"]: w for w in out["why_not"]}
    assert why[some_passed]["reason"] == "already-passed"
    assert why["NOPE999"]["reason"] == "not-a-course"
    assert out["model_version"] == app.extensions["electives"].model.current.version
    # The API is the library: same courses in the same order as the recommender on the same model.
    rec = Recommender.load(world.model_dir, catalog=world.catalog_path)
    direct = rec.recommend_for_grades(world.grades_of(student), k=3)
    assert [i["course"] for i in out["recommendations"]] == list(direct.courses)


def test_numbers_and_terms_are_accepted(client, world: WebWorld, student: str) -> None:
    body = {"grades": [{"course": c, "grade": float(m)} for c, m in world.grades_of(student)], "term": "Fall", "k": 2}
    r = client.post(API, json=body)
    assert r.status_code == 200 and r.json["target_term"] == "Fall"
    for item in r.json["recommendations"]:
        assert world.catalog[item["course"]].offered_in("Fall") is not False
    # No grades at all is a new student: the average student's picks among courses without prerequisites.
    r = client.post(API, json={"grades": []})
    assert r.status_code == 200 and r.json["grades_used"] == 0
    assert len(r.json["recommendations"]) == min(5, r.json["eligible"]) >= 1
    for item in r.json["recommendations"]:
        assert not world.catalog[item["course"]].prerequisites


def _too_many(n: int) -> dict:
    return {"grades": [{"course": "CS101", "grade": "70"}] * n}


ERRORS = [
    # (body or raw bytes, content type, status, error code, field)
    ("grades=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type", None),
    (b"{not json", "application/json", 400, "invalid_json", "body"),
    ([1, 2], "application/json", 400, "invalid_json", "body"),
    ({}, "application/json", 400, "invalid_field", "grades"),
    ({"grades": "CS101"}, "application/json", 400, "invalid_field", "grades"),
    ({"grades": ["CS101"]}, "application/json", 400, "invalid_field", "grades[0]"),
    ({"grades": [], "colour": 1}, "application/json", 400, "invalid_field", "colour"),
    ({"grades": [{"course": "CS101", "grade": "70", "x": 1}]}, "application/json", 400, "invalid_field", "grades[0].x"),
    ({"grades": [{"grade": "70"}]}, "application/json", 400, "invalid_field", "grades[0].course"),
    ({"grades": [{"course": 101, "grade": "70"}]}, "application/json", 400, "invalid_field", "grades[0].course"),
    ({"grades": [{"course": "  ", "grade": "70"}]}, "application/json", 400, "invalid_field", "grades[0].course"),
    ({"grades": [{"course": "C" * 65, "grade": "70"}]}, "application/json", 400, "invalid_field", "grades[0].course"),
    ({"grades": [{"course": "CS101"}]}, "application/json", 400, "invalid_field", "grades[0].grade"),
    ({"grades": [{"course": "CS101", "grade": True}]}, "application/json", 400, "invalid_field", "grades[0].grade"),
    ({"grades": [{"course": "CS101", "grade": [70]}]}, "application/json", 400, "invalid_field", "grades[0].grade"),
    (
        {"grades": [{"course": "CS101", "grade": "70"}, {"course": "XX999", "grade": "70"}]},
        "application/json",
        400,
        "invalid_field",
        "grades[1].course",
    ),
    (
        {"grades": [{"course": "CS101", "grade": "70"}, {"course": "CS102", "grade": "Z+"}]},
        "application/json",
        400,
        "invalid_field",
        "grades[1].grade",
    ),
    ({"grades": [{"course": "CS101", "grade": 150}]}, "application/json", 400, "invalid_field", "grades[0].grade"),
    ({"grades": [], "k": 0}, "application/json", 400, "invalid_field", "k"),
    ({"grades": [], "k": 21}, "application/json", 400, "invalid_field", "k"),
    ({"grades": [], "k": "5"}, "application/json", 400, "invalid_field", "k"),
    ({"grades": [], "k": True}, "application/json", 400, "invalid_field", "k"),
    ({"grades": [], "k": 2.5}, "application/json", 400, "invalid_field", "k"),
    ({"grades": [], "term": "Neverember"}, "application/json", 400, "invalid_field", "term"),
    ({"grades": [], "term": 2025}, "application/json", 400, "invalid_field", "term"),
    ({"grades": [], "why_not": "CS101"}, "application/json", 400, "invalid_field", "why_not"),
    ({"grades": [], "why_not": [3]}, "application/json", 400, "invalid_field", "why_not[0]"),
    ({"grades": [], "why_not": ["CS101"] * 21}, "application/json", 400, "invalid_field", "why_not"),
    (_too_many(201), "application/json", 400, "invalid_field", "grades"),
]


@pytest.mark.parametrize(("body", "ctype", "status", "code", "field"), ERRORS)
def test_grade_request_errors(client, body, ctype, status, code, field) -> None:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    r = client.post(API, data=data, content_type=ctype)
    assert r.status_code == status, r.json
    assert r.json["error"] == code
    assert r.json.get("field") == field
    if field is not None:
        assert r.json["message"].startswith(f"{field}: "), r.json["message"]
    assert r.headers["Content-Type"] == "application/json"


def test_error_messages_name_the_input(client) -> None:
    r = client.post(API, json={"grades": [{"course": "XX999", "grade": "70"}]})
    assert "XX999" in r.json["message"]
    r = client.post(API, json={"grades": [{"course": "CS101", "grade": "Z+"}]})
    assert "'Z+'" in r.json["message"] and "percent" in r.json["message"]


def test_body_size_cap(client) -> None:
    r = client.post(API, data=b'{"grades": [' + b" " * 70_000 + b"]}", content_type="application/json")
    assert r.status_code == 413 and r.json["error"] == "payload_too_large"


def test_unknown_routes_and_methods(client) -> None:
    r = client.get(API)
    assert r.status_code == 405 and r.json["error"] == "method_not_allowed" and "POST" in r.headers["Allow"]
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json["error"] == "not_found"
    r = client.get("/nothing-here")
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("text/html")


def test_internal_errors_are_json_and_say_nothing(world: WebWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(world)
    rec = app.extensions["electives"].model.current.recommender

    def boom(*args, **kwargs):
        raise RuntimeError("secret detail 93.75")

    monkeypatch.setattr(rec, "recommend_for_grades", boom)
    r = app.test_client().post(API, json={"grades": []})
    assert r.status_code == 500 and r.json["error"] == "internal_error"
    assert "93.75" not in r.get_data(as_text=True)


# ------------------------------------------------------------------------------------------------ students API


def test_student_with_the_right_code(client, world: WebWorld, student: str) -> None:
    r = client.post(STUDENTS, json={"student_id": student, "access_code": world.key.access_code(student), "k": 4})
    assert r.status_code == 200, r.json
    assert r.json["basis"] == "trained"
    for item in r.json["recommendations"]:
        assert item["course"] not in passed(world, student)
    # Codes are read aloud and typed: case, spaces and a missing dash do not matter.
    code = world.key.access_code(student).replace("-", " ").lower()
    assert client.post(STUDENTS, json={"student_id": student, "access_code": code}).status_code == 200


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"access_code": "AAAAA-AAAAA"}, 401, "invalid_access_code", "access_code"),
        ({"access_code": None}, 400, "invalid_field", "access_code"),
        ({"student_id": None}, 400, "invalid_field", "student_id"),
        ({"student_id": 20190001}, 400, "invalid_field", "student_id"),
        ({"k": 99}, 400, "invalid_field", "k"),
        ({"extra": 1}, 400, "invalid_field", "extra"),
    ],
)
def test_student_errors(
    client, world: WebWorld, student: str, change: dict, status: int, code: str, field: str
) -> None:
    body = {"student_id": student, "access_code": world.key.access_code(student)}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    r = client.post(STUDENTS, json=body)
    assert (r.status_code, r.json["error"], r.json.get("field")) == (status, code, field)


def test_unknown_student_with_a_valid_code(client, world: WebWorld) -> None:
    raw = "99999999"  # not in the database; the code is right for it
    r = client.post(STUDENTS, json={"student_id": raw, "access_code": world.key.access_code(raw)})
    assert r.status_code == 404 and r.json["error"] == "unknown_student"
    assert raw not in r.json["message"]


def test_students_need_a_database(world: WebWorld) -> None:
    app = make_app(world, db_url=None)
    r = app.test_client().post(STUDENTS, json={"student_id": "1", "access_code": "x"})
    assert r.status_code == 501 and r.json["error"] == "students_unavailable"
    assert app.test_client().get("/student").status_code == 404


# ------------------------------------------------------------------------------------------------ courses, model, openapi


def test_course_search(client, world: WebWorld) -> None:
    r = client.get("/api/v1/courses?q=cs&limit=3")
    assert r.status_code == 200
    assert len(r.json["courses"]) == 3 and r.json["total"] >= 3
    assert all("cs" in (c["course"] + " " + c["name"]).lower() for c in r.json["courses"])
    everything = client.get("/api/v1/courses?limit=100").json
    assert everything["total"] == len(world.catalog)
    electives = client.get("/api/v1/courses?electives=true&limit=100").json["courses"]
    assert {c["course"] for c in electives} == {c.code for c in world.catalog.electives}
    name = world.catalog.courses[0].name
    assert world.catalog.courses[0].code in [
        c["course"] for c in client.get(f"/api/v1/courses?q={name}").json["courses"]
    ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("electives=maybe", "electives"),
        ("q=" + "x" * 65, "q"),
    ],
)
def test_course_search_errors(client, query: str, field: str) -> None:
    r = client.get(f"/api/v1/courses?{query}")
    assert r.status_code == 400 and r.json["field"] == field


def test_model_info(client, world: WebWorld) -> None:
    info = client.get("/api/v1/model").json
    assert info["students"] == world.train.n_students and info["courses"] == world.train.n_courses
    assert info["training_rows"] == len(world.train) and info["interval_coverage"] == 0.8
    # What the artifact recorded, served as is (web_support measured it on validation rows the model never saw).
    recorded = world.model_dir.joinpath("manifest.json").read_text()
    assert info["metrics"] == pytest.approx(json.loads(recorded)["metrics"])
    # A model that learned something: clearly below a constant (the training mean) on the same validation rows
    # (measured: 8.3 against 11.2 points); and MAE ≤ RMSE, as for any residuals.
    cfg = TRAIN.resolved()
    fit_rows, val = validation_split(world.train, cfg.validation, cfg.val_fraction, cfg.seed)  # type: ignore[arg-type]
    assert info["metrics"]["validation_rows"] == len(val)
    constant = float(np.sqrt(np.mean((val.grades - fit_rows.grades.mean()) ** 2))) * 100
    assert 0 < info["metrics"]["val_mae"] <= info["metrics"]["val_rmse"] < 0.9 * constant
    # Read from the format-2 manifest's 'params', as they were from format 1's top level.
    assert info["architecture"] == world.fitted.config.model and info["validation_metric"] == "rmse"
    assert info["best_epoch"] == world.fitted.best_epoch


# ------------------------------------------------------------------------------------------------ headers


def test_security_headers(client) -> None:
    for path in ("/", "/recommend", "/model", "/healthz", "/api/v1/courses"):
        h = client.get(path).headers
        csp = h["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["X-Frame-Options"] == "DENY"
        assert h["Referrer-Policy"] == "no-referrer"
        assert h["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in h  # development: plain http
    assert client.get("/static/style.css").headers["Cache-Control"].startswith("public")


def test_production_sends_hsts_and_secure_cookies(world: WebWorld) -> None:
    app = make_app(world, production=True)
    client = app.test_client()
    r = client.get("/recommend")
    assert "max-age" in r.headers["Strict-Transport-Security"]
    cookie = r.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_pages_load_nothing_from_elsewhere(client, student: str, world: WebWorld) -> None:
    token = csrf_token(client)
    results = client.post("/recommend", data={"csrf_token": token, "course": ["CS101"], "grade": ["80"]})
    for page in [client.get(p) for p in ("/", "/recommend", "/student", "/model")] + [results]:
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        assert not re.search(r'(src|href|action)="(https?:)?//', html), "external reference"
        assert "<script>" not in html and " style=" not in html and "<style" not in html  # CSP: no inline code


# ------------------------------------------------------------------------------------------------ forms and CSRF


def test_grades_form_flow(client, world: WebWorld, student: str) -> None:
    token = csrf_token(client)
    grades = world.grades_of(student)
    r = client.post(
        "/recommend",
        data={
            "csrf_token": token,
            "course": [c for c, _ in grades] + [""],
            "grade": [m for _, m in grades] + [""],
            "k": "2",
        },
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    cards = re.findall(r'<span class="code">([A-Z]+\d+)</span></h2>', html)
    assert 1 <= len(cards) <= 2 and not set(cards) & passed(world, student)
    # "Why not?" re-posts the grades from hidden fields; nothing was kept on the server.
    course = sorted(passed(world, student))[0]
    data = {
        "csrf_token": token,
        "course": [c for c, _ in grades],
        "grade": [m for _, m in grades],
        "k": "2",
        "why_not": course,
    }
    answer = client.post("/recommend", data=data).get_data(as_text=True)
    assert "Already passed" in answer


def test_grades_form_errors_point_at_the_row(client) -> None:
    token = csrf_token(client)
    r = client.post("/recommend", data={"csrf_token": token, "course": ["CS101", "XX999"], "grade": ["80", "70"]})
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert re.search(r'id="course-1"[^>]*aria-invalid="true"', html) and "XX999" in html
    r = client.post("/recommend", data={"csrf_token": token, "course": ["CS101"], "grade": [""], "k": "0"})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and 'id="err-grade-0"' in html and 'id="err-k"' in html


def test_more_rows_keeps_what_was_typed(client) -> None:
    token = csrf_token(client)
    r = client.post("/recommend", data={"csrf_token": token, "course": ["CS101"], "grade": ["80"], "action": "more"})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and 'value="CS101"' in html and 'id="course-6"' in html


def test_csrf_is_required(client, app, monkeypatch: pytest.MonkeyPatch) -> None:
    form = {"course": ["CS101"], "grade": ["80"]}
    r = client.post("/recommend", data=form)
    assert r.status_code == 400 and "security token" in r.get_data(as_text=True)
    r = client.post("/recommend", data={**form, "csrf_token": "forged.token.value"})
    assert r.status_code == 400
    other = app.test_client()
    r = client.post("/recommend", data={**form, "csrf_token": csrf_token(other)})  # another browser's token
    assert r.status_code == 400 and "session" in r.get_data(as_text=True)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 3 * 3600)
    old = csrf_token(client)
    monkeypatch.undo()
    r = client.post("/recommend", data={**form, "csrf_token": old})
    assert r.status_code == 400 and "expired" in r.get_data(as_text=True)
    assert client.post("/recommend", data={**form, "csrf_token": csrf_token(client)}).status_code == 200
    assert client.post("/student", data={"student_id": "1", "access_code": "x"}).status_code == 400


def test_known_student_pages(client, world: WebWorld, student: str) -> None:
    token = csrf_token(client, "/student")
    wrong = client.post("/student", data={"csrf_token": token, "student_id": student, "access_code": "AAAAA-BBBBB"})
    assert wrong.status_code == 401 and "do not match" in wrong.get_data(as_text=True)
    assert '<ol class="cards">' not in wrong.get_data(as_text=True)
    right = client.post(
        "/student", data={"csrf_token": token, "student_id": student, "access_code": world.key.access_code(student)}
    )
    html = right.get_data(as_text=True)
    assert right.status_code == 200 and '<ol class="cards">' in html and student not in html.split("<form")[0]
    # "Why not?" with the signed token, without the code again.
    student_token = re.search(r'name="student_token" value="([^"]+)"', html).group(1)
    course = sorted(passed(world, student))[0]
    why = client.post("/student", data={"csrf_token": token, "student_token": student_token, "why_not": course})
    assert why.status_code == 200 and "Already passed" in why.get_data(as_text=True)
    forged = client.post(
        "/student", data={"csrf_token": token, "student_token": student_token + "x", "why_not": course}
    )
    assert forged.status_code == 400


def test_model_page_and_plots(client, world: WebWorld) -> None:
    html = client.get("/model").get_data(as_text=True)
    assert f"{len(world.train):,}" in html
    # Metrics in the scale's words, never the manifest's keys.
    metrics = world_metrics(world)
    assert "val_" not in html and "validation_rows" not in html
    assert f'<th scope="row">Typical error (root mean square)</th><td>{metrics["val_rmse"]:.1f} percent points' in html
    assert f'<th scope="row">Average error</th><td>{metrics["val_mae"]:.1f} percent points' in html
    assert f'<th scope="row">Grades held out to measure it</th><td>{metrics["validation_rows"]:,}</td>' in html
    assert 'src="/model/plots/calibration.png"' in html
    r = client.get("/model/plots/calibration.png")
    assert r.status_code == 200 and r.data == tiny_png() and r.mimetype == "image/png"
    # An empty frame, a zero-byte and a truncated PNG are neither shown nor served.
    for bad in ("manifest.json", "..%2Fmanifest.json", "nothing.png", "blank.png", "zero.png", "truncated.png"):
        assert bad not in html
        assert client.get(f"/model/plots/{bad}").status_code == 404


def world_metrics(world: WebWorld) -> dict:
    return json.loads((world.model_dir / "manifest.json").read_text())["metrics"]


def test_model_page_labels_every_metric_and_mentions_no_missing_plot(world: WebWorld, tmp_path: Path) -> None:
    from electives.models.artifact import save_model
    from electives.web.model_facts import metric_rows

    metrics = {
        "train_seconds": 12.34,
        "validation_rows": 1234,
        "val_rmse": 4.2,
        "val_mae": 3.1,
        "val_within_one_letter": 0.78,
        "interval_coverage_nominal": 0.8,
        "interval_coverage_measured": 0.793,
        "refit_rows": 54321,
    }
    model_dir = save_model(tmp_path / "m", world.fitted, world.train, scale=world.result.scale, metrics=metrics)
    html = make_app(world, model_dir=model_dir).test_client().get("/model").get_data(as_text=True)
    for label, value in [
        ("Typical error (root mean square)", "4.2 percent points"),
        ("Average error", "3.1 percent points"),
        ("Predictions within one letter step", "78%"),
        ("Prediction range, intended coverage", "80%"),
        ("Prediction range, measured coverage", "79.3%"),
        ("Grades held out to measure it", "1,234"),
        ("Grades in the final fit", "54,321"),
        ("Training time", "12.3 s"),
    ]:
        assert f'<th scope="row">{label}</th><td>{value}</td>' in html
    assert not any(key in html for key in metrics)
    # No plot beside this model: the page does not mention plots at all.
    assert "plot" not in html.lower()
    # Other scales and the implicit mode's ranking figures, in words too.
    from electives.data.scales import load_scale

    assert metric_rows({"val_rmse": 0.31}, load_scale("gpa4")) == [
        ("Typical error (root mean square)", "0.31 grade points")
    ]
    assert metric_rows({"val_hr_at_10_full": 0.25, "val_ndcg_at_10_sampled": 0.1234}, None) == [
        ("Held-out course in the top 10 (full catalogue)", "25%"),
        ("Ranking quality, NDCG@10 (against sampled courses)", "0.123"),
    ]
    assert metric_rows({"val_new_figure": 2.5}, None) == [("New figure", "2.5")]


def test_model_page_and_api_show_the_privacy_budget(world: WebWorld, tmp_path: Path) -> None:
    from electives.models.artifact import save_model

    assert "none (trained without a privacy budget)" in make_app(world).test_client().get("/model").get_data(True)
    privacy = {"epsilon": 2.71, "delta": 1e-5, "target_epsilon": 3.0, "max_grad_norm": 1.0, "unit": "student"}
    model_dir = save_model(
        tmp_path / "dp-model", world.fitted, world.train, scale=world.result.scale, extra={"privacy": privacy}
    )
    client = make_app(world, model_dir=model_dir).test_client()
    assert client.get("/api/v1/model").json["privacy"] == privacy
    html = client.get("/model").get_data(as_text=True)
    assert "ε = 2.71 spent of 3.00" in html and "δ = 1.0e-05" in html


def test_model_page_readyz_and_api_say_which_family_is_served(world: WebWorld, tmp_path: Path) -> None:
    from electives.models.artifact import save_model
    from electives.models.baselines import BiasModel
    from electives.web.live_model import served_family

    selection = {
        "chosen": "bias(λu=15,λc=10)",
        "family": "bias",
        "validation": "each student's latest term",
        "candidates": [
            {"name": "bias(λu=15,λc=10)", "family": "bias", "val_rmse": 8.91, "seconds": 0.01},
            {
                "name": "knn(k=20,shrink=10)",
                "family": "knn",
                "val_rmse": None,
                "seconds": 0.2,
                "error": "MemoryError: x",
            },
        ],
    }
    bias = BiasModel().fit(world.train)
    model_dir = save_model(
        tmp_path / "bias-model", bias, world.train, scale=world.result.scale, extra={"model_selection": selection}
    )
    client = make_app(world, model_dir=model_dir).test_client()
    assert client.get("/readyz").json["model_family"] == "bias"
    info = client.get("/api/v1/model").json
    assert info["family"] == "bias" and info["model_selection"]["chosen"] == "bias(λu=15,λc=10)"
    html = client.get("/model").get_data(as_text=True)
    assert "<code>bias</code>" in html and "Model selection" in html
    assert "bias(λu=15,λc=10) (served)" in html and "failed: MemoryError: x" in html
    # Format-1 artifacts hold an NCF model, named in config.model.
    assert served_family({"format_version": 1, "kind": "ncf", "config": {"model": "gmf"}}) == "gmf"
    assert served_family({"format_version": 2, "kind": "model", "family": "blend"}) == "blend"


def test_model_page_shows_an_enrolment_models_selection_by_its_ranking_metric(world: WebWorld, tmp_path: Path) -> None:
    from electives.models.artifact import save_model
    from electives.models.baselines import EASE

    selection = {
        "metric": "val_ndcg_at_10_sampled",
        "chosen": "ease(λ=40)",
        "family": "ease",
        "validation": "each student's newest course",
        "candidates": [
            {"name": "ease(λ=40)", "family": "ease", "val_ndcg_at_10_sampled": 0.4567, "seconds": 0.1},
            {"name": "ials(d=64,λ=0.007,α₀=0.3)", "family": "ials", "val_ndcg_at_10_sampled": 0.4321, "seconds": 0.5},
        ],
    }
    ease = EASE(lam=40.0).fit(world.train)
    model_dir = save_model(tmp_path / "ease-model", ease, world.train, scale=None, extra={"model_selection": selection})
    client = make_app(world, model_dir=model_dir).test_client()
    info = client.get("/api/v1/model").json
    assert info["family"] == "ease" and info["model_selection"]["metric"] == "val_ndcg_at_10_sampled"
    html = client.get("/model").get_data(as_text=True)
    assert "chosen on each student&#39;s newest course among 2 candidates" in html
    assert "Ranking quality, NDCG@10 (against sampled courses)</th>" in html and "Typical error" not in html
    assert "ease(λ=40) (served)</th><td>ease</td>\n      <td>0.457</td>" in html
    # The API ranks by EASE's scores: no grade, no interval.
    taken = [c for c in world.train.course_ids[:3]]
    r = client.post(API, json={"grades": [{"course": c, "grade": "70"} for c in taken], "k": 3})
    assert r.status_code == 200, r.json
    items = r.json["recommendations"]
    assert items and all(i["points"] is None and i["interval"] is None for i in items)
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)


def test_form_size_caps(client, world: WebWorld) -> None:
    token = csrf_token(client)
    r = client.post("/recommend", data={"csrf_token": token, "course": ["CS101"] * 201, "grade": ["80"] * 201})
    assert r.status_code == 400
    r = client.post("/recommend", data={"csrf_token": token, "course": ["C" * 70_000], "grade": ["80"]})
    assert r.status_code == 413


# ------------------------------------------------------------------------------------------------ rate limits


def test_api_rate_limit(world: WebWorld) -> None:
    app = make_app(world, api_rate_limit=RateLimit(3, 60))
    client = app.test_client()
    assert [client.post(API, json={"grades": []}).status_code for _ in range(3)] == [200, 200, 200]
    r = client.post(API, json={"grades": []})
    assert r.status_code == 429 and r.json["error"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
    other = app.test_client()  # another address has its own allowance
    assert other.post(API, json={"grades": []}, environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 200


def test_access_code_attempts_are_limited(world: WebWorld, student: str) -> None:
    app = make_app(world, access_code_failures=RateLimit(2, 900), access_code_rate_limit=RateLimit(5, 900))
    client = app.test_client()
    right = {"student_id": student, "access_code": world.key.access_code(student)}
    wrong = {**right, "access_code": "AAAAA-AAAAA"}
    assert [client.post(STUDENTS, json=wrong).status_code for _ in range(2)] == [401, 401]
    # Two wrong codes for this number: even the right one is refused for now (guessing is pointless).
    r = client.post(STUDENTS, json=right)
    assert r.status_code == 429 and "Retry-After" in r.headers
    other = {"student_id": "20190002", "access_code": world.key.access_code("20190002")}
    assert [client.post(STUDENTS, json=other).status_code for _ in range(2)] == [200, 200]
    # Five attempts per address in all, right or wrong: this is the sixth.
    r = client.post(STUDENTS, json=other)
    assert r.status_code == 429 and "access-code attempts" in r.json["message"]


def test_rate_limiter_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(RateLimit(2, 10), clock=lambda: now[0], max_keys=3)
    assert limiter.hit("a") is None and limiter.hit("a") is None
    assert limiter.hit("a") == pytest.approx(5.0)
    now[0] = 5.0
    assert limiter.retry_after("a") is None and limiter.hit("a") is None and limiter.hit("a") is not None
    for key in "bcde":
        limiter.hit(key)
    assert limiter.retry_after("a") is None  # forgotten: memory stays bounded
    assert RateLimiter(RateLimit(0, 1)).hit("x") is None


# ------------------------------------------------------------------------------------------------ model swap


def test_model_swap_without_dropping_requests(world: WebWorld, tmp_path: Path, student: str) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(world.model_dir, model_dir)
    app = make_app(world, model_dir=model_dir, api_rate_limit=UNLIMITED)
    live = app.extensions["electives"].model
    first = live.current.version
    statuses: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        client = app.test_client()
        while not stop.is_set():
            r = client.post(API, json=body_for(world, student, k=2))
            statuses.append(r.status_code)
            if r.status_code == 200:
                versions.add(r.json["model_version"])

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for seed in range(3):
            save_variant(world, model_dir, seed)
            assert live.reload()
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert statuses and set(statuses) == {200}
    assert live.current.version != first and live.reloads == 3
    assert len(versions) >= 2
    assert app.test_client().get("/readyz").json["model_version"] == live.current.version


def test_a_broken_new_artifact_keeps_the_old_model(world: WebWorld, tmp_path: Path, caplog) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(world.model_dir, model_dir)
    app = make_app(world, model_dir=model_dir)
    live = app.extensions["electives"].model
    before = live.current.version
    (model_dir / "model.safetensors").write_bytes(b"truncated")
    manifest = model_dir / "manifest.json"
    manifest.write_text(manifest.read_text())  # a new stamp
    with caplog.at_level(logging.ERROR, logger="electives.web"):
        assert not live.reload()
    assert live.current.version == before and "not loaded" in caplog.text
    assert app.test_client().post(API, json={"grades": []}).status_code == 200


def test_background_reload_when_the_artifact_changes(world: WebWorld, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(world.model_dir, model_dir)
    app = make_app(world, model_dir=model_dir, reload_seconds=0.01)
    client = app.test_client()
    before = client.get("/readyz").json["model_version"]
    save_variant(world, model_dir, 7)
    deadline = time.monotonic() + 30
    version = before
    while version == before and time.monotonic() < deadline:
        time.sleep(0.05)
        r = client.post(API, json={"grades": []})
        assert r.status_code == 200
        version = r.json["model_version"]
    assert version != before


# ------------------------------------------------------------------------------------------------ privacy of logs


def test_no_grades_or_ids_in_logs(world: WebWorld, student: str, caplog, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(world, api_rate_limit=UNLIMITED)
    client = app.test_client()
    mark = "87.125"
    with caplog.at_level(logging.DEBUG):
        client.post(API, json={"grades": [{"course": "CS101", "grade": mark}]})
        client.post(API, json={"grades": [{"course": "CS101", "grade": mark + "x"}]})
        client.post(STUDENTS, json={"student_id": student, "access_code": "WRONG-CODE0"})
        client.post(STUDENTS, json={"student_id": student, "access_code": world.key.access_code(student)})
        rec = app.extensions["electives"].model.current.recommender

        def boom(*args, **kwargs):
            raise RuntimeError(f"failed on {mark} for {student}")

        monkeypatch.setattr(rec, "recommend_for_grades", boom)
        assert client.post(API, json={"grades": [{"course": "CS101", "grade": mark}]}).status_code == 500
    assert "internal error RuntimeError" in caplog.text  # the error was logged ...
    assert mark not in caplog.text and student not in caplog.text  # ... without what the user typed


# ------------------------------------------------------------------------------------------------ configuration


def test_configuration_is_checked(world: WebWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="ELECTIVES_WEB_SECRET_KEY"):
        create_app(WebConfig(model_dir=world.model_dir, production=True))
    with pytest.raises(ConfigError, match="at least 32"):
        create_app(WebConfig(model_dir=world.model_dir, secret_key="short"))
    with pytest.raises(ConfigError, match="no model"):
        create_app(WebConfig())
    with pytest.raises(ConfigError, match="max_k"):
        WebConfig(default_k=30)
    monkeypatch.delenv("ELECTIVES_SECRET_KEY", raising=False)
    monkeypatch.setenv("ELECTIVES_KEY_FILE", str(world.root / "no-such.key"))
    with pytest.raises(ConfigError, match="pseudonym key"):
        create_app(WebConfig(model_dir=world.model_dir, db_url=world.db_url, secret_key=WEB_SECRET))


def test_configuration_from_the_environment() -> None:
    env = {
        "ELECTIVES_MODEL": "/m",
        "ELECTIVES_DB": "sqlite:///x.db",
        "ELECTIVES_WEB_SECRET_KEY": "s" * 40,
        "ELECTIVES_WEB_PRODUCTION": "true",
        "ELECTIVES_WEB_API_RATE": "30/10",
        "ELECTIVES_WEB_PROXY_HOPS": "1",
    }
    config = WebConfig.from_env(env, db_url="sqlite:///flag.db")
    assert config.model_dir == Path("/m") and config.db_url == "sqlite:///flag.db" and config.production
    assert config.api_rate_limit == RateLimit(30, 10) and config.proxy_hops == 1
    assert not WebConfig.from_env({"ELECTIVES_WEB_PRODUCTION": "0"}).production
    with pytest.raises(ConfigError, match="ELECTIVES_WEB_API_RATE"):
        WebConfig.from_env({"ELECTIVES_WEB_API_RATE": "lots"})


def test_proxy_hops_use_the_forwarded_address(world: WebWorld) -> None:
    app = make_app(world, proxy_hops=1, api_rate_limit=RateLimit(1, 60))
    client = app.test_client()
    assert client.post(API, json={"grades": []}, headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 200
    assert client.post(API, json={"grades": []}, headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 429
    assert client.post(API, json={"grades": []}, headers={"X-Forwarded-For": "2.2.2.2"}).status_code == 200


# ------------------------------------------------------------------------------------------------ commands


def test_access_code_command(cli, secret_key: str) -> None:
    from electives.data.pseudonyms import Pseudonymiser

    code, out, _ = cli("access-code", "20190042")
    assert code == 0 and out.strip() == Pseudonymiser(secret_key.encode()).access_code("20190042")
    code, out, _ = cli("access-code", "1", "2")
    assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == ["1", "2"]


def test_access_code_needs_the_key(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ELECTIVES_SECRET_KEY", raising=False)
    monkeypatch.setenv("ELECTIVES_KEY_FILE", str(tmp_path / "missing.key"))
    code, _, err = cli("access-code", "20190042")
    assert code == 2 and "no secret key" in err
    assert not (tmp_path / "missing.key").exists()  # never created: a new key would match no student


def test_serve_refuses_bad_setups(cli, tmp_path: Path, world: WebWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = cli("serve", str(tmp_path / "nothing"))
    assert code == 2 and "no model artifact" in err
    monkeypatch.delenv("ELECTIVES_WEB_SECRET_KEY", raising=False)
    code, _, err = cli("serve", str(world.model_dir), "--production")
    assert code == 2 and "ELECTIVES_WEB_SECRET_KEY" in err
    code, _, err = cli("serve", str(world.model_dir), "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 2 and "does not exist" in err
    code, _, err = cli("serve", str(world.model_dir), "--workers", "0")
    assert code == 2 and "--workers" in err


def test_serve_options_honour_port_and_concurrency() -> None:
    from electives.cli import build_parser
    from electives.cli.web import serve_options

    args = build_parser().parse_args(["serve", "m"])
    opts = serve_options(args, {"PORT": "5123", "WEB_CONCURRENCY": "3"})
    assert opts["bind"] == "0.0.0.0:5123" and opts["workers"] == 3 and opts["worker_class"] == "sync"
    args = build_parser().parse_args(["serve", "m", "--port", "9000", "--host", "127.0.0.1", "--threads", "4"])
    opts = serve_options(args, {"PORT": "5123"})
    assert opts["bind"] == "127.0.0.1:9000" and opts["workers"] == 2 and opts["worker_class"] == "gthread"
    assert "%(U)s" in opts["access_log_format"] and "%(r)s" not in opts["access_log_format"]  # no query strings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_gunicorn(world: WebWorld, student: str) -> None:
    port = _free_port()
    env = {**os.environ, "ELECTIVES_SECRET_KEY": KEY, "PORT": str(port), "ELECTIVES_WEB_SECRET_KEY": WEB_SECRET}
    cmd = [str(Path(sys.executable).with_name("electives")), "serve", str(world.model_dir), "--db", world.db_url]
    cmd += ["--host", "127.0.0.1", "--workers", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                    assert json.load(r)["status"] == "ready"
                    break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"electives serve did not start: {proc.stdout.read().decode()[-2000:]}")
                time.sleep(0.25)
        body = json.dumps({"grades": [{"course": c, "grade": m} for c, m in world.grades_of(student)]}).encode()
        req = urllib.request.Request(base + API, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200 and json.load(r)["recommendations"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    access = [line for line in out.splitlines() if line.startswith("127.0.0.1 ")]
    assert f'127.0.0.1 "POST {API}" 200' in "\n".join(access)  # the access log: method, path, status ...
    assert all(re.fullmatch(r'127\.0\.0\.1 "(GET|POST) /[^ ?]*" \d{3} \d+ \d+ms', line) for line in access), access
    assert student not in out  # ... and nothing of what was sent
    assert "Control socket" not in out  # no admin socket in $HOME (containers have none)


# ------------------------------------------------------------------------------------------------ entered twice, none


def test_api_refuses_a_course_entered_twice_naming_both_entries(client) -> None:
    grades = [
        {"course": c, "grade": m} for c, m in [("CS101", "88"), ("MA101", "70"), ("CS102", "75"), ("cs101", "75")]
    ]
    r = client.post("/api/v1/recommendations", json={"grades": grades})
    assert r.status_code == 400
    assert r.json["error"] == "invalid_field" and r.json["field"] == "grades[3].course"
    assert r.json["message"] == (
        "grades[3].course: course 'cs101' is also entered at grades[0]; a retake is accepted only after a failed "
        "mark (enter the failed attempt first, then the later one)"
    )


def test_api_takes_a_retake_after_a_fail_and_says_so(client) -> None:
    grades = [{"course": c, "grade": m} for c, m in [("CS101", "45"), ("MA101", "80"), ("CS101", "78")]]
    r = client.post("/api/v1/recommendations", json={"grades": grades, "k": 2})
    assert r.status_code == 200
    assert r.json["retaken_courses"] == ["CS101"] and r.json["grades_used"] == 2
    assert "CS101: entered after a failed attempt, so the later attempt counts" in r.json["note"]
    plain = client.post("/api/v1/recommendations", json={"grades": grades[1:], "k": 2}).json
    assert plain["retaken_courses"] == [] and plain["note"] is None


def test_api_and_page_say_an_empty_list_is_the_average_students_ranking(client) -> None:
    r = client.post("/api/v1/recommendations", json={"grades": [], "k": 2})
    assert r.status_code == 200 and r.json["grades_used"] == 0
    assert r.json["note"] == "No grades were entered, so this is the ranking for an average student."
    token = csrf_token(client)
    page = client.post("/recommend", data={"csrf_token": token, "course": ["", ""], "grade": ["", ""]})
    assert page.status_code == 200
    assert "No grades were entered, so this is the ranking for an average student." in page.get_data(as_text=True)


def test_grades_form_shows_a_course_entered_twice_beside_both_rows(client) -> None:
    token = csrf_token(client)
    form = {"csrf_token": token, "course": ["CS101", "", "MA101", "CS101"], "grade": ["88", "", "70", "75"]}
    r = client.post("/recommend", data=form)
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    for row in (0, 3):
        assert re.search(rf'id="course-{row}"[^>]*aria-invalid="true"', html)
    hint = "A retake is accepted only after a failed mark (enter the failed attempt first, then the later one)."
    assert f'<p class="field-error" id="err-course-0">CS101 is also entered in row 4. {hint}</p>' in html
    assert f'<p class="field-error" id="err-course-3">CS101 is also entered in row 1. {hint}</p>' in html
    # What was typed stays in the form; a failed attempt first is a retake and answers.
    assert 'value="MA101"' in html
    form["grade"] = ["45", "", "70", "75"]
    ok = client.post("/recommend", data=form)
    assert ok.status_code == 200 and "the later attempt counts" in ok.get_data(as_text=True)


def test_a_server_requiring_signed_models_serves_only_its_own(world: WebWorld, tmp_path: Path, caplog) -> None:
    """ELECTIVES_WEB_REQUIRE_SIGNED_MODEL: an unsigned artifact is refused at start, a signed one is served (and
    /readyz says so), and an unsigned replacement is not loaded: the signed model keeps serving."""
    from electives.data.pseudonyms import Pseudonymiser
    from electives.errors import ModelError
    from electives.models.artifact import save_model

    with pytest.raises(ModelError, match="accepts only models signed"):
        make_app(world, require_signed_model=True)
    model_dir = save_model(
        tmp_path / "model",
        world.fitted,
        world.train,
        scale=world.result.scale,
        signer=Pseudonymiser(KEY.encode()).model_signature,
    )
    app = make_app(world, model_dir=model_dir, require_signed_model=True)
    client = app.test_client()
    assert client.get("/readyz").json["model_signed"] is True
    assert client.get("/api/v1/model").json["signed"] is True
    assert "signed with this deployment" in client.get("/model").get_data(as_text=True)
    live = app.extensions["electives"].model
    before = live.current.version
    save_variant(world, model_dir, seed=7)  # unsigned
    with caplog.at_level(logging.ERROR, logger="electives.web"):
        assert not live.reload()
    assert live.current.version == before and "it is not signed" in caplog.text
    # Without the requirement the same world's unsigned model is served and reported as not signed.
    assert make_app(world).test_client().get("/readyz").json["model_signed"] is False
