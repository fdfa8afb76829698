"""The advisor page and its API: off without a token, the token's checks (form, cookie, bearer, limits), the
figures against the library's own (stored plan, find_at_risk), the k-anonymity rule on every count, the terms
offered, and the at-risk counts computed once per model, term and import (with a "computing" answer meanwhile)."""

from __future__ import annotations

import dataclasses
import re
import threading
import time

import pytest
from web_support import (
    ADVISOR_TOKEN,
    WEB_SECRET,
    AdvisorWorld,
    WebWorld,
    advisor_app,
    advisor_world,
    make_app,
    web_world,
)

from electives.data.storage import CourseSeats, Store
from electives.errors import StorageError
from electives.models.artifact import load_model
from electives.serving.at_risk import CourseCount, find_at_risk
from electives.serving.term_overview import plan_figures, risk_overview
from electives.web import RateLimit, WebConfig
from electives.web.config import ConfigError

BEARER = {"Authorization": f"Bearer {ADVISOR_TOKEN}"}
UNLIMITED = RateLimit(0, 1)


@pytest.fixture(scope="module")
def world() -> WebWorld:
    return web_world()


@pytest.fixture(scope="module")
def adv(world: WebWorld) -> AdvisorWorld:
    return advisor_world(world)


@pytest.fixture(scope="module")
def app(world: WebWorld, adv: AdvisorWorld):
    return advisor_app(world, advisor_token_failures=UNLIMITED)


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_token(client, path: str = "/advisor") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client, token: str = ADVISOR_TOKEN):
    return client.post("/advisor/login", data={"csrf_token": csrf_token(client), "token": token})


def cells(html: str, course: str) -> list[str]:
    """The data cells of ``course``'s table row(s) on the page, as text."""
    rows = re.findall(rf'<tr data-course="{course}">(.*?)</tr>', html, flags=re.S)
    return [re.sub(r"<[^>]+>", "", c).strip() for row in rows for c in re.findall(r"<td>(.*?)</td>", row, re.S)]


# ------------------------------------------------------------------------------------------------ off by default


def test_without_a_token_there_is_no_advisor_page(world: WebWorld) -> None:
    client = make_app(world).test_client()
    for path in ("/advisor", "/api/v1/advisor/terms", "/api/v1/advisor/terms/2023-Fall"):
        r = client.get(path, headers=BEARER)
        assert r.status_code == 404, path
    assert client.get("/api/v1/advisor/terms").json["error"] == "not_found"
    assert client.post("/advisor/login", data={"token": ADVISOR_TOKEN}).status_code == 404
    for page in ("/", "/recommend", "/model"):
        html = client.get(page).get_data(as_text=True)
        assert "/advisor" not in html and "Advisors" not in html, page
    doc = client.get("/api/v1/openapi.json").json
    assert not [p for p in doc["paths"] if "advisor" in p] and "securitySchemes" not in doc["components"]


def test_the_token_is_checked_at_start(world: WebWorld, adv: AdvisorWorld) -> None:
    with pytest.raises(ConfigError, match="ELECTIVES_WEB_ADVISOR_TOKEN must be at least 16 characters"):
        advisor_app(world, advisor_token="too-short")
    with pytest.raises(ConfigError, match="no grade database"):
        WebConfig(model_dir=world.model_dir, advisor_token=ADVISOR_TOKEN).check()
    env = {"ELECTIVES_MODEL": "m", "ELECTIVES_DB": adv.db_url, "ELECTIVES_WEB_ADVISOR_TOKEN": f"  {ADVISOR_TOKEN}\n"}
    config = WebConfig.from_env(env)
    assert config.advisor_token == ADVISOR_TOKEN and ADVISOR_TOKEN not in repr(config)
    assert WebConfig.from_env({**env, "ELECTIVES_WEB_ADVISOR_TOKEN": " "}).advisor_token is None  # empty: off


# ------------------------------------------------------------------------------------------------ API access


def test_api_needs_the_right_token(client, adv: AdvisorWorld) -> None:
    path = f"/api/v1/advisor/terms/{adv.next_term}"
    r = client.get(path)
    assert r.status_code == 401 and r.json["error"] == "advisor_token_required"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    for header in ("Bearer not-the-token-at-all", f"Basic {ADVISOR_TOKEN}", f"Bearer {ADVISOR_TOKEN}x"):
        r = client.get(path, headers={"Authorization": header})
        assert r.status_code in (401, 403), header
    assert client.get(path, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 403
    assert client.get(path, headers=BEARER).status_code == 200
    terms = client.get("/api/v1/advisor/terms", headers=BEARER)
    assert terms.status_code == 200
    assert [t["term"] for t in terms.json["terms"]] == [adv.next_term, adv.season]
    assert terms.json["default"] == adv.next_term and terms.json["terms"][0]["next_term"] is True


def test_wrong_tokens_are_limited_per_address(world: WebWorld, adv: AdvisorWorld) -> None:
    app = advisor_app(world, advisor_token_failures=RateLimit(2, 900))
    client = app.test_client()
    wrong = {"Authorization": "Bearer wrong-token-wrong-token"}
    path = "/api/v1/advisor/terms"
    assert [client.get(path, headers=wrong).status_code for _ in range(2)] == [403, 403]
    r = client.get(path, headers=BEARER)  # even the right token waits now
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    r = sign_in(client)  # and the form shares the limit
    assert r.status_code == 429 and "wrong advisor tokens" in r.get_data(as_text=True)
    other = {"REMOTE_ADDR": "10.0.0.9"}
    assert client.get(path, headers=BEARER, environ_base=other).status_code == 200


# ------------------------------------------------------------------------------------------------ page access


def test_sign_in_and_out(client, adv: AdvisorWorld) -> None:
    page = client.get("/advisor")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="token"' in html and "Demand and seats" not in html
    assert 'href="/advisor"' in client.get("/").get_data(as_text=True)  # the nav links here only with a token
    # No form token, or a wrong advisor token: refused, nothing set.
    assert client.post("/advisor/login", data={"token": ADVISOR_TOKEN}).status_code == 400
    r = sign_in(client, "wrong-token-wrong-token")
    assert r.status_code == 403 and "not the advisor token" in r.get_data(as_text=True)
    assert "electives_advisor" not in r.headers.get("Set-Cookie", "")
    r = sign_in(client)
    assert r.status_code == 303 and r.headers["Location"].endswith("/advisor")
    cookie = next(c for c in r.headers.getlist("Set-Cookie") if c.startswith("electives_advisor="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/advisor" in cookie
    assert ADVISOR_TOKEN not in cookie  # a signed fingerprint, never the token
    html = client.get("/advisor").get_data(as_text=True)
    assert f"Demand and seats, {adv.next_term}" in html and "Students at risk in required courses" in html
    r = client.post("/advisor/logout", data={"csrf_token": csrf_token(client)})
    assert r.status_code == 303
    assert 'id="token"' in client.get("/advisor").get_data(as_text=True)


def test_production_sends_the_sign_in_cookie_over_https_only(world: WebWorld) -> None:
    client = advisor_app(world, production=True).test_client()
    https = {"base_url": "https://localhost"}
    html = client.get("/advisor", **https).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    r = client.post("/advisor/login", data={"csrf_token": token, "token": ADVISOR_TOKEN}, **https)
    cookie = next(c for c in r.headers.getlist("Set-Cookie") if c.startswith("electives_advisor="))
    assert r.status_code == 303 and "; Secure" in cookie
    assert "Demand and seats" in client.get("/advisor", **https).get_data(as_text=True)


def test_the_cookie_expires_and_belongs_to_the_token(world: WebWorld, client, monkeypatch) -> None:
    sign_in(client)
    assert "Demand and seats" in client.get("/advisor").get_data(as_text=True)
    # Another token (a rotated one) signs everyone out; so does the session's age.
    other = advisor_app(world, advisor_token="a-new-advisor-token-9876543210").test_client()
    value = re.search(r"electives_advisor=([^;]+)", sign_in(client).headers["Set-Cookie"]).group(1)
    other.set_cookie("electives_advisor", value, path="/advisor")
    assert 'id="token"' in other.get("/advisor").get_data(as_text=True)
    later = time.time() + 3601
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: later)
    assert 'id="token"' in client.get("/advisor").get_data(as_text=True)


# ------------------------------------------------------------------------------------------------ the figures


def expected_counts(count: CourseCount) -> tuple[int | None, int | None, int | None]:
    """The rule as the issue states it: no figure from fewer than 10 students, nor one that leaves fewer than
    10 of the figure it is part of."""
    due = count.due if count.due >= 10 else None
    ok = due is not None and count.at_risk >= 10 and count.due - count.at_risk >= 10
    at = count.at_risk if ok else None
    ok = at is not None and count.high_confidence >= 10 and count.at_risk - count.high_confidence >= 10
    return due, at, count.high_confidence if ok else None


def test_figures_are_the_librarys_under_the_rule(client, world: WebWorld, adv: AdvisorWorld) -> None:
    r = client.get(f"/api/v1/advisor/terms/{adv.next_term}", headers=BEARER)
    assert r.status_code == 200, r.json
    body = r.json
    assert body["term"] == adv.next_term and body["min_students"] == 10 and body["plan_missing"] is None
    # The plan: what `electives plan` stored, small counts suppressed.
    with Store(adv.db_url) as store:
        stored = store.plan(adv.next_term)
        report = find_at_risk(load_model(world.model_dir), store, adv.next_term)
    assert body["plan"]["k"] == 2 and {c["course"] for c in body["plan"]["courses"]} == set(stored)
    small = 0
    for line in body["plan"]["courses"]:
        own = stored[line["course"]]
        assert line["seats"] == own.seats and line["likely_full"] == own.likely_full
        for field in ("demand", "allocated"):
            raw = getattr(own, field)
            assert line[field] == (raw if raw >= 10 else None)
            assert (field in line["suppressed"]) == (raw < 10)
        small += own.demand < 10
    assert small >= 1  # the world has electives wanted by fewer than 10: the rule is exercised
    # At risk: find_at_risk over every student on record, counted per course, small counts suppressed.
    risk = body["at_risk"]
    assert risk["status"] == "ready" and risk["counts"]["students"] == report.students
    by_course = {c["course"]: c for c in risk["counts"]["courses"]}
    assert list(by_course) == [c.course for c in report.courses]
    tiny = [c for c in report.courses if 0 < c.due < 10]
    assert tiny and any(c.due >= 10 for c in report.courses)  # both kinds are in the world
    for count in report.courses:
        shown = by_course[count.course]
        assert (shown["due"], shown["at_risk"], shown["high_confidence"]) == expected_counts(count)
    for count in tiny:
        # A course with fewer than 10 due shows none of its numbers, anywhere in its entry.
        shown = by_course[count.course]
        numbers = [v for v in shown.values() if isinstance(v, int) and not isinstance(v, bool)]
        assert numbers == [] and shown["suppressed"]["due"] == "fewer than 10 students"


def test_the_page_shows_the_same_figures(client, adv: AdvisorWorld) -> None:
    sign_in(client)
    body = client.get(f"/api/v1/advisor/terms/{adv.next_term}", headers=BEARER).json
    html = client.get("/advisor").get_data(as_text=True)
    for line in body["plan"]["courses"]:
        seats = "unlimited" if line["seats"] is None else str(line["seats"])
        demand, allocated = (str(line[f]) if line[f] is not None else "fewer than 10" for f in ("demand", "allocated"))
        assert cells(html, line["course"]) == [seats, demand, allocated, "yes" if line["likely_full"] else "no"]
    for c in body["at_risk"]["counts"]["courses"]:
        texts = cells(html, c["course"])
        assert len(texts) == 3
        for text, field in zip(texts, ("due", "at_risk", "high_confidence"), strict=True):
            if c[field] is not None:
                assert text == str(c[field])
            else:
                assert text in ("fewer than 10", "withheld")
    assert "Nothing is totalled" in html and "total" not in html.replace("Nothing is totalled", "").lower()


def test_the_rule_on_constructed_counts(world: WebWorld, adv: AdvisorWorld) -> None:
    with Store(adv.db_url) as store:
        report = find_at_risk(load_model(world.model_dir), store, adv.next_term)
    cases = [
        # (due, at risk, high confidence) → shown
        ((3, 1, 0), (None, None, None)),
        ((24, 1, 0), (24, None, None)),
        ((14, 12, 0), (14, None, None)),  # 12 at risk would say 2 are predicted to pass
        ((30, 15, 3), (30, 15, None)),
        ((40, 20, 10), (40, 20, 10)),
        ((40, 25, 20), (40, 25, None)),  # 5 at risk without high confidence
        ((12, 12, 12), (12, None, None)),  # everyone at risk: saying so is a figure about each of them
        ((9, 0, 0), (None, None, None)),
    ]
    counts = tuple(
        CourseCount(f"C{i}", f"Course {i}", due, at, high, ()) for i, ((due, at, high), _) in enumerate(cases)
    )
    small = dataclasses.replace(report, courses=counts, students=9, unknown=())
    overview = risk_overview(small)
    for figures, (_, want) in zip(overview.courses, cases, strict=True):
        assert (figures.due, figures.at_risk, figures.high_confidence) == want
        reasons = dict(figures.suppressed)
        assert set(reasons) == {
            f for f, v in zip(("due", "at_risk", "high_confidence"), want, strict=True) if v is None
        }
    assert overview.students is None  # nine students on record: not even that is said
    withheld = dict(overview.courses[2].suppressed)["at_risk"]
    assert withheld.startswith("withheld") and dict(overview.courses[0].suppressed)["due"].startswith("fewer than 10")
    plan = {"X1": CourseSeats("X1", 2, 3, 5, 3), "X2": CourseSeats("X2", 2, 10, None, 9)}
    seats = {s.course: s for s in plan_figures(plan, {"X1": "One"})}
    assert (seats["X1"].name, seats["X1"].demand, seats["X1"].allocated, seats["X1"].likely_full) == (
        "One",
        None,
        None,
        False,
    )
    assert (seats["X2"].name, seats["X2"].seats, seats["X2"].demand, seats["X2"].allocated) == ("X2", None, 10, None)
    with pytest.raises(Exception, match="at least 5"):
        risk_overview(small, min_students=3)  # the floor: no deployment shows figures of fewer than 5


def test_no_student_is_on_the_web(client, world: WebWorld, adv: AdvisorWorld) -> None:
    sign_in(client)
    answers = [
        client.get(f"/api/v1/advisor/terms/{t}", headers=BEARER).get_data(as_text=True)
        for t in (adv.next_term, adv.season)
    ]
    answers.append(client.get("/advisor").get_data(as_text=True))
    answers.append(client.get(f"/advisor?term={adv.season}").get_data(as_text=True))
    pseudonyms = set(world.result.frame["student"])
    raw_ids = {str(i) for i in world.university.student_ids}
    for text in answers:
        words = set(re.findall(r"[0-9a-f]{32}", text)) | set(re.findall(r"\b\d{5,}\b", text))
        assert not words & (pseudonyms | raw_ids)


# ------------------------------------------------------------------------------------------------ terms


def test_terms_offered_and_unknown_ones(client, adv: AdvisorWorld) -> None:
    r = client.get("/api/v1/advisor/terms/2031-Fall", headers=BEARER)
    assert r.status_code == 400 and r.json["field"] == "term"
    assert adv.next_term in r.json["message"] and adv.season in r.json["message"]
    r = client.get("/api/v1/advisor/terms/" + "x" * 40, headers=BEARER)
    assert r.status_code == 400 and r.json["field"] == "term"
    # Any known form of a term: fa2023 is 2023-Fall; a season in any case.
    year, season = adv.next_term.split("-")
    r = client.get(f"/api/v1/advisor/terms/{season[:2].lower()}{year}", headers=BEARER)
    assert r.status_code == 200 and r.json["term"] == adv.next_term
    r = client.get(f"/api/v1/advisor/terms/{adv.season.upper()}", headers=BEARER)
    assert r.status_code == 200 and r.json["term"] == adv.season and r.json["plan"]["courses"]
    # A plan for every Fall has no at-risk counts: what is due depends on the year.
    assert r.json["at_risk"]["status"] == "unavailable" and "dated term" in r.json["at_risk"]["message"]
    sign_in(client)
    page = client.get("/advisor?term=2031-Fall")
    html = page.get_data(as_text=True)
    assert page.status_code == 400 and "2031-Fall" in html and f'<option value="{adv.season}"' in html
    html = client.get(f"/advisor?term={adv.season}").get_data(as_text=True)
    assert f"Demand and seats, {adv.season}" in html and "dated term" in html


def test_a_term_without_a_plan_says_how_to_make_one(world: WebWorld, adv: AdvisorWorld, tmp_path) -> None:
    import shutil

    db = tmp_path / "no-plan.db"
    shutil.copyfile(world.db_url.removeprefix("sqlite:///"), db)
    client = advisor_app(world, db_url=f"sqlite:///{db}").test_client()
    terms = client.get("/api/v1/advisor/terms", headers=BEARER).json
    assert terms["terms"] == [{"term": adv.next_term, "next_term": True, "plan": None}]
    body = client.get(f"/api/v1/advisor/terms/{adv.next_term}", headers=BEARER).json
    assert body["plan"] is None and f"electives plan MODEL --db URL --term {adv.next_term}" in body["plan_missing"]
    assert body["at_risk"]["status"] == "ready"
    sign_in(client)
    html = client.get("/advisor").get_data(as_text=True)
    assert "No seat plan is stored" in html and f"--term {adv.next_term}" in html


# ------------------------------------------------------------------------------------------------ computing once


def test_at_risk_counts_are_computed_once_and_in_the_background(
    world: WebWorld, adv: AdvisorWorld, monkeypatch
) -> None:
    import electives.web.advisor as advisor_module

    real = advisor_module.at_risk_overview
    release = threading.Event()
    calls: list[str] = []

    def slow(*args, **kwargs):
        calls.append(args[2])
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(advisor_module, "at_risk_overview", slow)
    client = advisor_app(world, advisor_wait_seconds=0.05).test_client()
    path = f"/api/v1/advisor/terms/{adv.next_term}"
    r = client.get(path, headers=BEARER)
    assert r.status_code == 202 and r.headers["Retry-After"] == "3"
    assert r.json["at_risk"] == {"status": "computing", "message": None, "counts": None}
    assert r.json["plan"]["courses"]  # the plan does not wait
    sign_in(client)
    page = client.get("/advisor").get_data(as_text=True)
    assert 'http-equiv="refresh"' in page and "Counting the students at risk" in page
    release.set()
    deadline = time.monotonic() + 30
    while (r := client.get(path, headers=BEARER)).status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.status_code == 200 and r.json["at_risk"]["status"] == "ready"
    assert 'http-equiv="refresh"' not in client.get("/advisor").get_data(as_text=True)
    assert calls == [adv.next_term]  # one computation for every request above


def test_a_new_import_or_a_failure_is_computed_again(world: WebWorld, adv: AdvisorWorld, monkeypatch) -> None:
    import electives.web.advisor as advisor_module

    real = advisor_module.at_risk_overview
    outcomes = [StorageError("database is down"), None, None]

    def flaky(*args, **kwargs):
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return real(*args, **kwargs)

    monkeypatch.setattr(advisor_module, "at_risk_overview", flaky)
    app = advisor_app(world)
    client = app.test_client()
    path = f"/api/v1/advisor/terms/{adv.next_term}"
    r = client.get(path, headers=BEARER).json["at_risk"]
    assert r["status"] == "unavailable" and "database is down" not in r["message"] and "try again" in r["message"]
    assert client.get(path, headers=BEARER).json["at_risk"]["status"] == "ready"  # the failure was not kept
    assert client.get(path, headers=BEARER).json["at_risk"]["status"] == "ready" and len(outcomes) == 1
    store = app.extensions["electives"].store
    reads = []
    real_terms = store.terms
    monkeypatch.setattr(store, "terms", lambda: reads.append(1) or real_terms())
    monkeypatch.setattr(store, "last_import", lambda: 99)  # grades imported since: counted again
    assert client.get(path, headers=BEARER).json["at_risk"]["status"] == "ready" and outcomes == []
    assert client.get("/api/v1/advisor/terms", headers=BEARER).status_code == 200
    assert len(reads) == 1  # the grades' terms (a scan of every row) are read once per import


def test_documented_advisor_routes_are_the_served_ones(app) -> None:
    doc = app.test_client().get("/api/v1/openapi.json").json
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = {
        (rule.rule.replace("<term>", "{term}"), method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/api/", "/healthz", "/readyz"))
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == served
    assert doc["components"]["securitySchemes"]["advisorToken"]["scheme"] == "bearer"
    assert WEB_SECRET not in str(doc) and ADVISOR_TOKEN not in str(doc)
