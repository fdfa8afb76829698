"""HTTP errors: the app's own 4xx/5xx as objects, and the one place domain errors become responses.

:class:`HttpError` is any error answer; :class:`FieldError` one input field at fault (``field`` and ``detail``
kept apart, so a page can show the detail beside its own field); :class:`GradeError` an entered grade the model
cannot use, with the ``row`` and ``part`` it was entered in. Domain errors (:mod:`electives.errors`) become
:class:`HttpError` in :func:`translate`, using their ``field`` where the library knows it.

API paths answer ``{"error": code, "message": text}`` (plus ``"field"`` when one input field is at fault; the
message names it too); pages answer an HTML error page with the same message.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from typing import Literal

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from electives.errors import DataError, ElectivesError, ModelError, ScaleError, StorageError

log = logging.getLogger("electives.web")

JSON_PREFIXES = ("/api/", "/healthz", "/readyz")
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class HttpError(Exception):
    """An error response: ``status``, a stable ``code``, a ``message`` for people and the ``field`` at fault."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = dict(headers or {})


class FieldError(HttpError):
    """One input field at fault: ``detail`` says what is wrong with it; the message is ``"field: detail"``."""

    def __init__(self, field: str, detail: str, *, status: int = 400, code: str = "invalid_field") -> None:
        super().__init__(status, code, f"{field}: {detail}", field=field)
        self.detail = detail


class GradeError(FieldError):
    """An entered grade the model cannot use: ``row`` is where it was entered (the index in the request's
    ``grades`` list, or the form's row) and ``part`` which half of it is at fault; ``other_row`` the earlier row
    of a course entered twice (both are at fault; ``hint`` says what would be accepted)."""

    def __init__(
        self,
        row: int,
        part: Literal["course", "grade"],
        detail: str,
        *,
        other_row: int | None = None,
        hint: str = "",
    ) -> None:
        super().__init__(f"grades[{row}].{part}", detail)
        self.row, self.part = row, part
        self.other_row, self.hint = other_row, hint


def invalid(field: str, detail: str) -> FieldError:
    """400 for one input field; the message starts with the field's name."""
    return FieldError(field, detail)


def rate_limited(retry_after: float, what: str = "requests") -> HttpError:
    seconds = max(1, int(retry_after + 0.999))
    return HttpError(
        429,
        "rate_limited",
        f"too many {what} from this address; try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


def wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES)


def error_response(err: HttpError) -> Response:
    if wants_json():
        body: dict[str, str] = {"error": err.code, "message": err.message}
        if err.field is not None:
            body["field"] = err.field
        response = jsonify(body)
    else:
        response = Response(render_template("error.html", error=err), mimetype="text/html")
    response.status_code = err.status
    response.headers.update(err.headers)
    return response


def translate(exc: Exception) -> HttpError:
    """The one translation of domain exceptions into HTTP (messages are safe to show: they name fields, not
    other students)."""
    from electives.serving.entry import GradeEntryError
    from electives.serving.recommender import UnknownStudentError

    if isinstance(exc, HttpError):
        return exc
    if isinstance(exc, UnknownStudentError):
        return HttpError(404, "unknown_student", str(exc), field=exc.field)
    if isinstance(exc, GradeEntryError):
        # Only when no request mapped it to its row (see electives.web.recommend.run_grades).
        return invalid("grades", str(exc))
    if isinstance(exc, DataError | ScaleError):
        return HttpError(400, "invalid_request", str(exc), field=exc.field)
    if isinstance(exc, ModelError | StorageError):
        return HttpError(503, "unavailable", "the model or the grade database is not available right now")
    if isinstance(exc, ElectivesError):
        return HttpError(400, "invalid_request", str(exc), field=exc.field)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = "the request body is too large"
        headers = {k: v for k, v in exc.get_headers() if k.lower() not in ("content-type", "content-length")}
        return HttpError(status, _HTTP_CODES.get(status, exc.name.lower().replace(" ", "_")), message, headers=headers)
    return HttpError(500, "internal_error", "something went wrong on our side; the error has been logged")


def register(app: Flask) -> None:
    @app.errorhandler(Exception)
    def _handle(exc: Exception) -> Response:
        err = translate(exc)
        if err.status >= 500 and not isinstance(exc, HttpError | HTTPException | ElectivesError):
            # Type and stack only: an exception's message may quote what the user typed (grades, ids).
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("internal error %s in %s\n%s", type(exc).__name__, request.endpoint, frames)
        return error_response(err)
