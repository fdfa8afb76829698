"""Web app configuration: one frozen dataclass whose defaults live here, built by the CLI or from the environment.

Environment (read only by :meth:`WebConfig.from_env`, so every setting has one name and one default):

- ``ELECTIVES_MODEL``: model artifact directory; ``ELECTIVES_DB``: grade database URL (enables the known-student
  flow); ``ELECTIVES_CATALOG``: catalogue CSV (default: the courses stored in the database);
  ``ELECTIVES_WEB_REPORT_DIR``: extra folder of evaluation plots (PNG) for the model page.
- ``ELECTIVES_WEB_SECRET_KEY``: signs CSRF tokens and the session cookie (≥ 32 characters); required when
  ``ELECTIVES_WEB_PRODUCTION`` is 1/true/yes.
- ``ELECTIVES_WEB_API_RATE`` (``N/SECONDS``, e.g. ``120/60``; ``0/1`` switches it off),
  ``ELECTIVES_WEB_PROXY_HOPS`` (how many proxies set X-Forwarded-For: 1 on Heroku), ``ELECTIVES_WEB_RELOAD_SECONDS``
  (how often to look for a newer artifact; 0: never).
- ``ELECTIVES_WEB_REQUIRE_SIGNED_MODEL`` (1/true/yes): serve only artifacts signed with this deployment's pseudonym
  key (``electives train`` signs when it has the key); a signature that does not match is refused in any case.
- ``ELECTIVES_WEB_ADVISOR_TOKEN``: turns on the advisor page (``/advisor``) and its API
  (``/api/v1/advisor/...``): a term's demand against seats and at-risk counts, under the k-anonymity rule. Advisors
  sign in with this token (≥ 16 characters; needs ``ELECTIVES_DB``). Unset or empty: neither exists (404) and no
  page links to them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from electives.defaults import DB_ENV
from electives.errors import ElectivesError

MODEL_ENV = "ELECTIVES_MODEL"
CATALOG_ENV = "ELECTIVES_CATALOG"
REPORT_DIR_ENV = "ELECTIVES_WEB_REPORT_DIR"
SECRET_ENV = "ELECTIVES_WEB_SECRET_KEY"
PRODUCTION_ENV = "ELECTIVES_WEB_PRODUCTION"
API_RATE_ENV = "ELECTIVES_WEB_API_RATE"
PROXY_HOPS_ENV = "ELECTIVES_WEB_PROXY_HOPS"
RELOAD_ENV = "ELECTIVES_WEB_RELOAD_SECONDS"
SIGNED_ENV = "ELECTIVES_WEB_REQUIRE_SIGNED_MODEL"
ADVISOR_TOKEN_ENV = "ELECTIVES_WEB_ADVISOR_TOKEN"
MIN_SECRET_CHARS = 32
MIN_ADVISOR_TOKEN_CHARS = 16
_TRUE = frozenset({"1", "true", "yes", "on"})


class ConfigError(ElectivesError):
    """The web app cannot start with this configuration."""


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` per ``seconds`` per client (``requests`` = 0: unlimited)."""

    requests: int
    seconds: float

    @property
    def unlimited(self) -> bool:
        return self.requests == 0

    @classmethod
    def parse(cls, text: str, name: str) -> RateLimit:
        try:
            n, _, secs = text.partition("/")
            limit = cls(int(n), float(secs))
        except ValueError:
            raise ConfigError(f"{name}={text!r}: expected REQUESTS/SECONDS, e.g. 120/60") from None
        if limit.requests < 0 or not limit.seconds > 0:
            raise ConfigError(f"{name}={text!r}: expected REQUESTS ≥ 0 and SECONDS > 0")
        return limit

    def __str__(self) -> str:
        return "unlimited" if self.unlimited else f"{self.requests} per {self.seconds:g} s"


@dataclass(frozen=True)
class WebConfig:
    """Everything the web app needs; see the module docstring for the environment variables."""

    model_dir: Path | None = None
    db_url: str | None = None
    catalog: Path | None = None
    report_dir: Path | None = None
    secret_key: str | None = field(default=None, repr=False)
    production: bool = False
    # Size caps: a request body, the grades in one request, the "why not?" questions, k, course search results.
    max_content_length: int = 64 * 1024
    max_grades: int = 200
    max_why_not: int = 20
    default_k: int = 5
    max_k: int = 20
    default_course_limit: int = 20
    max_course_limit: int = 100
    form_rows: int = 6  # empty grade rows on a fresh form; "more rows" adds this many
    # Rate limits are per client address and per worker process (see docs/deploy.md).
    api_rate_limit: RateLimit = RateLimit(120, 60)  # recommendation requests (API and form) per address
    search_rate_limit: RateLimit = RateLimit(600, 60)  # course searches (one per pause in typing)
    access_code_rate_limit: RateLimit = RateLimit(10, 15 * 60)  # attempts per address
    access_code_failures: RateLimit = RateLimit(5, 15 * 60)  # wrong codes per student number
    csrf_max_age: int = 2 * 3600  # seconds a form stays valid
    student_token_max_age: int = 15 * 60  # seconds a verified student may ask "why not?" without the code again
    reload_seconds: float = 5.0  # how often a worker looks for a newer artifact (0: never)
    proxy_hops: int = 0
    torch_threads: int | None = 1  # torch and NumPy BLAS threads per worker: a request is a few small products
    require_signed_model: bool = False  # refuse artifacts not signed with the deployment's key
    # The advisor page: off without a token; a signed-in advisor stays so for advisor_session_max_age seconds.
    advisor_token: str | None = field(default=None, repr=False)
    advisor_session_max_age: int = 3600
    advisor_token_failures: RateLimit = RateLimit(5, 15 * 60)  # wrong tokens per address (then even the right waits)
    advisor_wait_seconds: float = 10.0  # a request waits this long for at-risk counts being computed, then says so

    def __post_init__(self) -> None:
        from electives.limits import MAX_K

        if not 1 <= self.default_k <= self.max_k <= MAX_K:
            raise ConfigError(f"need 1 ≤ default_k ({self.default_k}) ≤ max_k ({self.max_k}) ≤ {MAX_K}")
        if self.max_grades < 1 or self.max_content_length < 1024 or self.max_why_not < 0:
            raise ConfigError("max_grades must be ≥ 1, max_content_length ≥ 1024 and max_why_not ≥ 0")
        if not 1 <= self.default_course_limit <= self.max_course_limit:
            raise ConfigError("need 1 ≤ default_course_limit ≤ max_course_limit")
        if self.proxy_hops < 0 or self.reload_seconds < 0:
            raise ConfigError("proxy_hops and reload_seconds must be ≥ 0")
        if self.advisor_session_max_age < 1 or self.advisor_wait_seconds < 0:
            raise ConfigError("advisor_session_max_age must be ≥ 1 and advisor_wait_seconds ≥ 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> WebConfig:
        """Settings from the environment (see the module docstring); ``overrides`` win (the CLI's flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get(MODEL_ENV):
            values["model_dir"] = Path(env[MODEL_ENV])
        if env.get(DB_ENV):
            values["db_url"] = env[DB_ENV]
        if env.get(CATALOG_ENV):
            values["catalog"] = Path(env[CATALOG_ENV])
        if env.get(REPORT_DIR_ENV):
            values["report_dir"] = Path(env[REPORT_DIR_ENV])
        if env.get(SECRET_ENV):
            values["secret_key"] = env[SECRET_ENV]
        if env.get(ADVISOR_TOKEN_ENV, "").strip():
            values["advisor_token"] = env[ADVISOR_TOKEN_ENV].strip()
        for name, key in ((PRODUCTION_ENV, "production"), (SIGNED_ENV, "require_signed_model")):
            if name in env:
                values[key] = env[name].strip().lower() in _TRUE
        if env.get(API_RATE_ENV):
            values["api_rate_limit"] = RateLimit.parse(env[API_RATE_ENV], API_RATE_ENV)
        for name, key, kind in ((PROXY_HOPS_ENV, "proxy_hops", int), (RELOAD_ENV, "reload_seconds", float)):
            if env.get(name):
                try:
                    values[key] = kind(env[name])
                except ValueError:
                    raise ConfigError(f"{name}={env[name]!r}: expected a number") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def check(self) -> None:
        """Refuse to start on a configuration that cannot work or is unsafe (clear message, nothing started)."""
        if self.model_dir is None:
            raise ConfigError(f"no model: give MODEL (a directory from `electives train`) or set {MODEL_ENV}")
        if self.secret_key is not None and len(self.secret_key) < MIN_SECRET_CHARS:
            raise ConfigError(f"{SECRET_ENV} must be at least {MIN_SECRET_CHARS} characters long")
        if self.advisor_token is not None:
            if len(self.advisor_token) < MIN_ADVISOR_TOKEN_CHARS:
                raise ConfigError(
                    f"{ADVISOR_TOKEN_ENV} must be at least {MIN_ADVISOR_TOKEN_CHARS} characters long (e.g. python -c "
                    '"import secrets; print(secrets.token_urlsafe(24))"), or unset to turn the advisor page off'
                )
            if not self.db_url:
                raise ConfigError(
                    f"{ADVISOR_TOKEN_ENV} is set but there is no grade database: the advisor page reads the stored "
                    f"plans and records; give --db URL or set {DB_ENV}"
                )
        if self.production and not self.secret_key:
            raise ConfigError(
                f"production mode needs a secret key: set {SECRET_ENV} to a random string of at least "
                f'{MIN_SECRET_CHARS} characters (e.g. python -c "import secrets; print(secrets.token_hex(32))")'
            )
