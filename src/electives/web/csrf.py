"""CSRF tokens for the HTML forms (synchroniser token, no extra dependency).

The session cookie (signed by Flask, HttpOnly, SameSite=Lax) holds a random nonce and nothing else; each form
carries ``csrf_token`` = the nonce signed with a timestamp (itsdangerous). A POST is accepted only when the token's
signature is valid, it is younger than ``max_age`` and its nonce is the one in this browser's session, so a page
on another site can neither read nor forge it. The JSON API needs no token: it accepts only
``application/json`` bodies, which a cross-site form cannot send, and sends no CORS headers.
"""

from __future__ import annotations

import secrets

from flask import session
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from electives.web.errors import FieldError

FIELD = "csrf_token"
_SESSION_KEY = "csrf"


class Csrf:
    def __init__(self, secret_key: str, max_age: int) -> None:
        self._signer = URLSafeTimedSerializer(secret_key, salt="electives-csrf")
        self._max_age = max_age

    def token(self) -> str:
        """The token for a form on this page (creates the session nonce on first use)."""
        nonce = session.get(_SESSION_KEY)
        if not isinstance(nonce, str):
            nonce = session[_SESSION_KEY] = secrets.token_urlsafe(24)
        return self._signer.dumps(nonce)

    def check(self, token: str | None) -> None:
        """Raise a 400 unless ``token`` belongs to this session and is fresh."""
        if not token:
            raise _failed("the form is missing its security token; reload the page")
        try:
            nonce = self._signer.loads(token, max_age=self._max_age)
        except SignatureExpired:
            raise _failed("the form has expired; reload the page and try again") from None
        except BadSignature:
            raise _failed("the form's security token is invalid") from None
        expected = session.get(_SESSION_KEY)
        if not isinstance(expected, str) or not secrets.compare_digest(str(nonce), expected):
            raise _failed("the form does not belong to this browser session; reload the page (cookies must be on)")


def _failed(detail: str) -> FieldError:
    return FieldError(FIELD, detail, code="csrf_failed")
