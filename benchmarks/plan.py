"""Seat plans (`electives plan`, issue 16): how good, on the synthetic university's true grades, and how fast at
20,000 students × 200 electives.

Quality, per data seed: the synthetic university (default config: 2,000 students, 30 electives with seats) is
imported and the served model trained as `electives train` does by default; `build_plan` then plans 2023-Fall
(k = 2) for every student on record. The same students, eligible sets and seats are then planned four other ways,
and every plan is scored by the TRUE expected grade of the electives it gives:

- oracle: the exact plan on the true grades (the best any plan can do);
- served plan: `electives plan` (the exact plan on the served model's predictions);
- first come, first served: students arrive in random order and each takes their own top k by the served model's
  predictions among the courses with seats left (mean of 5 orders);
- random: students in random order each take k random eligible courses with seats left (mean of 5);
- own top k, no seats (reference, infeasible): everyone their own top k by prediction, ignoring seats.

Lift captured = (served − random) / (oracle − random) on the mean true grade per planned elective; target ≥ 85%.

Speed: `synth.write_large` writes 20,000 students × 200 electives (40 grades each, every course an elective with
seats from its largest class), imported with its catalogue and a biased-MF model trained (`--model mf`); then
`electives plan` runs end to end in process (load the model and grades, eligibility, scoring, the exact solve,
three files written, counts stored) and is timed: with the generated seats, and again with a quarter of them
(scarce: many more courses bind, the harder LP). Target ≤ 60 s.

    .venv/bin/python benchmarks/plan.py --threads 1
    .venv/bin/python benchmarks/plan.py --seeds 2017 --skip-large
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from electives.cli import main as electives
from electives.data.storage import Store
from electives.data.synth import SynthConfig, generate, import_flags, write, write_large
from electives.models.artifact import load_model
from electives.serving.allocation import allocate, first_come_first_served, own_top_k, random_plan
from electives.serving.plan import SeatPlan, build_plan

KEY = "plan-benchmark-key-0123456789abcdef"
TERM = "2023-Fall"
K = 2
REPEATS = 5  # arrival orders / random plans averaged
SCARCE = 0.25  # the large university's second run: this share of its seats


def run(*argv: object, quiet: bool = True) -> str:
    """`electives ARGV` in process; its standard output (a failure stops the benchmark)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = electives([str(a) for a in argv])
    if code:
        raise SystemExit(f"electives {argv[0]} exited with {code}:\n{out.getvalue()[-2000:]}")
    return out.getvalue() if not quiet else ""


def university_world(seed: int, work: Path) -> tuple[object, str, Path]:
    """The synthetic university of ``seed`` imported into SQLite, and the served model trained on it."""
    university = generate(SynthConfig(seed=seed))
    paths = write(university, work / "uni")
    db = f"sqlite:///{work / 'grades.db'}"
    run("import", paths["grades"], "--db", db, *import_flags(), "--catalog", paths["catalog"])
    run("train", "--db", db, "--out", work / "model", "--seed", "0", "--quiet")
    return university, db, work / "model"


def true_values(plan: SeatPlan, university, key) -> np.ndarray:
    """The plan's students × courses in true expected grade, NaN where the student may not take the course."""
    row = {key.pseudonym(str(s)): i for i, s in enumerate(university.student_ids)}
    col = {c: j for j, c in enumerate(university.course_ids)}
    truth = university.expected[np.ix_([row[p] for p in plan.students], [col[c] for c in plan.courses])]
    return np.where(np.isnan(plan.predicted), np.nan, truth)


def scored(assigned: np.ndarray, truth: np.ndarray, seats: np.ndarray) -> tuple[float, int, int]:
    """(mean true grade per planned elective, electives planned, courses over their seats)."""
    n = int(assigned.sum())
    return float(np.where(assigned, truth, 0.0).sum() / max(n, 1)), n, int((assigned.sum(axis=0) > seats).sum())


def quality(seed: int, threads: int) -> dict[str, object]:
    from electives.data.pseudonyms import Pseudonymiser

    with tempfile.TemporaryDirectory(prefix="plan-bench-") as tmp:
        started = time.perf_counter()
        university, db, model_dir = university_world(seed, Path(tmp))
        trained = time.perf_counter() - started
        model = load_model(model_dir)
        with Store(db) as store:
            started = time.perf_counter()
            plan = build_plan(model, store, term=TERM, k=K, threads=threads)
            planned = time.perf_counter() - started
    truth = true_values(plan, university, Pseudonymiser(KEY.encode()))
    seats, eligible = plan.seats, ~np.isnan(plan.predicted)
    rng = np.random.default_rng(seed)
    rows = {
        "oracle (true grades)": [scored(allocate(truth, K, seats).assigned, truth, seats)],
        "served plan (electives plan)": [scored(plan.assigned, truth, seats)],
        "first come, first served": [
            scored(first_come_first_served(plan.predicted, K, seats, rng.permutation(len(truth))), truth, seats)
            for _ in range(REPEATS)
        ],
        "random feasible plan": [scored(random_plan(eligible, K, seats, rng), truth, seats) for _ in range(REPEATS)],
        "own top k, no seats (infeasible)": [scored(own_top_k(plan.predicted, K), truth, seats)],
    }
    table = {name: tuple(np.mean([r[i] for r in runs]) for i in range(3)) for name, runs in rows.items()}

    def lift(name: str) -> float:
        return table[name][0] - table["random feasible plan"][0]

    return {
        "seed": seed,
        "model": model.family,
        "students": len(plan.students),
        "courses": len(plan.courses),
        "oversubscribed": int(sum(c.likely_full for c in plan.course_lines())),
        "table": table,
        "captured": lift("served plan (electives plan)") / lift("oracle (true grades)"),
        "fcfs_captured": lift("first come, first served") / lift("oracle (true grades)"),
        "gap": plan.allocation.gap,
        "train_s": trained,
        "plan_s": planned,
    }


def large(n_students: int, n_courses: int, work: Path, threads: int) -> list[dict[str, object]]:
    """Generate, import and train the large university (not timed), then time `electives plan` end to end: with
    the seats as generated, and again with a quarter of them (scarce seats: many more courses bind)."""
    from electives.data.catalog import Catalog, read_catalog

    paths = write_large(work / "uni", n_students=n_students, n_courses=n_courses, grades_per_student=40)
    db = f"sqlite:///{work / 'large.db'}"
    run("import", paths["grades"], "--db", db, *import_flags(), "--catalog", paths["catalog"])
    run("train", "--db", db, "--out", work / "model", "--model", "mf", "--seed", "0", "--quiet")
    catalog = read_catalog(paths["catalog"])
    timed = []
    for share in (1.0, SCARCE):
        with Store(db) as store:
            seats = (dataclasses.replace(c, capacity=round(share * c.capacity)) for c in catalog)
            store.save_catalog(Catalog(tuple(seats)))
        started = time.perf_counter()
        text = run(
            "plan", work / "model", "--db", db, "--term", TERM, "-k", K, "--out", work / "plan.csv",
            "--threads", threads, quiet=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        timed.append(
            {"students": n_students, "courses": n_courses, "share": share, "seconds": seconds, "summary": text}
        )
    return timed


def report(results: list[dict[str, object]], big: list[dict[str, object]]) -> None:
    for r in results:
        print(
            f"\n### data seed {r['seed']}: {r['students']:,} students, {r['courses']} electives open in {TERM} "
            f"({r['oversubscribed']} oversubscribed), k = {K}, served model {r['model']} "
            f"(trained in {r['train_s']:.0f} s; plan built in {r['plan_s']:.1f} s, dual gap {r['gap']:.2g})\n"
        )
        print("| plan | true mean grade per elective | electives planned | courses over seats |")
        print("|---|---:|---:|---:|")
        for name, (mean, n, over) in r["table"].items():
            print(f"| {name} | {mean:.2f} | {n:,.0f} | {over:.0f} |")
        print(f"\nlift captured (served plan): {r['captured']:.1%}; first come, first served: {r['fcfs_captured']:.1%}")
    for run_ in big:
        print(
            f"\n### {run_['students']:,} students × {run_['courses']} electives, {run_['share']:.0%} of the generated "
            f"seats: `electives plan` end to end in {run_['seconds']:.1f} s\n"
        )
        print("\n".join(f"    {line}" for line in str(run_["summary"]).strip().splitlines()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="*", default=[2017, 2018], help="synthetic university data seeds")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--large-students", type=int, default=20_000)
    p.add_argument("--large-courses", type=int, default=200)
    p.add_argument("--skip-large", action="store_true")
    p.add_argument("--work", type=Path, help="scratch folder for the large university (default: a temporary one)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["ELECTIVES_SECRET_KEY"] = KEY
    os.environ.pop("ELECTIVES_KEY_FILE", None)
    results = [quality(seed, args.threads) for seed in args.seeds]
    big = []
    if not args.skip_large:
        with tempfile.TemporaryDirectory(prefix="plan-large-") as tmp:
            work = args.work or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            big = large(args.large_students, args.large_courses, work, args.threads)
    report(results, big)


if __name__ == "__main__":
    main()
