"""What the requests of one app share, and how views reach it (Flask's ``get_db`` pattern).

:func:`~electives.web.app.create_app` builds one :class:`WebState` and puts it on the app with :func:`init_app`;
views and helpers read it with the ``get_*`` functions below, inside a request or app context, and never import
the factory. Nothing here is per request: the limiters and the live model carry their own locking.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:
    from electives.data.pseudonyms import Pseudonymiser
    from electives.data.storage import Store
    from electives.web.advisor_access import AdvisorAccess
    from electives.web.advisor_cache import AdvisorCache
    from electives.web.config import WebConfig
    from electives.web.csrf import Csrf
    from electives.web.live_model import LiveModel, ServedModel
    from electives.web.rate_limit import RateLimiter

EXTENSION = "electives"


@dataclass(frozen=True)
class WebState:
    """What the views share, in ``app.extensions["electives"]``."""

    config: WebConfig
    model: LiveModel
    store: Store | None
    pseudonymiser: Pseudonymiser | None
    csrf: Csrf
    api_limiter: RateLimiter
    search_limiter: RateLimiter
    access_limiter: RateLimiter
    failure_limiter: RateLimiter
    secret_key: str
    advisor: AdvisorAccess | None = None  # the advisor page's sign-in (None: no advisor token, no page)
    advisor_cache: AdvisorCache | None = None  # its at-risk counts (per model, term and import) and terms

    def student_key(self, student_id: str) -> str:
        """A keyed hash of a student number for the per-student attempt counter (raw numbers are never held)."""
        digest = hmac.new(self.secret_key.encode(), b"attempts\x00" + student_id.strip().encode(), hashlib.sha256)
        return digest.hexdigest()[:32]


def init_app(app: Flask, state: WebState) -> None:
    app.extensions[EXTENSION] = state


def get_state() -> WebState:
    """The current app's shared state."""
    return current_app.extensions[EXTENSION]


def get_config() -> WebConfig:
    return get_state().config


def get_served() -> ServedModel:
    """The model to answer this request with (one read: a reload swaps it for later requests only)."""
    return get_state().model.current


def get_store() -> Store | None:
    """The grade database, or None when the known-student flow is off."""
    return get_state().store
