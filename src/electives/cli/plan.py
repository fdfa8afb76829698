"""The `plan` sub-command: a term's seat plan for the whole cohort, written as CSV files and a chart, and its
per-course counts stored so that recommendations can say "likely full"."""

from __future__ import annotations

import argparse
import os
import textwrap
from typing import TYPE_CHECKING

from electives.defaults import DB_ENV
from electives.errors import DataError

if TYPE_CHECKING:
    from electives.data.advisees import Advisees
    from electives.serving.plan import SeatPlan
    from electives.serving.plan_report import PlanFiles

DEFAULT_PLAN_K = 2
_SHOWN_FULL = 8  # oversubscribed courses named in the summary


def register(subparsers: argparse._SubParsersAction) -> None:
    from electives.limits import MAX_K

    p = subparsers.add_parser(
        "plan",
        help="plan a term's electives for the whole cohort within each course's seats",
        description=textwrap.fill(
            "Give every student on record up to k electives for a term — ones they may take (not passed yet, "
            "prerequisites passed, offered then) — so that no course exceeds its seats (the catalogue's capacity "
            "column; empty: unlimited) and the cohort's total predicted grade is as high as possible. The plan is "
            "solved exactly (an LP with HiGHS, its optimality proved by a dual bound). Writes the planned "
            "electives (--out, one row per student and elective), a per-course table beside it (-courses.csv: "
            "demand if nobody had seats, seats, allocated, mean predicted grade) and a demand-vs-seats chart "
            "(-seats.png), and stores the per-course counts (no student) in the database, so that recommendations "
            "for the term can say when a course is likely full.",
            100,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  electives plan model/ --db sqlite:///electives.db --term 2025-Fall --out plan.csv\n"
            "  electives plan model/ --db … --term 2025-Fall -k 3 --students my-advisees.txt --out mine.csv"
        ),
    )
    p.add_argument("model", metavar="MODEL", help="model artifact directory (from electives train)")
    p.add_argument("--db", metavar="URL", help=f"grade database (default: ${DB_ENV})")
    p.add_argument("--term", required=True, metavar="TERM", help="the term planned (e.g. 2025-Fall, or Fall)")
    p.add_argument(
        "-k",
        type=int,
        default=DEFAULT_PLAN_K,
        metavar="N",
        help=f"electives per student, 1 to {MAX_K} (default: %(default)s)",
    )
    p.add_argument(
        "--students",
        metavar="FILE",
        help="one student number per line: write only these students' rows, labelled with these numbers (the "
        "plan is still the whole cohort's: the seats are shared); numbers not on record are counted",
    )
    p.add_argument("--out", required=True, metavar="PLAN.csv", help="where the planned electives go")
    p.add_argument("--catalog", metavar="FILE", help="course catalogue CSV with seats (default: the courses in --db)")
    p.add_argument("--no-save", action="store_true", help="do not store the per-course counts in the database")
    p.add_argument(
        "--include-inactive",
        action="store_true",
        help="also plan for students with no row in the last three main terms (by default taken to have left)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the solver's sample (default: 0)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch while scoring (default: all)")
    p.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from electives.data.advisees import read_advisees
    from electives.data.catalog import read_catalog
    from electives.data.storage import open_store
    from electives.limits import MAX_K
    from electives.models.artifact import load_model
    from electives.serving.plan import build_plan
    from electives.serving.plan_report import plan_paths, write_plan

    if not 1 <= args.k <= MAX_K:
        raise DataError(f"-k {args.k}: expected a number of electives per student from 1 to {MAX_K}")
    if args.threads is not None and args.threads < 1:
        raise DataError(f"--threads {args.threads}: expected 1 or more")
    db = args.db or os.environ.get(DB_ENV)
    if not db:
        raise DataError(f"a plan needs the grade database: give --db URL or set {DB_ENV}")
    plan_paths(args.out)  # a bad --out fails before the work
    advisees = read_advisees(args.students) if args.students else None
    catalog = read_catalog(args.catalog) if args.catalog else None
    model = load_model(args.model)
    with open_store(db) as store:
        plan = build_plan(
            model,
            store,
            term=args.term,
            k=args.k,
            catalog=catalog,
            seed=args.seed,
            threads=args.threads,
            include_inactive=args.include_inactive,
        )
        labels = None if advisees is None else advisees.labels()
        files = write_plan(plan, args.out, labels=labels)
        if not args.no_save:
            store.save_plan(plan.term, plan.seat_counts())
    print(format_summary(plan, files, advisees, saved=not args.no_save))
    return 0


def format_summary(plan: SeatPlan, files: PlanFiles, advisees: Advisees | None, *, saved: bool) -> str:
    """What the plan did, in a few lines for a terminal."""
    a = plan.allocation
    per_student = plan.assigned.sum(axis=1)
    full = sum(int(n) == plan.k for n in per_student)
    lines = [
        f"Plan for {plan.term}, up to {plan.k} elective{'s' if plan.k != 1 else ''} each: "
        f"{len(plan.students):,} students, {len(plan.courses)} electives open to them"
        + (f" ({len(plan.unplanned):,} on record with none open)" if plan.unplanned else "")
        + (
            f"; {len(plan.inactive):,} on record with no row since {plan.active_since} taken to have left, not "
            "planned (--include-inactive plans them)"
            if plan.inactive
            else ""
        ),
        f"Allocated {int(plan.assigned.sum()):,} electives: {full:,} students got {plan.k}, "
        f"{len(plan.students) - full:,} fewer ({int((per_student == 0).sum()):,} none); "
        f"{plan.over_capacity} courses over capacity, {plan.at_capacity} at capacity.",
        f"Total predicted grade {a.objective:,.1f} points (mean {a.objective / max(1, int(plan.assigned.sum())):.2f}"
        f" per elective); optimal: no plan can exceed {a.bound:,.1f} (gap {max(a.gap, 0.0):.2g}; {a.rounds} LP "
        f"round{'s' if a.rounds != 1 else ''}, {a.seconds:.1f} s).",
    ]
    over = sorted((c for c in plan.course_lines() if c.likely_full), key=lambda c: c.seats - c.demand)
    if over:
        named = ", ".join(f"{c.course} ({c.demand} for {c.seats} seats)" for c in over[:_SHOWN_FULL])
        more = f" and {len(over) - _SHOWN_FULL} more" if len(over) > _SHOWN_FULL else ""
        lines.append(f"Demand exceeds seats in {len(over)} courses: {named}{more}.")
    if advisees is not None:
        unknown = advisees.unknown(plan.on_record)
        no_open = sum(p in set(plan.unplanned) for p in advisees.pseudonyms)
        gone = sum(p in set(plan.inactive) for p in advisees.pseudonyms)
        lines.append(
            f"--students: {len(advisees.given):,} numbers, {len(unknown):,} not on record (counted, not planned)"
            + (f", {no_open:,} with no elective open" if no_open else "")
            + (f", {gone:,} taken to have left (not planned)" if gone else "")
            + (f", {advisees.duplicates} repeated lines skipped" if advisees.duplicates else "")
            + "."
        )
    lines.append(f"Wrote {files.plan} ({files.rows:,} rows), {files.courses.name} and {files.chart.name}.")
    if saved:
        lines.append(
            f"Stored the per-course counts for {plan.term} (no student in them): recommendations say "
            "'likely full' where demand exceeds seats."
        )
    return "\n".join(lines)
