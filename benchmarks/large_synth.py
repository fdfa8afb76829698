"""A large synthetic university end to end: generate, import, train one epoch, batch-score; time and peak memory.

Default size: 200,000 students × 2,000 courses × 40 grades each (8 M grade rows), from `synth.write_large`. Each
step runs as its own `electives` process under /usr/bin/time -v, which reports its wall time and peak resident
memory (targets, issue 15: import ≤ 2 GB and train ≤ 3 GB; the import reads, cleans and stores in chunks and
training builds its index arrays without a string per row).

    .venv/bin/python benchmarks/large_synth.py --work /tmp/large            # full size (long: ~8 M rows)
    .venv/bin/python benchmarks/large_synth.py --students 20000 --work /tmp/large-small
    .venv/bin/python benchmarks/large_synth.py --work /tmp/large --reuse --threads 1 --train-args "--model neumf"
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

AAST_FLAGS = [
    "--map", "student=student serial", "--map", "term=Year+term", "--map", "course=Crs Code",
    "--map", "course_name=Course Name", "--map", "grade=total", "--scale", "percent", "--max-size", "4G",
]  # fmt: skip


def _timed(name: str, cmd: list[str], env: dict[str, str], log: Path) -> dict[str, object]:
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    with open(log, "w") as fh:
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, stdout=fh, stderr=subprocess.STDOUT)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        print(text[-3000:])
        raise SystemExit(f"{name} failed with exit code {proc.returncode}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text).group(1)
    secs = sum(float(x) * 60**i for i, x in enumerate(reversed(wall.split(":"))))
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", text).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", text).group(1))
    row = {"step": name, "wall_s": secs, "cpu_s": user + system, "peak_rss_gb": rss_kb / 1024**2}
    print(f"   {secs:.0f} s wall, {user + system:.0f} s CPU, peak {rss_kb / 1024**2:.2f} GB", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="scratch directory (emptied first)")
    p.add_argument("--students", type=int, default=200_000)
    p.add_argument("--courses", type=int, default=2_000)
    p.add_argument("--grades", type=int, default=40, help="grades per student")
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--chunk-size", type=int, default=4096, help="score-all students per chunk")
    p.add_argument("--train-args", default="", help="extra `electives train` flags, e.g. '--mode implicit'")
    p.add_argument(
        "--skip-import",
        action="store_true",
        help="train straight from grades.csv (--data) and score without exclusions, skipping the SQLite import",
    )
    p.add_argument("--reuse", action="store_true", help="keep an already generated WORK/uni/grades.csv")
    args = p.parse_args()
    grades = args.work / "uni" / "grades.csv"
    reuse = args.reuse and grades.exists()
    if not reuse:
        shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("ELECTIVES_SECRET_KEY", "large-synth-benchmark-key-0123456789abcdef")
    py = sys.executable
    db = f"sqlite:///{args.work / 'large.db'}"
    rows = []
    gen = (
        "import sys; from electives.data.synth import write_large; "
        f"write_large(sys.argv[1], {args.students}, {args.courses}, {args.grades})"
    )
    if not reuse:
        rows.append(_timed("generate", [py, "-c", gen, str(args.work / "uni")], env, args.work / "generate.log"))
    with open(grades, "rb") as fh:
        n_rows = sum(1 for _ in fh) - 1
    size_mb = grades.stat().st_size / 1e6
    print(f"   {n_rows:,} grade rows, {size_mb:.0f} MB CSV", flush=True)
    electives = [py, "-m", "electives"]
    source = ["--data", str(grades), *AAST_FLAGS] if args.skip_import else ["--db", db]
    if not args.skip_import:
        cmd = [*electives, "import", str(grades), "--db", db, *AAST_FLAGS]
        rows.append(_timed("import", cmd, env, args.work / "import.log"))
    train = [*electives, "train", *source, "--out", str(args.work / "model"), "--epochs", "1", "--quiet"]
    train += ["--batch-size", str(args.batch_size), "--threads", str(args.threads), *args.train_args.split()]
    rows.append(_timed("train 1 epoch", train, env, args.work / "train.log"))
    out = args.work / "top10.parquet"
    exclude = ["--no-exclude"] if args.skip_import else ["--db", db]
    score = [*electives, "score-all", str(args.work / "model"), "--out", str(out), *exclude, "--quiet"]
    score += ["--threads", str(args.threads), "--chunk-size", str(args.chunk_size)]
    rows.append(_timed("score-all top-10", score, env, args.work / "score.log"))
    print((args.work / "score.log").read_text().splitlines()[0])

    table = pd.DataFrame(rows)
    table.loc[table["step"] == "import", "rows/s"] = n_rows / table.loc[table["step"] == "import", "wall_s"]
    pairs = args.students * args.courses
    table.loc[table["step"] == "score-all top-10", "pairs/s"] = (
        pairs / table.loc[table["step"] == "score-all top-10", "wall_s"]
    )
    print(f"\n{args.students:,} students × {args.courses:,} courses × {args.grades} grades = {n_rows:,} rows\n")
    print(table.to_string(index=False, float_format=lambda x: f"{x:,.2f}"))


if __name__ == "__main__":
    main()
