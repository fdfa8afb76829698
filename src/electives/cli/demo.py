"""The `demo` sub-command: the whole path on the synthetic university, through the same commands a user runs.

generate → import → train → evaluate → recommend for a student on record and for a new student who types grades.
Each step is the real sub-command (so the demo shows exactly what a registrar would see); the demo only adds the
ground truth the synthetic university knows, so the recommendations can be checked against true expected grades.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from electives.errors import DataError

_NEW_STUDENT_GRADES = 6  # how many grades the "new student" types in


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole path on the synthetic university (generate, import, train, evaluate, recommend)",
        description=(
            "Generate the synthetic university, import it through the real importer, choose and train a model, "
            "evaluate it against the baselines on each student's latest term, and recommend electives for one student on "
            "record and one new student who types their grades. The synthetic university knows every student's "
            "true expected grade, so the demo prints it beside each prediction."
        ),
    )
    p.add_argument("--dir", default="demo", metavar="DIR", help="where everything goes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="training seed (default: %(default)s)")
    p.add_argument("--data-seed", type=int, default=2017, metavar="N", help="university seed (default: %(default)s)")
    p.add_argument("--students", type=int, metavar="N", help="students in the university (default: synth's)")
    p.add_argument("--epochs", type=int, metavar="N", help="maximum training epochs (default: train's default)")
    p.add_argument("--student", metavar="ID", help="the student on record to recommend for (default: one picked)")
    p.add_argument("-k", type=int, default=5, metavar="N", help="recommendations per student (default: %(default)s)")
    p.add_argument("--skip-evaluate", action="store_true", help="do not run the evaluation step")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from electives.data.synth import import_flags

    if args.epochs is not None and args.epochs < 1:
        raise DataError(f"--epochs {args.epochs}: expected a positive number of epochs")
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    # The demo keeps its own pseudonym key beside its data unless the caller chose one.
    if not (os.environ.get("ELECTIVES_SECRET_KEY") or os.environ.get("ELECTIVES_KEY_FILE")):
        os.environ["ELECTIVES_KEY_FILE"] = str(root / "secret.key")
    university, db, model, report = (
        root / "university",
        f"sqlite:///{root / 'electives.db'}",
        root / "model",
        root / "report",
    )
    quiet = ["--quiet"] if args.quiet else []
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    started = time.perf_counter()

    _step(1, "generate the synthetic university")
    size = ["--students", str(args.students)] if args.students else []
    _run(["synth", "--out", str(university), "--seed", str(args.data_seed), *size])
    _step(2, "import its grade export and catalogue (re-importing the same file changes nothing)")
    catalog = str(university / "catalog.csv")
    report_file = str(root / "import-report.json")
    _run(
        [
            "import",
            str(university / "grades.csv"),
            "--db",
            db,
            *import_flags(),
            "--catalog",
            catalog,
            "--report",
            report_file,
        ]
    )
    _step(3, "train: choose the family on each student's latest term, then fit it on every grade")
    _run(["train", "--db", db, "--out", str(model), "--seed", str(args.seed), *epochs, *quiet])
    if not args.skip_evaluate:
        _step(4, "evaluate: each student's latest term held out; NeuMF, the baselines and the served choice")
        _run(["evaluate", "--db", db, "--out", str(report), "--seed", str(args.seed), *epochs, *quiet])

    truth = _truth(university / "truth.csv")
    known = args.student or _pick_known_student(university / "grades.csv")
    _step(5, f"recommend for student {known}, who is on record (history read from the database)")
    _run(["recommend", str(model), "--student", known, "--db", db, "-k", str(args.k)])
    _print_truth(model, db, truth, known, args.k)

    typed = _new_student_grades(truth, university / "catalog.csv", exclude=known)
    grades_file = root / "new-student-grades.csv"
    grades_file.write_text("course,grade\n" + "".join(f"{c},{g}\n" for c, g in typed[1]), encoding="utf-8")
    _step(6, f"recommend for a new student who types {len(typed[1])} grades ({grades_file}); nothing is stored")
    _run(["recommend", str(model), "--grades", str(grades_file), "--catalog", catalog, "-k", str(args.k)])
    _print_truth(model, None, truth, typed[0], args.k, grades=typed[1], catalog=university / "catalog.csv")

    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; everything is in {root}/", file=sys.stderr)
    if not args.skip_evaluate:
        print(f"evaluation report: {report}/report.md", file=sys.stderr)
    return 0


def _step(n: int, what: str) -> None:
    print(f"\n== {n}. {what}", flush=True)


def _run(argv: Sequence[str]) -> None:
    from electives.cli import build_parser

    args = build_parser().parse_args(list(argv))
    code = int(args.func(args) or 0)
    if code:
        raise DataError(f"step 'electives {argv[0]}' exited with status {code}")
    sys.stdout.flush()


def _truth(path: Path) -> dict[tuple[str, str], float]:
    import pandas as pd

    t = pd.read_csv(path, dtype={"student serial": str, "Crs Code": str})
    return dict(zip(zip(t["student serial"], t["Crs Code"], strict=True), t["expected_total"], strict=True))


def _pick_known_student(grades: Path) -> str:
    """A student part-way through their studies: enough grades to learn from, electives still to choose."""
    import pandas as pd

    g = pd.read_csv(grades, dtype={"student serial": str}, encoding="utf-8")
    counts = g.groupby("student serial")["Crs Code"].nunique().sort_index()
    mid = counts[(counts >= 10) & (counts <= 16)]
    return str((mid if len(mid) else counts).index[0])


def _new_student_grades(
    truth: dict[tuple[str, str], float], catalog: Path, exclude: str
) -> tuple[str, list[tuple[str, str]]]:
    """Grades a 'new student' types: the true expected grades (rounded, as a transcript would show them) of one
    synthetic student in their first core courses. Their true grades elsewhere let the demo check the picks."""
    import pandas as pd

    cat = pd.read_csv(catalog, dtype=str)
    core = [
        c for c, e in zip(cat["course_id"], cat["elective"], strict=True) if e == "no" and c.endswith(("101", "102"))
    ]
    students = sorted({s for s, _ in truth if s != exclude})
    who = students[len(students) // 2]
    typed = [(c, f"{round(truth[who, c]):d}") for c in core if (who, c) in truth][:_NEW_STUDENT_GRADES]
    return who, typed


def _print_truth(
    model: Path,
    db: str | None,
    truth: dict[tuple[str, str], float],
    student: str,
    k: int,
    *,
    grades: list[tuple[str, str]] | None = None,
    catalog: Path | None = None,
) -> None:
    """The synthetic university's true expected grade beside each recommendation: what no real registrar has."""
    from electives.serving.recommender import Recommender

    with Recommender.load(model, db, catalog=catalog) as rec:
        recs = rec.recommend(student, k=k) if grades is None else rec.recommend_for_grades(grades, k=k)
    rows = [(r.course, r.points, truth.get((student, r.course))) for r in recs]
    known = [(p, t) for _, p, t in rows if p is not None and t is not None]
    print("\n  ground truth (synthetic university only): predicted vs true expected grade")
    for course, p, t in rows:
        print(
            f"    {course:<8} predicted {p:5.1f}   true {t:5.1f}"
            if p is not None and t is not None
            else f"    {course}"
        )
    if known:
        mae = sum(abs(p - t) for p, t in known) / len(known)
        print(f"    mean |predicted − true| over these {len(known)}: {mae:.1f} points")
