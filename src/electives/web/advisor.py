"""The advisor page (``/advisor``) and its JSON twin (``/api/v1/advisor/...``): for a chosen term, demand against
seats per elective (the stored seat plan) and at-risk counts per required course (every student on record), every
figure under the k-anonymity rule of :mod:`~electives.serving.term_overview`. Counts only: no student's row, number
or pseudonym is ever on the web.

Registered only when the deployment sets an advisor token (:mod:`~electives.web.advisor_access`); without one these
routes do not exist (404) and no page links here. The at-risk counts are computed once per model, term and import,
in the background (:mod:`~electives.web.advisor_cache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for

from electives.data.storage import Store
from electives.errors import DataError
from electives.serving.term_overview import (
    SeatFigures,
    TermChoice,
    at_risk_overview,
    choose_term,
    plan_figures,
    term_choices,
)
from electives.web.advisor_access import AdvisorAccess
from electives.web.advisor_cache import RiskAnswer
from electives.web.csrf import FIELD as CSRF_FIELD
from electives.web.errors import FieldError, HttpError
from electives.web.inputs import MAX_TERM_CHARS
from electives.web.state import get_served, get_state

advisor = Blueprint("advisor", __name__)
PREFIX = "/api/v1/advisor"
RETRY_SECONDS = 3  # how soon a "computing" answer asks to be asked again


@dataclass(frozen=True)
class TermView:
    """What the page and the API show of one term. ``seats``: None when no plan is stored for it."""

    choice: TermChoice
    seats: tuple[SeatFigures, ...] | None
    risk: RiskAnswer
    min_students: int
    model_version: str

    @property
    def plan_command(self) -> str:
        return f"electives plan MODEL --db URL --term {self.choice.term} --out plan.csv"

    def to_dict(self) -> dict[str, Any]:
        plan = self.choice.plan
        overview = self.risk.overview
        return {
            "term": self.choice.term,
            "next_term": self.choice.next,
            "model_version": self.model_version,
            "min_students": self.min_students,
            "plan": None
            if self.seats is None or plan is None
            else {
                "k": plan.k,
                "planned_at": plan.planned_at.isoformat(timespec="seconds"),
                "courses": [s.to_dict() for s in self.seats],
            },
            "plan_missing": None
            if self.seats is not None
            else f"no seat plan is stored for {self.choice.term}; make one with: {self.plan_command}",
            "at_risk": {
                "status": self.risk.status,
                "message": self.risk.message,
                "counts": None if overview is None else overview.to_dict(),
            },
        }


def _access() -> AdvisorAccess:
    access = get_state().advisor
    assert access is not None  # the blueprint is registered only with a token
    return access


def _store() -> Store:
    store = get_state().store
    assert store is not None  # config.check() refuses a token without a database
    return store


def choices() -> tuple[TermChoice, ...]:
    """The terms with figures (the stored grades' terms read once per import: a scan of every grade row)."""
    s, store = get_state(), _store()
    assert s.advisor_cache is not None
    return term_choices(store, terms=s.advisor_cache.terms(store.last_import(), store.terms))


def term_view(choice: TermChoice) -> TermView:
    """``choice``'s figures: the plan read now (a few rows), the at-risk counts from the worker's cache."""
    s, served, store = get_state(), get_served(), _store()
    assert s.advisor_cache is not None
    min_students = served.recommender.min_cohort
    plan = store.plan(choice.term) if choice.plan is not None else {}
    seats = plan_figures(plan, served.names, min_students=min_students) if plan else None
    recommender = served.recommender

    def compute():  # in the cache's thread: no request context there
        return at_risk_overview(
            recommender.model, store, choice.term, catalog=recommender.catalog, min_students=min_students
        )

    key = (served.version, choice.term, store.last_import())
    risk = s.advisor_cache.get(key, compute, wait=s.config.advisor_wait_seconds)
    return TermView(choice, seats, risk, min_students, served.version)


def default_choice(offered: tuple[TermChoice, ...]) -> TermChoice:
    """The term shown first: the one after the stored grades, else the latest with a plan."""
    return next((c for c in offered if c.next), offered[0])


# ---------------------------------------------------------------------------------------------------- page


def _page(status: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Response:
    return Response(render_template("advisor.html", **context), status=status, headers=headers, mimetype="text/html")


@advisor.get("/advisor")
def advisor_page() -> Response:
    if not _access().signed_in():
        return _page(signed_in=False, errors={})
    offered = choices()
    if not offered:
        return _page(signed_in=True, errors={}, choices=offered, view=None)
    text = request.args.get("term")
    try:
        choice = default_choice(offered) if text is None else choose_term(text[:MAX_TERM_CHARS], offered)
    except DataError as exc:
        return _page(400, signed_in=True, errors={"term": str(exc)}, choices=offered, view=None, term=text)
    return _page(signed_in=True, errors={}, choices=offered, view=term_view(choice), term=choice.term)


@advisor.post("/advisor/login")
def sign_in() -> Response:
    get_state().csrf.check(request.form.get(CSRF_FIELD))
    access = _access()
    try:
        access.check(request.form.get("token", ""))
    except HttpError as err:
        if err.status == 403:
            message = "That is not the advisor token. Ask the registrar for the current one."
        elif err.status == 429:
            message = err.message[:1].upper() + err.message[1:] + "."
        else:
            raise
        return _page(err.status, err.headers, signed_in=False, errors={"token": message})
    response = redirect(url_for("advisor.advisor_page"), 303)
    access.sign_in(response)
    return response


@advisor.post("/advisor/logout")
def sign_out() -> Response:
    get_state().csrf.check(request.form.get(CSRF_FIELD))
    response = redirect(url_for("advisor.advisor_page"), 303)
    _access().sign_out(response)
    return response


# ---------------------------------------------------------------------------------------------------- API


@advisor.get(f"{PREFIX}/terms")
def api_terms() -> Response:
    _access().check_bearer()
    offered = choices()
    return jsonify(
        terms=[
            {
                "term": c.term,
                "next_term": c.next,
                "plan": None
                if c.plan is None
                else {
                    "k": c.plan.k,
                    "courses": c.plan.courses,
                    "planned_at": c.plan.planned_at.isoformat(timespec="seconds"),
                },
            }
            for c in offered
        ],
        default=default_choice(offered).term if offered else None,
    )


@advisor.get(f"{PREFIX}/terms/<term>")
def api_term(term: str) -> Response:
    _access().check_bearer()
    if len(term) > MAX_TERM_CHARS:
        raise FieldError("term", f"longer than {MAX_TERM_CHARS} characters")
    view = term_view(choose_term(term, choices()))
    response = jsonify(view.to_dict())
    if view.risk.status == "computing":
        response.status_code = 202
        response.headers["Retry-After"] = str(RETRY_SECONDS)
    return response
