"""The Flask application factory: configuration, the served model, security headers, blueprints, errors."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, Response, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin

from electives.web import errors, state
from electives.web.advisor_access import AdvisorAccess
from electives.web.advisor_cache import AdvisorCache
from electives.web.config import SECRET_ENV, SIGNED_ENV, ConfigError, WebConfig
from electives.web.csrf import Csrf
from electives.web.live_model import LiveModel
from electives.web.rate_limit import RateLimiter

if TYPE_CHECKING:
    from electives.data.pseudonyms import Pseudonymiser
    from electives.data.storage import Store

log = logging.getLogger("electives.web")

# No inline script or style and nothing from other origins: the pages need only their own CSS, JS and images.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_STATIC_MAX_AGE = 3600


def create_app(config: WebConfig | None = None) -> Flask:
    """A ready app for ``config`` (default: :meth:`WebConfig.from_env`); the model is loaded here, once."""
    config = config or WebConfig.from_env()
    config.check()
    secret_key = _secret_key(config)
    if config.torch_threads:
        import torch

        from electives.web.blas import limit_blas_threads

        torch.set_num_threads(config.torch_threads)
        limit_blas_threads(config.torch_threads)
    store, pseudonymiser = _open_students(config)
    try:
        live = _live_model(config, store, pseudonymiser)
    except BaseException:
        if store is not None:
            store.close()
        raise

    app = _flask_app(config, secret_key)
    advisor = _advisor_access(config, secret_key)
    state.init_app(
        app,
        state.WebState(
            config=config,
            model=live,
            store=store,
            pseudonymiser=pseudonymiser,
            csrf=Csrf(secret_key, config.csrf_max_age),
            api_limiter=RateLimiter(config.api_rate_limit),
            search_limiter=RateLimiter(config.search_rate_limit),
            access_limiter=RateLimiter(config.access_code_rate_limit),
            failure_limiter=RateLimiter(config.access_code_failures),
            secret_key=secret_key,
            advisor=advisor,
            advisor_cache=AdvisorCache() if advisor is not None else None,
        ),
    )

    from electives.web.api import api
    from electives.web.pages import pages

    app.register_blueprint(pages)
    app.register_blueprint(api)
    if advisor is not None:
        from electives.web.advisor import advisor as advisor_pages

        app.register_blueprint(advisor_pages)
    errors.register(app)
    app.after_request(_security_headers)
    return app


def _secret_key(config: WebConfig) -> str:
    if config.secret_key:
        return config.secret_key
    # Development only (check() refuses production without one): fine for one process, but forms posted to
    # another worker would fail, so `electives serve` generates one key for all its workers.
    log.warning("%s is not set: using a random key for this process (development only)", SECRET_ENV)
    return secrets.token_hex(32)


def _advisor_access(config: WebConfig, secret_key: str) -> AdvisorAccess | None:
    """The advisor page's sign-in, or None when no advisor token is set (then the page does not exist)."""
    if config.advisor_token is None:
        return None
    return AdvisorAccess(
        config.advisor_token,
        secret_key=secret_key,
        max_age=config.advisor_session_max_age,
        failures=RateLimiter(config.advisor_token_failures),
        secure=config.production,
    )


def _open_students(config: WebConfig) -> tuple[Store | None, Pseudonymiser | None]:
    """The grade database and the pseudonym key of the known-student flow (both None without a database)."""
    from electives.data.pseudonyms import Pseudonymiser, load_key
    from electives.data.storage import open_store

    if not config.db_url:
        return None, None
    store = open_store(config.db_url)
    try:
        # The import key, never created here: a new key would match no stored student.
        return store, Pseudonymiser(load_key(create=False))
    except Exception as exc:
        store.close()
        raise ConfigError(f"the known-student flow needs the pseudonym key used at import: {exc}") from exc


def _live_model(config: WebConfig, store: Store | None, pseudonymiser: Pseudonymiser | None) -> LiveModel:
    from electives.data.catalog import read_catalog
    from electives.data.pseudonyms import existing_pseudonymiser

    assert config.model_dir is not None
    # Signatures are checked whenever the deployment's key is here (it is, with a database).
    keyed = pseudonymiser or existing_pseudonymiser()
    if config.require_signed_model and keyed is None:
        raise ConfigError(
            f"{SIGNED_ENV} is set but there is no deployment key to check signatures with: set ELECTIVES_SECRET_KEY "
            "or ELECTIVES_KEY_FILE to the key the models were trained with"
        )
    return LiveModel(
        config.model_dir,
        catalog=read_catalog(config.catalog) if config.catalog else None,
        store=store,
        pseudonymiser=pseudonymiser,
        report_dir=config.report_dir,
        reload_seconds=config.reload_seconds,
        threads=config.torch_threads,
        signer=keyed.model_signature if keyed is not None else None,
        require_signature=config.require_signed_model,
    )


def _flask_app(config: WebConfig, secret_key: str) -> Flask:
    """The Flask object with its settings: cookies, size caps, JSON and templates."""
    app = Flask(__name__.rsplit(".", 1)[0])
    app.config.update(
        SECRET_KEY=secret_key,
        MAX_CONTENT_LENGTH=config.max_content_length,
        MAX_FORM_PARTS=4 * config.max_grades + 64,
        SESSION_COOKIE_NAME="electives_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.production,
        PERMANENT_SESSION_LIFETIME=config.csrf_max_age,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.session_interface = _Sessions()
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    if config.proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.proxy_hops, x_proto=config.proxy_hops)  # type: ignore[method-assign]
    return app


_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
_HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def _security_headers(response: Response) -> Response:
    h = response.headers
    h.extend(_HEADERS)
    if state.get_config().production:
        h.add(*_HSTS)
    if request.path.startswith("/static/") and response.status_code == 200:
        h["Cache-Control"] = f"public, max-age={_STATIC_MAX_AGE}"
    else:
        # Pages and answers carry someone's grades: no browser or proxy may keep them.
        h["Cache-Control"] = "no-store"
    return response


class _Sessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions (they hold only the CSRF nonce), skipped on the JSON routes, which never use
    them, and with the signer built once instead of on every request."""

    def __init__(self) -> None:
        self._signer: Any = None

    def get_signing_serializer(self, app: Flask) -> Any:
        if self._signer is None:
            self._signer = super().get_signing_serializer(app)
        return self._signer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(errors.JSON_PREFIXES):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not request.path.startswith(errors.JSON_PREFIXES):
            super().save_session(app, session, response)
