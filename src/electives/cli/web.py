"""Web sub-commands: `serve` (the web app under gunicorn) and `access-code` (the code a registrar hands out)."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from electives.errors import DataError

DEFAULT_PORT = 8000
DEFAULT_WORKERS = 2
# Method and path only: query strings (course searches) and bodies (grades) never reach the log.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve the web app and JSON API with gunicorn",
        description=textwrap.fill(
            "Serve the pages and the JSON API (/api/v1) for one model artifact with gunicorn. Each worker loads the "
            "model once and picks up a newer artifact written to the same directory without dropping requests. "
            "Settings not given as flags come from the environment (ELECTIVES_DB, ELECTIVES_WEB_SECRET_KEY, "
            "ELECTIVES_WEB_PRODUCTION, PORT, WEB_CONCURRENCY; see docs/deploy.md).",
            100,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  electives serve demo/model --db sqlite:///demo/electives.db --host 127.0.0.1 --port 8000\n"
            "  PORT=5000 ELECTIVES_WEB_PRODUCTION=1 ELECTIVES_WEB_SECRET_KEY=... electives serve /model"
        ),
    )
    p.add_argument("model", metavar="MODEL", help="model artifact directory (from electives train)")
    p.add_argument(
        "--db", metavar="URL", help="grade database: enables the known-student flow (default: $ELECTIVES_DB)"
    )
    p.add_argument("--catalog", metavar="FILE", help="course catalogue CSV (default: the courses stored in --db)")
    p.add_argument("--report-dir", metavar="DIR", help="folder of evaluation plots (PNG) for the model page")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s, for containers)")
    p.add_argument("--port", type=int, metavar="N", help=f"port (default: $PORT, else {DEFAULT_PORT})")
    p.add_argument(
        "--workers", type=int, metavar="N", help=f"worker processes (default: $WEB_CONCURRENCY, else {DEFAULT_WORKERS})"
    )
    p.add_argument("--threads", type=int, default=1, metavar="N", help="threads per worker (default: %(default)s)")
    p.add_argument("--production", action="store_true", help="production mode: requires ELECTIVES_WEB_SECRET_KEY")
    p.add_argument("--no-access-log", action="store_true", help="do not log requests (method, path, status only)")
    p.set_defaults(func=run_serve)

    a = subparsers.add_parser(
        "access-code",
        help="print the access code of a student number (for the registrar)",
        description=textwrap.fill(
            "Print the access code a student needs, with their student number, to see recommendations from their "
            "record. The code is an HMAC of the number under the pseudonym key used at import "
            "(ELECTIVES_SECRET_KEY or ELECTIVES_KEY_FILE), so nothing new is stored and the web server computes the "
            "same code.",
            100,
        ),
    )
    a.add_argument("student_ids", nargs="+", metavar="ID", help="student number(s) as in the registrar's export")
    a.set_defaults(func=run_access_code)


def run_access_code(args: argparse.Namespace) -> int:
    from electives.data.pseudonyms import Pseudonymiser, load_key

    key = Pseudonymiser(load_key(create=False))  # a new key would give codes that match nothing
    ids = [s.strip() for s in args.student_ids]
    for raw in ids:
        if not raw:
            raise DataError("a student number is empty")
    if len(ids) == 1:
        print(key.access_code(ids[0]))
    else:
        for raw in ids:
            print(f"{raw}\t{key.access_code(raw)}")
    return 0


def _positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise DataError(f"{flag} {value}: expected a whole number ≥ 1")


def _flag_or_env(flag: int | None, environ: Mapping[str, str], name: str, default: int, expected: str) -> int:
    """The flag's value, else the whole number in $name (hosts such as Heroku set it), else `default`."""
    if flag is not None:
        return flag
    raw = environ.get(name)
    try:
        return int(raw) if raw else default
    except ValueError:
        raise DataError(f"{name}={raw!r}: expected {expected}") from None


def serve_options(args: argparse.Namespace, environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, Any]:
    """gunicorn settings from the flags and the environment (PORT, WEB_CONCURRENCY)."""
    port = _flag_or_env(args.port, environ, "PORT", DEFAULT_PORT, "a port number")
    if not 0 < port < 65536:
        raise DataError(f"port {port}: expected 1 to 65535")
    workers = _flag_or_env(args.workers, environ, "WEB_CONCURRENCY", DEFAULT_WORKERS, "a number of workers")
    _positive(workers, "--workers")
    _positive(args.threads, "--threads")
    options: dict[str, Any] = {
        "bind": f"{args.host}:{port}",
        "workers": workers,
        "threads": args.threads,
        "worker_class": "gthread" if args.threads > 1 else "sync",
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
        "errorlog": "-",
        "accesslog": None if args.no_access_log else "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "proc_name": "electives-web",
        # No admin socket in $HOME (gunicorn ≥ 25): containers run with no writable home, and nothing uses it.
        "control_socket_disable": True,
    }
    if Path("/dev/shm").is_dir():
        options["worker_tmp_dir"] = "/dev/shm"  # heartbeat files off slow container disks (gunicorn's advice)
    return options


def run_serve(args: argparse.Namespace) -> int:
    import secrets
    from dataclasses import replace

    from electives.models.artifact import read_manifest
    from electives.web.config import SECRET_ENV, WebConfig

    config = WebConfig.from_env(
        model_dir=Path(args.model),
        db_url=args.db,
        catalog=Path(args.catalog) if args.catalog else None,
        report_dir=Path(args.report_dir) if args.report_dir else None,
        production=True if args.production else None,
    )
    config.check()
    options = serve_options(args)
    # Fail here, with one clear message, rather than in every worker as it boots.
    read_manifest(config.model_dir)  # type: ignore[arg-type]
    if config.db_url:
        from electives.data.pseudonyms import load_key
        from electives.data.storage import open_store

        open_store(config.db_url).close()
        load_key(create=False)
    if not config.secret_key:
        # Development: one random key shared by all workers, so a form served by one can be posted to another.
        config = replace(config, secret_key=secrets.token_hex(32))
        print(f"electives serve: {SECRET_ENV} not set; using a random key until this server stops", file=sys.stderr)
    where = options["bind"].replace("0.0.0.0", "localhost")
    print(f"electives serve: http://{where} ({options['workers']} workers)", file=sys.stderr)
    if config.advisor_token:
        print(f"electives serve: advisor page at http://{where}/advisor (ELECTIVES_WEB_ADVISOR_TOKEN)", file=sys.stderr)
    _gunicorn(config, options).run()
    return 0


def _gunicorn(config: Any, options: dict[str, Any]) -> Any:
    """gunicorn with the app built in each worker after the fork (torch and the database are not fork-safe)."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                # Settings this gunicorn does not have (older versions) are skipped.
                if key in self.cfg.settings and (value is not None or key == "accesslog"):
                    self.cfg.set(key, value)

        def load(self) -> Any:
            from electives.web import create_app

            return create_app(config)

    return Server()
