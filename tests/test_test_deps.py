"""scripts/test-deps (run by `make test` and .ci/run): installs what the tests need as root with apt-get, and
otherwise stops with one line naming the command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "test-deps"


def tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def run(tmp_path: Path, *, uid: int, apt: bool, postgres: bool) -> subprocess.CompletedProcess[str]:
    """The script on a PATH holding only fakes: `id` says ``uid``, apt-get (if any) records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool(bin_dir, "id", f"echo {uid}")
    if apt:
        tool(bin_dir, "apt-get", f'echo "$@" >> {tmp_path / "apt.log"}')
    if postgres:
        tool(bin_dir, "pg_ctlcluster", "exit 0")
    env = {k: v for k, v in os.environ.items() if k != "ELECTIVES_TEST_POSTGRES_URL"}
    env |= {"PATH": str(bin_dir), "TEST_DEPS_CHROMIUM": str(tmp_path / "no-chromium")}
    bash = "/bin/bash" if Path("/bin/bash").exists() else "/usr/bin/bash"
    return subprocess.run([bash, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_as_root_with_apt_it_installs_what_is_missing(tmp_path: Path) -> None:
    done = run(tmp_path, uid=0, apt=True, postgres=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "apt.log").read_text().splitlines() == ["update -qq", "install -y -qq postgresql chromium"]


def test_as_a_user_it_stops_with_one_line_naming_the_command(tmp_path: Path) -> None:
    done = run(tmp_path, uid=1000, apt=True, postgres=True)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["test-deps: the tests need chromium; run: sudo apt-get install -y chromium"]
    assert not (tmp_path / "apt.log").exists()


def test_without_apt_it_says_what_to_install(tmp_path: Path) -> None:
    done = run(tmp_path, uid=0, apt=False, postgres=False)
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1
    assert "postgresql chromium" in done.stderr


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs the real chromium to find nothing missing")
def test_nothing_missing_nothing_done(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool(bin_dir, "pg_ctlcluster", "exit 0")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("TEST_DEPS_CHROMIUM", None)
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
