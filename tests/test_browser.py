"""The pages in a real browser: Debian's Chromium driven by Playwright against the app on a local port.

Enter grades (with and without JavaScript), see the cards, ask "why not?", the known-student flow with a right and
a wrong access code, the model page, keyboard use and a phone-sized screen. Screenshots of each page go to
tests/artifacts/screenshots (or $ELECTIVES_SCREENSHOTS). A missing browser or Playwright fails these tests.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_support import ADVISOR_TOKEN, WebWorld, advisor_app, advisor_world, known_student, make_app, web_world

from electives.web import RateLimit

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("ELECTIVES_SCREENSHOTS", Path(__file__).parent / "artifacts" / "screenshots"))
UNLIMITED = RateLimit(0, 1)


@pytest.fixture(scope="module", autouse=True)
def fresh_screenshots() -> float:
    """Screenshots of earlier runs are removed first, so the last test sees only this run's; returns the start.
    (The file runs in one process: the suite is run with --dist loadfile.)"""
    started = time.time()
    for old in SHOTS.glob("*.png"):
        old.unlink()
    return started


@pytest.fixture(scope="module")
def world() -> WebWorld:
    return web_world()


@pytest.fixture(scope="module")
def base_url(world: WebWorld) -> Iterator[str]:
    yield from serve(make_app(world, api_rate_limit=UNLIMITED, search_rate_limit=UNLIMITED))


def serve(app) -> Iterator[str]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def advisor_url(world: WebWorld) -> Iterator[str]:
    """The app with the advisor page on (a token set), over a database with stored seat plans."""
    yield from serve(advisor_app(world))


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"Playwright is not installed ({exc}): pip install playwright (never `playwright install`)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (the browser tests need it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    # CSP violations and script errors show up here: the pages must have none.
    # (A page answered with a deliberate 4xx, such as a wrong access code, is logged too: that one is expected.)
    expected = "the server responded with a status of 4"
    page.on(
        "console", lambda msg: problems.append(msg.text) if msg.type == "error" and expected not in msg.text else None
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    yield page
    context.close()
    assert not problems, problems


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def passed(world: WebWorld, raw: str) -> set[str]:
    return {c for c, m in world.grades_of(raw) if float(m) >= world.result.scale.pass_points}


def test_home_page(page, base_url: str) -> None:
    page.goto(base_url + "/")
    assert page.title().startswith("Choose your electives")
    assert page.get_by_role("heading", name="What it does not keep").is_visible()
    shot(page, "home")
    # Keyboard: the first Tab lands on the skip link, which moves focus to the main content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_enter_grades_and_see_cards(page, base_url: str, world: WebWorld) -> None:
    student = known_student(world)
    grades = world.grades_of(student)
    page.goto(base_url + "/recommend")
    shot(page, "grades-form")
    # Search-as-you-type: type part of a name, pick the suggestion with the keyboard.
    first_course, first_mark = grades[0]
    name = world.catalog[first_course].name
    course = page.get_by_label("Course 1", exact=True)
    course.click()
    course.press_sequentially(name[:6], delay=30)
    listbox = page.get_by_role("listbox")
    listbox.wait_for(state="visible")
    options = listbox.get_by_role("option")
    texts = options.all_inner_texts()
    assert any(first_course in t for t in texts), texts
    shot(page, "grades-search")
    for _ in range([first_course in t for t in texts].index(True) + 1):
        course.press("ArrowDown")
    course.press("Enter")
    assert course.input_value() == first_course
    page.locator("#grade-0").fill(first_mark)
    # More rows than the form shows: "More rows" keeps what was typed.
    while page.locator("input.course-input").count() < len(grades):
        page.get_by_role("button", name="More rows").click()
    assert page.get_by_label("Course 1", exact=True).input_value() == first_course
    for i, (code, mark) in enumerate(grades[1:], start=1):
        page.locator(f"#course-{i}").fill(code)
        page.locator(f"#grade-{i}").fill(mark)
    page.get_by_label("How many electives to show").fill("3")
    page.get_by_role("button", name="Recommend electives").click()
    page.get_by_role("heading", name="Your recommended electives").wait_for()
    cards = page.locator("ol.cards > li")
    assert 1 <= cards.count() <= 3
    codes = cards.locator(".code").all_inner_texts()
    assert not set(codes) & passed(world, student)
    assert "Predicted grade" in cards.first.inner_text() and "80% range" in cards.first.inner_text()
    shot(page, "results")
    # Why not a course already passed?
    course = sorted(passed(world, student))[0]
    page.get_by_label("Course", exact=True).select_option(course)
    page.get_by_role("button", name="Why not this one?").click()
    answer = page.locator(".answer")
    answer.wait_for()
    assert "Already passed" in answer.inner_text()
    page.locator("details summary").click()
    assert page.locator("ul.excluded li").count() >= 1
    shot(page, "why-not")


def test_works_without_javascript(browser, base_url: str, world: WebWorld) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        student = known_student(world)
        page.goto(base_url + "/recommend")
        for i, (code, mark) in enumerate(world.grades_of(student)[:6]):
            page.locator(f"#course-{i}").fill(code)
            page.locator(f"#grade-{i}").fill(mark)
        page.get_by_role("button", name="Recommend electives").click()
        page.get_by_role("heading", name="Your recommended electives").wait_for()
        assert page.locator("ol.cards > li").count() >= 1
        # A mistake is reported next to its field, and the page says which field.
        page.goto(base_url + "/recommend")
        page.locator("#course-0").fill("NOPE123")
        page.locator("#grade-0").fill("80")
        page.get_by_role("button", name="Recommend electives").click()
        assert page.locator("#course-0").get_attribute("aria-invalid") == "true"
        assert "NOPE123" in page.locator("#err-course-0").inner_text()
        shot(page, "grades-error-no-js")
    finally:
        context.close()


def test_known_student_right_and_wrong_code(page, base_url: str, world: WebWorld) -> None:
    student = known_student(world)
    page.goto(base_url + "/student")
    page.get_by_label("Student number").fill(student)
    page.get_by_label("Access code").fill("WRONG-CODE2")
    page.get_by_role("button", name="Show my recommendations").click()
    error = page.locator("#err-access_code")
    error.wait_for()
    assert "do not match" in error.inner_text()
    assert page.locator("ol.cards").count() == 0
    shot(page, "student-wrong-code")
    page.get_by_label("Access code").fill(world.key.access_code(student).lower())
    page.get_by_role("button", name="Show my recommendations").click()
    page.get_by_role("heading", name="Your recommended electives").wait_for()
    assert page.locator("ol.cards > li").count() >= 1
    assert "From your record" in page.locator(".lead").inner_text()
    shot(page, "student-results")


def test_model_page(page, base_url: str, world: WebWorld) -> None:
    page.goto(base_url + "/model")
    assert page.get_by_role("heading", name="The model").is_visible()
    table = page.locator("table.metrics").inner_text()
    assert "Typical error (root mean square)" in table and "percent points" in table and "val_" not in table
    img = page.locator(".plots img")
    assert img.count() == 1  # the blank, zero-byte and truncated PNGs beside the model are left off
    assert page.evaluate("document.querySelector('.plots img').naturalWidth") == 32
    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    shot(page, "model")


def test_phone_screen(browser, base_url: str, world: WebWorld) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(base_url + "/recommend")
        student = known_student(world)
        for i, (code, mark) in enumerate(world.grades_of(student)[:6]):
            page.locator(f"#course-{i}").fill(code)
            page.locator(f"#grade-{i}").fill(mark)
        page.get_by_role("button", name="Recommend electives").click()
        page.get_by_role("heading", name="Your recommended electives").wait_for()
        # Nothing wider than the screen; buttons big enough to tap.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        box = page.get_by_role("button", name="Why not this one?").bounding_box()
        assert box is not None and box["height"] >= 44
        shot(page, "phone-results")
    finally:
        context.close()


def test_no_advisor_page_without_a_token(page, base_url: str) -> None:
    page.goto(base_url + "/")
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="The model").is_visible()
    assert nav.get_by_role("link", name="Advisors").count() == 0
    response = page.goto(base_url + "/advisor")
    assert response is not None and response.status == 404
    assert page.get_by_role("heading", name="Page not found").is_visible()
    assert page.get_by_label("Advisor token").count() == 0


def test_advisor_page_with_the_token(page, advisor_url: str, world: WebWorld) -> None:
    from electives.data.storage import Store

    adv = advisor_world(world)
    with Store(adv.db_url) as store:
        stored = store.plan(adv.next_term)
    page.goto(advisor_url + "/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Advisors").click()
    # A wrong token: refused, nothing shown.
    page.get_by_label("Advisor token").fill("not-the-advisor-token")
    page.get_by_role("button", name="Sign in").click()
    assert "not the advisor token" in page.locator(".error-summary").inner_text()
    assert page.locator("table").count() == 0
    shot(page, "advisor-wrong-token")
    page.get_by_label("Advisor token").fill(ADVISOR_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name=f"Demand and seats, {adv.next_term}").wait_for()
    # Demand against seats: every elective of the stored plan, a count under 10 never shown.
    assert page.locator("table.seats-table tbody tr").count() == len(stored)
    for code, line in stored.items():
        texts = page.locator(f'table.seats-table tr[data-course="{code}"] td').all_inner_texts()
        assert texts[1:3] == [str(n) if n >= 10 else "fewer than 10" for n in (line.demand, line.allocated)]
    assert any(line.demand < 10 for line in stored.values())
    # At-risk counts per required course, under the same rule.
    page.get_by_role("heading", name=f"Students at risk in required courses, {adv.next_term}").wait_for()
    risk = page.locator("table.risk-table tbody tr")
    assert risk.count() >= 1
    for text in page.locator("table.risk-table td").all_inner_texts():
        assert text in ("fewer than 10", "withheld") or int(text) >= 10
    shot(page, "advisor")
    # Another term: the season's plan, and why it has no at-risk counts.
    page.get_by_label("Term").select_option(adv.season)
    page.get_by_role("button", name="Show").click()
    page.get_by_role("heading", name=f"Demand and seats, {adv.season}").wait_for()
    assert "dated term" in page.locator("main").inner_text()
    # A phone: the tables scroll inside their box, the page does not.
    page.set_viewport_size({"width": 375, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Advisor token").wait_for()
    assert page.locator("table").count() == 0


def test_screenshots_were_written(fresh_screenshots: float) -> None:
    shots = {p.stem: p for p in SHOTS.glob("*.png")}
    expected = {"home", "grades-form", "results", "student-wrong-code", "student-results", "model", "advisor"}
    assert expected <= set(shots)
    assert all(re.fullmatch(r"[a-z-]+", n) for n in shots)
    for name, path in shots.items():
        # Written by this run (the folder was emptied when it started) and a real image.
        assert path.stat().st_mtime >= fresh_screenshots - 1, name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000, name
