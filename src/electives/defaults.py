"""Names and defaults shared by the command line, the web app and the library (kept free of heavy imports so the
command line can show them without loading pandas or torch)."""

from __future__ import annotations

__all__ = ["DB_ENV", "DEFAULT_DB_URL"]

DB_ENV = "ELECTIVES_DB"  # every command and the web app read the grade database URL from this variable
DEFAULT_DB_URL = "sqlite:///electives.db"
