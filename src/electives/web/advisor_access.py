"""Who may see the advisor page: the deployment's advisor token, typed once into the page's sign-in form (then a
signed, expiring cookie) or sent to the API as ``Authorization: Bearer TOKEN``.

The token is compared in constant time (HMACs of both under the app's secret key, so lengths and contents leak
nothing), and wrong tokens are limited per client address: after ``advisor_token_failures`` even the right one
waits, which turns guessing into years. The cookie (``electives_advisor``: HttpOnly, SameSite=Strict, only under
``/advisor``, ``Secure`` in production) carries a timestamp and a keyed fingerprint of the token, signed: never the
token itself; a new token (or a new secret key) signs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Response, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from electives.web.errors import HttpError, rate_limited
from electives.web.rate_limit import RateLimiter

COOKIE = "electives_advisor"
COOKIE_PATH = "/advisor"
MAX_TOKEN_CHARS = 256  # a typed or sent token longer than this is wrong without looking at it


class AdvisorAccess:
    """The token check, the sign-in cookie and the limit on wrong tokens."""

    def __init__(self, token: str, *, secret_key: str, max_age: int, failures: RateLimiter, secure: bool) -> None:
        self._key = secret_key.encode()
        self._expected = self._fingerprint(token)
        self._signer = URLSafeTimedSerializer(secret_key, salt="electives-advisor")
        self.max_age = max_age
        self.failures = failures
        self._secure = secure

    def _fingerprint(self, token: str) -> bytes:
        return hmac.new(
            self._key, b"advisor-token\x00" + token.strip().encode("utf-8", "replace"), hashlib.sha256
        ).digest()

    def check(self, given: str) -> None:
        """Nothing when ``given`` is the token; else 403 (counted against this address), or 429 once it has had
        too many wrong ones."""
        address = request.remote_addr or "-"
        wait = self.failures.retry_after(address)
        if wait is not None:
            raise rate_limited(wait, "wrong advisor tokens")
        if len(given) > MAX_TOKEN_CHARS or not hmac.compare_digest(self._fingerprint(given), self._expected):
            self.failures.hit(address)
            raise HttpError(403, "invalid_advisor_token", "the advisor token is not right", field="token")

    def check_bearer(self) -> None:
        """The API's check: ``Authorization: Bearer TOKEN`` (401 when missing, 403 when wrong)."""
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise HttpError(
                401,
                "advisor_token_required",
                "send the advisor token as the header Authorization: Bearer TOKEN",
                headers={"WWW-Authenticate": 'Bearer realm="electives advisor"'},
            )
        self.check(given)

    def signed_in(self) -> bool:
        """This browser signed in with the current token less than ``max_age`` seconds ago."""
        value = request.cookies.get(COOKIE)
        if not value:
            return False
        try:
            fingerprint = self._signer.loads(value, max_age=self.max_age)
        except BadSignature:
            return False
        return isinstance(fingerprint, str) and hmac.compare_digest(fingerprint, self._expected.hex()[:32])

    def sign_in(self, response: Response) -> None:
        response.set_cookie(
            COOKIE,
            self._signer.dumps(self._expected.hex()[:32]),
            max_age=self.max_age,
            path=COOKIE_PATH,
            secure=self._secure,
            httponly=True,
            samesite="Strict",
        )

    def sign_out(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=self._secure, httponly=True, samesite="Strict")
