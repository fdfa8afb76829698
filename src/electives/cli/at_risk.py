"""The `at-risk` sub-command: students predicted to fail the required courses they are due to take in a term."""

from __future__ import annotations

import argparse
import os
import textwrap
from typing import TYPE_CHECKING

from electives.defaults import DB_ENV  # no default database: an advisor's report never creates one
from electives.errors import DataError

if TYPE_CHECKING:
    from electives.serving.at_risk import AtRiskReport

_MOST_FLAGGED = 5  # courses named in the printed summary


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "at-risk",
        help="flag students predicted to fail the required courses they are due to take",
        description=textwrap.fill(
            "For each student and each required course (catalogue: elective = no) they are due to take in TERM — "
            "one of their programme's (the catalogue's programmes column where it names them, else inferred from "
            "the records: the catalogue's departments or co-enrolment, then the courses each programme's "
            "students take), not passed yet (a failed or withdrawn attempt "
            "leaves it due), prerequisites passed, offered then — "
            "the predicted grade, its interval (as recommend shows them; a course attempted before is predicted "
            "from the record folded in, its grade weighed as one noisy grade) and two flags: at_risk when the "
            "prediction is below a pass, high_confidence when the whole interval is. --students FILE takes an "
            "advisor's own list of student numbers (one per line), pseudonymised with the key, and labels the rows "
            "with those numbers; --all covers every student on record before TERM, labelled with pseudonyms. "
            "The record before TERM decides what is due. Writes the CSV and, beside it, a plot of the predicted "
            "grades per course; nothing is stored.",
            100,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  electives at-risk model/ --db sqlite:///electives.db --term 2025-Fall --students mine.txt "
            "--out at-risk.csv\n"
            "  electives at-risk model/ --db sqlite:///electives.db --term 2025-Fall --all --out at-risk.csv "
            "--pass C"
        ),
    )
    p.add_argument("model", metavar="MODEL", help="model artifact directory (from electives train)")
    p.add_argument("--db", metavar="URL", help=f"grade database (default: ${DB_ENV})")
    p.add_argument("--term", required=True, metavar="TERM", help="the term the courses are due in (e.g. 2025-Fall)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--students", metavar="FILE", help="student numbers, one per line (header 'student' allowed)")
    who.add_argument(
        "--all",
        action="store_true",
        help="every current student on record before TERM: a row in one of the last three main terms (rows by pseudonym)",
    )
    p.add_argument(
        "--include-inactive",
        action="store_true",
        help="with --all, also the students with no row in the last three main terms (graduated, left, on leave)",
    )
    p.add_argument("--out", required=True, metavar="FILE.csv", help="CSV to write; the plot goes beside it (.png)")
    p.add_argument("--catalog", metavar="FILE", help="course catalogue CSV (default: the courses stored in --db)")
    p.add_argument(
        "--pass",
        dest="pass_mark",
        metavar="MARK",
        help="the lowest passing grade, a mark or points on the scale (default: the scale's pass mark)",
    )
    p.set_defaults(func=run_at_risk)


def run_at_risk(args: argparse.Namespace) -> int:
    from electives.data.advisees import read_advisees
    from electives.data.catalog import read_catalog
    from electives.data.storage import open_store
    from electives.models.artifact import load_model
    from electives.serving.at_risk import find_at_risk
    from electives.serving.at_risk_files import plot_path, write_at_risk

    db = args.db or os.environ.get(DB_ENV)
    if not db:
        raise DataError(f"at-risk needs the grade database: give --db URL or set {DB_ENV}")
    if args.include_inactive and not args.all:
        raise DataError("--include-inactive goes with --all: an advisor's --students list is taken as it is")
    plot_path(args.out)  # a bad --out fails before any work is done
    advisees = read_advisees(args.students) if args.students else None
    catalog = read_catalog(args.catalog) if args.catalog else None
    model = load_model(args.model)
    with open_store(db) as store:
        report = find_at_risk(
            model,
            store,
            args.term,
            advisees=advisees,
            catalog=catalog,
            pass_mark=args.pass_mark,
            include_inactive=args.include_inactive,
        )
    csv_path, png = write_at_risk(report, args.out)
    print(format_summary(report))
    print(f"Wrote {csv_path} and {png}.")
    return 0


def format_summary(report: AtRiskReport) -> str:
    """The printed summary: who was covered, how many rows and flags, which courses are flagged most."""
    s = report.summary()
    scale = report.scale
    interval = f"{report.coverage:.0%} interval" if report.coverage is not None else "no interval (model has none)"
    lines = [
        f"At risk in {report.term}: pass {report.pass_points:g} ({scale.letter(report.pass_points)}) on scale "
        f"{scale.name}; {interval}; rows labelled with {report.labelled_by}."
    ]
    who = f"{s['students']} student{'s' if s['students'] != 1 else ''}"
    if report.labelled_by == "numbers given":
        who += f" listed, {s['on_record']} on record before {report.term}"
        if report.unknown:
            shown = ", ".join(report.unknown[:5]) + (", …" if len(report.unknown) > 5 else "")
            who += f" ({len(report.unknown)} not on record: {shown})"
        if report.duplicates:
            who += f"; {report.duplicates} repeated line{'s' if report.duplicates != 1 else ''} skipped"
    else:
        who += f" on record before {report.term}"
        if report.inactive and report.inactive_included:
            who += f" ({report.inactive} of them with no row since {report.active_since}, listed as asked)"
        elif report.inactive:
            who += (
                f" and current (a row since {report.active_since}); {report.inactive} more with none since then "
                "(graduated, left or on leave) not listed: --include-inactive lists them"
            )
    lines.append(
        f"Students: {who}; {s['with_rows']} due at least one required course, {s['without_rows']} none "
        f"(no rows); {s['folded_in']} folded in (not in the model)."
    )
    lines.append(_programmes_line(report))
    lines.append(
        f"Rows: {s['rows']} (student, required course due); at risk {s['at_risk']} "
        f"({s['at_risk_students']} students); high confidence {s['high_confidence']}."
    )
    if report.no_data:
        lines.append(
            f"{len(report.no_data)} required course{'s' if len(report.no_data) != 1 else ''} the model has no "
            f"data on ({', '.join(report.no_data[:8])}{', …' if len(report.no_data) > 8 else ''}): "
            f"{report.no_data_rows} due rows left out."
        )
    flagged = sorted((c for c in report.courses if c.at_risk), key=lambda c: (-c.at_risk, c.course))
    if flagged:
        lines.append(
            "Most flagged: " + ", ".join(f"{c.course} {c.at_risk} of {c.due}" for c in flagged[:_MOST_FLAGGED]) + "."
        )
    lines.extend(f"Warning: {w}." for w in report.warnings)
    return "\n".join(lines)


def _programmes_line(report: AtRiskReport) -> str:
    if not report.programmes:
        return "Programmes: the records show none, so every required course counts for every student."
    if report.programmes_from == "catalogue":
        line = f"Programmes: {report.programmes} named in the catalogue; each student's from their required courses"
    else:
        source = "the catalogue's departments" if report.programmes_from == "departments" else "co-enrolment"
        line = f"Programmes: {report.programmes} inferred from {source} and the courses their students take"
    if report.undecided:
        line += (
            f"; {report.undecided} student{'s' if report.undecided != 1 else ''} undecided between programmes "
            "(due: only what every programme they may be in requires)"
        )
    return line + "."
