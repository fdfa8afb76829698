"""Reading and checking what clients send: JSON bodies of the API and the HTML forms.

Every problem is an :class:`~electives.web.errors.HttpError` (400) naming the field (``grades[2].course``, ``k``)
and what was expected, before anything reaches the model. The limits (list lengths, k, string lengths) are the
ones the OpenAPI document states, so the document and the behaviour cannot drift apart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import request

from electives.data.catalog import Course
from electives.errors import DataError
from electives.web.config import WebConfig
from electives.web.errors import FieldError, HttpError, invalid

MAX_CODE_CHARS = 64  # a course code or a student number
MAX_MARK_CHARS = 16
MAX_TERM_CHARS = 32
MAX_ACCESS_CODE_CHARS = 32
MAX_QUERY_CHARS = 64
GRADES_FIELDS = frozenset({"grades", "k", "term", "why_not"})
STUDENT_FIELDS = frozenset({"student_id", "access_code", "k", "term", "why_not"})
GRADE_ITEM_FIELDS = frozenset({"course", "grade"})


@dataclass(frozen=True)
class Options:
    """What every recommendation request shares."""

    k: int
    term: str | None
    why_not: tuple[str, ...]


@dataclass(frozen=True)
class GradesQuery:
    """Entered grades (course, mark) and, for each, where it was entered: its index in the request's ``grades``
    list or its row on the form (blank rows are skipped), so an error can point there."""

    grades: tuple[tuple[str, str | float], ...]
    entry_rows: tuple[int, ...]
    options: Options


@dataclass(frozen=True)
class StudentQuery:
    student_id: str
    access_code: str
    options: Options


# ---------------------------------------------------------------------------------------------------- JSON


def json_body() -> dict[str, Any]:
    """The request body as a JSON object (415 when it is not JSON, 400 when it does not parse)."""
    if not request.is_json:
        raise HttpError(415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json")
    try:
        body = json.loads(request.get_data(cache=False))
    except (ValueError, UnicodeDecodeError) as exc:
        raise FieldError("body", f"not valid JSON ({exc})", code="invalid_json") from None
    if not isinstance(body, dict):
        raise FieldError("body", "expected a JSON object", code="invalid_json")
    return body


def grades_query(body: Mapping[str, Any], config: WebConfig, explicit: bool) -> GradesQuery:
    _no_unknown(body, GRADES_FIELDS, "")
    if "grades" not in body:
        raise invalid("grades", "missing; expected a list of {course, grade} objects")
    items = body["grades"]
    if not isinstance(items, list):
        raise invalid("grades", "expected a list of {course, grade} objects")
    if len(items) > config.max_grades:
        raise invalid("grades", f"{len(items)} grades; at most {config.max_grades} are accepted")
    grades = []
    for i, item in enumerate(items):
        field = f"grades[{i}]"
        if not isinstance(item, dict):
            raise invalid(field, "expected an object with 'course' and 'grade'")
        _no_unknown(item, GRADE_ITEM_FIELDS, f"{field}.")
        course = _string(item.get("course"), f"{field}.course", MAX_CODE_CHARS)
        mark = item.get("grade")
        if mark is None:
            if explicit:
                raise invalid(f"{field}.grade", "missing; expected a mark of the grade scale")
            mark = ""
        elif isinstance(mark, str):
            mark = _string(mark, f"{field}.grade", MAX_MARK_CHARS)
        elif isinstance(mark, bool) or not isinstance(mark, int | float) or not math.isfinite(mark):
            raise invalid(f"{field}.grade", 'expected a mark as a string (e.g. "B+") or a number')
        grades.append((course, mark))
    return GradesQuery(tuple(grades), tuple(range(len(grades))), _options(body, config))


def student_query(body: Mapping[str, Any], config: WebConfig) -> StudentQuery:
    _no_unknown(body, STUDENT_FIELDS, "")
    return StudentQuery(
        student_id=_string(body.get("student_id"), "student_id", MAX_CODE_CHARS),
        access_code=_string(body.get("access_code"), "access_code", MAX_ACCESS_CODE_CHARS),
        options=_options(body, config),
    )


def _options(body: Mapping[str, Any], config: WebConfig) -> Options:
    k = body.get("k", config.default_k)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= config.max_k:
        raise invalid("k", f"expected a whole number from 1 to {config.max_k}, got {json.dumps(k)}")
    term = body.get("term")
    if term is not None:
        term = check_term(_string(term, "term", MAX_TERM_CHARS))
    why = body.get("why_not", [])
    if not isinstance(why, list):
        raise invalid("why_not", "expected a list of course codes")
    if len(why) > config.max_why_not:
        raise invalid("why_not", f"{len(why)} courses; at most {config.max_why_not} are answered per request")
    codes = tuple(_string(c, f"why_not[{i}]", MAX_CODE_CHARS) for i, c in enumerate(why))
    return Options(k, term, codes)


def _no_unknown(obj: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
    for key in obj:
        if key not in allowed:
            raise invalid(f"{prefix}{key}", f"unknown field; expected {', '.join(sorted(allowed))}")


def _string(value: Any, field: str, max_chars: int) -> str:
    if value is None:
        raise invalid(field, "missing")
    if not isinstance(value, str):
        raise invalid(field, "expected a string")
    if not value.strip():
        raise invalid(field, "empty")
    if len(value) > max_chars:
        raise invalid(field, f"longer than {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON can carry lone surrogates (\ud800); they are not text
        raise invalid(field, "not valid Unicode text") from None
    return value.strip()


def check_term(term: str) -> str:
    """A season (Fall) or a term (2025-Fall), else a 400 naming the field ``term``."""
    try:
        # The catalogue's own reading of offerings, so the check and the eligibility rules agree.
        Course("", None, terms_offered=("Fall",)).offered_in(term)
    except DataError as exc:
        raise invalid("term", str(exc)) from None
    return term


def query_int(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise invalid(name, f"expected a whole number from {low} to {high}, got {raw[:20]!r}")
    return value


def query_bool(name: str, default: bool) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise invalid(name, f"expected true or false, got {raw[:20]!r}")


# ---------------------------------------------------------------------------------------------------- forms


@dataclass(frozen=True)
class FormRows:
    """The grade rows of the form as typed (for showing them again) and the problems found, by field id."""

    rows: list[tuple[str, str]]
    errors: dict[str, str]


def form_rows(config: WebConfig, explicit: bool) -> tuple[FormRows, GradesQuery | None]:
    """Rows of the grades form; the query when every filled row is complete (else the errors say which are not)."""
    courses = request.form.getlist("course")
    marks = request.form.getlist("grade")
    if max(len(courses), len(marks)) > config.max_grades:
        raise invalid("course", f"at most {config.max_grades} grades are accepted")
    n = max(len(courses), len(marks))
    rows = [
        (
            (courses[i] if i < len(courses) else "")[:MAX_CODE_CHARS],
            (marks[i] if i < len(marks) else "")[:MAX_MARK_CHARS],
        )
        for i in range(n)
    ]
    errors: dict[str, str] = {}
    grades, entry_rows = [], []
    for i, (course, mark) in enumerate(rows):
        course, mark = course.strip(), mark.strip()
        if not course and not mark:
            continue
        if not course:
            errors[f"course-{i}"] = "Enter the course for this grade."
        elif explicit and not mark:
            errors[f"grade-{i}"] = f"Choose the grade you got in {course}."
        else:
            grades.append((course, mark))
            entry_rows.append(i)
    options_errors: dict[str, str] = {}
    options = form_options(config, options_errors)
    errors.update(options_errors)
    if errors or options is None:
        return FormRows(rows, errors), None
    return FormRows(rows, errors), GradesQuery(tuple(grades), tuple(entry_rows), options)


def form_options(config: WebConfig, errors: dict[str, str]) -> Options | None:
    raw_k = request.form.get("k", "").strip()
    k = config.default_k
    if raw_k:
        try:
            k = int(raw_k)
        except ValueError:
            k = 0
        if not 1 <= k <= config.max_k:
            errors["k"] = f"Choose how many courses to show: a number from 1 to {config.max_k}."
    term = request.form.get("term", "").strip()[:MAX_TERM_CHARS] or None
    if term is not None:
        try:
            check_term(term)
        except FieldError:
            errors["term"] = f"{term!r} is not a season (e.g. Fall) or a term (e.g. 2025-Fall)."
    why = request.form.get("why_not", "").strip()[:MAX_CODE_CHARS]
    if errors:
        return None
    return Options(k, term, (why,) if why else ())
