"""Time `electives import` of the 994,169 ML-1M (user, movie) pairs, end to end, into a fresh SQLite database.

    .venv/bin/python benchmarks/import_1m.py [--repeat N]

Runs the real command in a subprocess (interpreter start-up and imports included), once as --dry-run (read, clean
and pseudonymise only) and once for real (plus the SQLite write), and prints rows, seconds and rows/s. The data
folder is $ELECTIVES_DATA, else ../shared/data beside the repository. A throw-away key is used, so nothing is
written to ~/.config.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = 994_169


def data_dir() -> Path:
    return Path(os.environ.get("ELECTIVES_DATA", ROOT.parent / "shared" / "data"))


def run(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "electives", *args], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"electives {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each step; the fastest is shown")
    opts = parser.parse_args()

    pairs = data_dir() / "ml-1m" / "loo" / "train.tsv.gz"
    if not pairs.exists():
        sys.exit(f"{pairs} not found: set ELECTIVES_DATA to the shared data folder")
    env = dict(os.environ, ELECTIVES_SECRET_KEY=secrets.token_hex(32))
    common = [str(pairs), "--no-header", "--columns", "student,course"]

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        dry = min(run(["import", *common, "--dry-run"], env) for _ in range(opts.repeat))
        results.append(("read + clean + pseudonymise (--dry-run)", ROWS, dry))
        full = []
        for i in range(opts.repeat):
            db = Path(tmp) / f"bench{i}.db"
            full.append(run(["import", *common, "--db", f"sqlite:///{db}"], env))
            with sqlite3.connect(db) as conn:
                stored = conn.execute("SELECT COUNT(*) FROM grades").fetchone()[0]
            if stored != ROWS:
                sys.exit(f"expected {ROWS:,} stored rows, found {stored:,}")
        results.append(("full import into SQLite", ROWS, min(full)))

    print(f"{'step':<42} {'rows':>10} {'seconds':>8} {'rows/s':>10}")
    for step, rows, seconds in results:
        print(f"{step:<42} {rows:>10,} {seconds:>8.2f} {rows / seconds:>10,.0f}")


if __name__ == "__main__":
    main()
