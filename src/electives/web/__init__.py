"""The web app: pages for students and advisors, and a JSON API (v1). Build it with :func:`create_app`."""

from electives.web.app import create_app
from electives.web.config import RateLimit, WebConfig

__all__ = ["RateLimit", "WebConfig", "create_app"]
