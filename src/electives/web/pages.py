"""HTML pages: home, the grades form and its recommendation cards, the known-student flow and the model page.

Every page works without JavaScript (forms post back and the server renders the answer); ``courses.js`` only adds
search-as-you-type to the course fields. Nothing typed is stored: the grades travel back in the answer page's
hidden fields so "why not X?" can be asked without keeping anything on the server.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, render_template, request, send_file
from itsdangerous import BadSignature, URLSafeTimedSerializer

from electives.serving.results import Recommendations
from electives.web.csrf import FIELD as CSRF_FIELD
from electives.web.errors import GradeError, HttpError
from electives.web.inputs import (
    MAX_ACCESS_CODE_CHARS,
    MAX_CODE_CHARS,
    Options,
    StudentQuery,
    form_options,
    form_rows,
)
from electives.web.live_model import ServedModel
from electives.web.model_facts import Plot, error_unit, format_points, metric_label, metric_rows, plot_title
from electives.web.recommend import run_grades, run_student, throttle
from electives.web.state import get_config, get_served, get_state, get_store

pages = Blueprint("pages", __name__)


@pages.app_context_processor
def _globals() -> dict[str, Any]:
    s = get_state()
    return {
        "csrf_field": CSRF_FIELD,
        "csrf_token": s.csrf.token,
        "students_flow": s.store is not None,
        "advisor_flow": s.advisor is not None,
        "config": s.config,
    }


def _page(template: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Response:
    return Response(render_template(template, **context), status=status, headers=headers, mimetype="text/html")


@pages.get("/")
def home() -> Response:
    return _page("home.html", served=get_served())


# ---------------------------------------------------------------------------------------------------- grades form


@pages.get("/recommend")
def grades_form() -> Response:
    return _form(get_served(), [("", "")] * get_config().form_rows, {})


@pages.post("/recommend")
def grades_submit() -> Response:
    s = get_state()
    s.csrf.check(request.form.get(CSRF_FIELD))
    served = get_served()
    rows, query = form_rows(s.config, served.explicit)
    if request.form.get("action") == "more":
        more = rows.rows + [("", "")] * s.config.form_rows
        return _form(served, more[: s.config.max_grades], {})
    if query is None:
        return _form(served, rows.rows, rows.errors, status=400)
    throttle(s.api_limiter, "requests")
    try:
        recs = run_grades(served, query)
    except GradeError as err:
        return _form(served, rows.rows, _grade_errors(err, rows.rows), status=400)
    hidden = [(c, m) for c, m in query.grades]
    return _results(served, recs, query.options, hidden=hidden, action="pages.grades_submit")


def _grade_errors(err: GradeError, rows: list[tuple[str, str]]) -> dict[str, str]:
    """The form's errors for a grade the model cannot use: beside the field at fault (the ids of form.html), as
    a sentence; a course entered twice beside both rows, each naming the other."""
    if err.other_row is None:
        return {f"{err.part}-{err.row}": err.detail[:1].upper() + err.detail[1:]}
    course = rows[err.row][0].strip()
    hint = err.hint[:1].upper() + err.hint[1:]
    return {
        f"course-{a}": f"{course} is also entered in row {b + 1}. {hint}."
        for a, b in sorted([(err.other_row, err.row), (err.row, err.other_row)])
    }


def _form(served: ServedModel, rows: list[tuple[str, str]], errors: dict[str, str], status: int = 200) -> Response:
    default_k = str(get_config().default_k)
    k = request.form.get("k", default_k) if request.method == "POST" else default_k
    term = request.form.get("term", "") if request.method == "POST" else ""
    return _page(
        "form.html",
        status=status,
        served=served,
        rows=rows,
        errors=errors,
        k=k,
        term=term,
        scale=served.recommender.scale,
    )


# ---------------------------------------------------------------------------------------------------- known student


@pages.get("/student")
def student_form() -> Response:
    k = get_config().default_k
    if get_store() is None:
        return _page("student.html", status=404, unavailable=True, errors={}, student_id="", k=k, term="")
    return _page("student.html", errors={}, student_id="", k=k, term="")


@pages.post("/student")
def student_submit() -> Response:
    s = get_state()
    s.csrf.check(request.form.get(CSRF_FIELD))
    if s.store is None:
        abort(404)
    served = get_served()
    errors: dict[str, str] = {}
    options = form_options(s.config, errors)
    token = request.form.get("student_token", "")
    student_id = request.form.get("student_id", "").strip()[:MAX_CODE_CHARS]
    code = request.form.get("access_code", "").strip()[:MAX_ACCESS_CODE_CHARS]
    verified = False
    if token:
        # A "why not?" question after a verified request: the signed token stands for the code (15 minutes).
        try:
            student_id = _student_signer().loads(token, max_age=s.config.student_token_max_age)
            verified = True
        except BadSignature:
            errors["student_id"] = "Your session has expired: enter your student number and access code again."
    else:
        if not student_id:
            errors["student_id"] = "Enter your student number."
        if not code:
            errors["access_code"] = "Enter the access code the registrar gave you."
    context = {
        "student_id": "" if verified else student_id,
        "k": request.form.get("k", ""),
        "term": request.form.get("term", ""),
    }
    if errors or options is None:
        return _page("student.html", status=400, errors=errors, **context)
    query = StudentQuery(student_id, code, options)
    try:
        recs = run_student(served, query, verified=verified)
    except HttpError as err:
        if err.status == 401:
            return _page(
                "student.html",
                status=401,
                errors={"access_code": "The student number and access code do not match."},
                **context,
            )
        if err.status in (404, 429):
            return _page(
                "student.html", status=err.status, errors={"form": err.message}, headers=err.headers, **context
            )
        raise
    token = _student_signer().dumps(student_id)
    return _results(served, recs, options, token=token, action="pages.student_submit")


def _student_signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_state().secret_key, salt="electives-student")


# ---------------------------------------------------------------------------------------------------- results


def _results(
    served: ServedModel,
    recs: Recommendations,
    options: Options,
    *,
    action: str,
    hidden: list[tuple[str, str | float]] | None = None,
    token: str | None = None,
) -> Response:
    why = [recs.why_not(c) for c in options.why_not]
    # Courses one may ask about: every catalogue/model course not on the cards.
    shown = set(recs.courses)
    askable = [c for c in served.courses if c.code not in shown]
    excluded = [(served.names.get(code, code), code, e.message) for code, e in recs.excluded.items()]
    return _page(
        "results.html",
        served=served,
        recs=recs,
        options=options,
        why=why,
        askable=askable,
        excluded=excluded,
        hidden=hidden or [],
        token=token,
        action=action,
    )


# ---------------------------------------------------------------------------------------------------- model page


@pages.get("/model")
def model_page() -> Response:
    served = get_served()
    scale = served.recommender.scale if served.explicit else None
    return _page(
        "model.html",
        served=served,
        info=served.info,
        metrics=metric_rows(served.info.get("metrics") or {}, scale),
        error_unit=error_unit(scale),
        selection_label=metric_label((served.info.get("model_selection") or {}).get("metric") or "val_rmse"),
        scale=scale,
        plots=[Plot(p.name, plot_title(p)) for p in served.plots],
    )


@pages.get("/model/plots/<name>")
def model_plot(name: str) -> Response:
    for path in get_served().plots:
        if path.name == name:  # only files found when the model was loaded: no path from the URL is opened
            return send_file(path, mimetype="image/png", max_age=0)
    abort(404)


@pages.app_template_filter("pts")
def _points(value: float, scale: Any) -> str:
    """Points as the scale writes them: 87.5 on a percent scale, 3.30 on a 4-point one."""
    return format_points(value, scale)
