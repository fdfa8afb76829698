"""Shared fixtures. Real data sets live outside the repository: $ELECTIVES_DATA, else ../shared/data."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import support
from support import TEST_KEY

ROOT = Path(__file__).resolve().parents[1]

# Settings of the test suite itself (where the shared data, a PostgreSQL server and screenshots are): kept.
# Every other ELECTIVES_* variable configures the application, and the caller's (a key the README tells users to
# set, a production database) must never change what a test sees.
HARNESS_VARIABLES = ("ELECTIVES_DATA", "ELECTIVES_SCREENSHOTS", "ELECTIVES_TEST_")


def caller_variables() -> list[str]:
    """The application's ELECTIVES_* variables now in the environment."""
    return sorted(k for k in os.environ if k.startswith("ELECTIVES_") and not k.startswith(HARNESS_VARIABLES))


# Scrubbed at import, before any test module or session-scoped fixture reads the environment ...
for _name in caller_variables():
    del os.environ[_name]


@pytest.fixture(autouse=True)
def scrubbed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """... and again before each test, in case an earlier one set a variable without monkeypatch."""
    for name in caller_variables():
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared, read-only data folder (see its README.md)."""
    path = Path(os.environ.get("ELECTIVES_DATA", ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        # The public data sets are not part of the repository (never committed); a checkout without them can still
        # run everything else. Browser and database tests, by contrast, fail when their part is missing.
        pytest.skip(f"data folder {path} not found: set ELECTIVES_DATA to the shared data (see README)")
    return path


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fixed pseudonym key in the environment, and a key file path inside tmp_path: nothing reaches ~/.config."""
    monkeypatch.setenv("ELECTIVES_SECRET_KEY", TEST_KEY)
    monkeypatch.setenv("ELECTIVES_KEY_FILE", str(tmp_path / "unused-secret.key"))
    return TEST_KEY


@pytest.fixture
def cli() -> Callable[..., tuple[int, str, str]]:
    """Run `electives ARGS...` in-process; returns (exit code, stdout, stderr)."""
    return support.run_cli


# Shaped like the AAST export: W/I codes in `total`, 777/999 placeholders, a latin-1 course name, a duplicate
# (line 7), a retake (lines 8 and 9: the later term comes first in the file) and an out-of-range total.
AAST = """student serial,Year,term,Crs Code,Course Name,total,Grade
20190001,2019,Fall,CS101,Intro to Computing,87.5,B+
20190001,2019,Fall,MA101,Calculus I,W,W
20190001,2020,Spring,MA101,Calculus I,64,D
20190002,2019,Fall,CS101,Intro to Computing,777,
20190002,2019,Fall,FR101,Français I,91,A-
20190002,2019,Fall,FR101,Français I,91,A-
20190002,2020,Fall,CS101,Intro to Computing,55,F
20190002,2020,Spring,CS101,Intro to Computing,78,C+
20190003,2019,Fall,CS101,Intro to Computing,I,I
20190003,2019,Fall,MA101,Calculus I,999,
20190003,2020,Spring,MA101,Calculus I,104,A+
20190003,2020,Spring,CS101,Intro to Computing,72.5,C
"""


@pytest.fixture
def aast_export(tmp_path: Path) -> Path:
    """A small export shaped like the AAST one (latin-1); see AAST above for what each line tests."""
    path = tmp_path / "aast-grades.csv"
    path.write_bytes(AAST.encode("latin-1"))
    return path


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: the test machine's 2 cores are shared, and OpenMP oversubscription stalls."""
    with support.one_torch_thread():
        yield
