"""Tests run with a scrubbed environment: the caller's ELECTIVES_* settings never reach a test (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What a user of the README may well have set: a pseudonym key, a production database, a key file, a served model,
# production web settings. Each points somewhere a test must never reach.
CALLER = {
    "ELECTIVES_SECRET_KEY": "the-callers-own-production-key-0123456789",
    "ELECTIVES_DB": "sqlite:////nonexistent/caller/production.db",
    "ELECTIVES_KEY_FILE": "/nonexistent/caller/secret.key",
    "ELECTIVES_MODEL": "/nonexistent/caller/model",
    "ELECTIVES_CATALOG": "/nonexistent/caller/catalog.csv",
    "ELECTIVES_WEB_PRODUCTION": "1",
    "ELECTIVES_WEB_SECRET_KEY": "caller-web-secret",
    "ELECTIVES_WEB_API_RATE": "1/hour",
}


def test_no_caller_variable_reaches_a_test() -> None:
    from conftest import caller_variables

    assert caller_variables() == []
    assert not any(name in os.environ for name in CALLER)


def test_the_fixtures_key_is_the_one_in_force(secret_key: str) -> None:
    from conftest import TEST_KEY

    from electives.data.pseudonyms import Pseudonymiser

    assert os.environ["ELECTIVES_SECRET_KEY"] == secret_key == TEST_KEY
    assert Pseudonymiser.from_environment().pseudonym("x") == Pseudonymiser(TEST_KEY.encode()).pseudonym("x")


def test_a_polluted_environment_changes_nothing(tmp_path: Path) -> None:
    """pytest run without make, under the caller's settings: the probes above and the tests that read these
    variables (keys, database default, web configuration) pass as they do in a clean environment."""
    env = {**os.environ, **CALLER, "PYTHONPATH": str(ROOT / "src")}
    targets = [
        "tests/test_scrubbed_env.py::test_no_caller_variable_reaches_a_test",
        "tests/test_scrubbed_env.py::test_the_fixtures_key_is_the_one_in_force",
        "tests/test_pseudonyms.py",
        "tests/test_import_cli.py",
        "tests/test_web_api.py::test_configuration_from_the_environment",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *targets],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
