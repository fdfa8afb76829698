"""The `recommend` sub-command: the top-k electives for a student on record (--student) or for entered grades."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import textwrap
from typing import TYPE_CHECKING

from electives.defaults import DB_ENV  # no default database here: recommending never creates one
from electives.errors import DataError, ElectivesError

if TYPE_CHECKING:
    from electives.serving.entry import GradeEntryError
    from electives.serving.results import Recommendations, WhyNot

_COURSE_HEADERS = frozenset({"course", "course_id", "course id", "course code", "code", "crs code", "crs"})
_GRADES_HINT = "(--grades FILE)"  # how to act on "enter the grades instead", in this command's flags
_GRADE_HEADERS = frozenset({"grade", "mark", "marks", "score", "total", "points", "result"})


def register(subparsers: argparse._SubParsersAction) -> None:
    from electives.limits import DEFAULT_K, MAX_K

    p = subparsers.add_parser(
        "recommend",
        help="recommend the electives a student is predicted to do best in",
        description=textwrap.fill(
            "Rank the electives a student may take by predicted grade, with an interval and a reason for each. "
            "--student ID looks the student up in the grade database (the model itself stores no grades); "
            "--grades FILE takes grades typed in (course,grade lines) for anyone else: they are folded into the "
            "model for this one answer and never stored.",
            100,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  electives recommend model/ --student 20190042 --db sqlite:///electives.db --term 2025-Fall\n"
            "  printf 'CS101,A-\\nMA101,B+\\n' | electives recommend model/ --grades - --catalog catalog.csv\n"
            "  electives recommend model/ --grades mine.csv --why-not CS310 --json"
        ),
    )
    p.add_argument("model", metavar="MODEL", help="model artifact directory (from electives train)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--student", metavar="ID", help="a student id as in the registrar's export (needs --db)")
    who.add_argument(
        "--grades", metavar="FILE", help="CSV/TSV of course,grade lines, header optional ('-': standard input)"
    )
    p.add_argument(
        "-k",
        type=int,
        default=DEFAULT_K,
        metavar="N",
        help=f"how many to recommend, 1 to {MAX_K} (default: %(default)s)",
    )
    p.add_argument("--db", metavar="URL", help=f"grade database (default: ${DB_ENV}, else none)")
    p.add_argument("--term", metavar="TERM", help="target term (e.g. 2025-Fall or Fall): only courses offered then")
    p.add_argument("--catalog", metavar="FILE", help="course catalogue CSV (default: the courses stored in --db)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--why-not", metavar="COURSE", help="also say why COURSE is not recommended")
    p.set_defaults(func=run_recommend)


def run_recommend(args: argparse.Namespace) -> int:
    from electives.limits import MAX_K
    from electives.serving.entry import GradeEntryError
    from electives.serving.recommender import Recommender, UnknownStudentError

    if not 1 <= args.k <= MAX_K:
        raise DataError(f"-k {args.k}: expected a number of recommendations from 1 to {MAX_K}")
    lines = read_grade_lines(args.grades) if args.grades is not None else None
    db = args.db or os.environ.get(DB_ENV) or None
    with Recommender.load(args.model, db, catalog=args.catalog) as recommender:
        if lines is None:
            if recommender.store is None:
                # In this command's flags: the library's own message names none (the web app shows it too).
                raise ElectivesError(
                    f"recommending by student id needs the grade database (--db URL or {DB_ENV}): the model stores "
                    "no grades, so it cannot tell which courses the student has passed; enter the grades instead "
                    f"{_GRADES_HINT}"
                )
            try:
                recs = recommender.recommend(args.student, k=args.k, target_term=args.term)
            except UnknownStudentError as exc:
                raise UnknownStudentError(f"{exc} {_GRADES_HINT}") from None
        else:
            try:
                recs = recommender.recommend_for_grades(
                    [(course, mark) for _, course, mark in lines], k=args.k, target_term=args.term
                )
            except GradeEntryError as exc:
                raise DataError(grade_entry_message(args.grades, lines, exc)) from None
    why = recs.why_not(args.why_not) if args.why_not else None
    if args.json:
        out = recs.to_dict()
        if why is not None:
            out["why_not"] = {"course": why.course, "reason": why.reason, "message": why.message}
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print(format_text(recs, why))
    return 0


def grade_entry_message(path: str, lines: list[tuple[int, str, str]], exc: GradeEntryError) -> str:
    """An entered grade's error in the file's line numbers; a course entered twice names both lines."""
    if exc.other is None:
        return f"{_name(path)}, line {lines[exc.position][0]}: {exc}"
    first, later = lines[exc.other][0], lines[exc.position][0]
    return f"{_name(path)}, lines {first} and {later}: course {exc.course.strip()!r} is entered twice; {exc.hint}"


def read_grade_lines(path: str) -> list[tuple[int, str, str]]:
    """``(line number, course, mark)`` from a CSV/TSV/semicolon file of ``course,grade`` lines; a first line
    naming its columns (course, grade, ...) is a header and skipped."""
    name = _name(path)
    if path == "-":
        text = sys.stdin.read()
    else:
        from electives.data.text_files import read_text_file

        text = read_text_file(path, what="grades file", shown=name)
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not numbered:
        raise DataError(f"{name}: no grades (expected lines of course,grade)")
    first = numbered[0][1]
    delimiter = "\t" if "\t" in first else ";" if ";" in first and "," not in first else ","
    shown = {"\t": "<TAB>", ";": ";", ",": ","}[delimiter]
    out: list[tuple[int, str, str]] = []
    for i, (n, line) in enumerate(numbered):
        cells = [c.strip() for c in next(csv.reader([line], delimiter=delimiter))]
        if (
            i == 0
            and cells
            and (cells[0].lower() in _COURSE_HEADERS or (len(cells) > 1 and cells[1].lower() in _GRADE_HEADERS))
        ):
            continue
        while len(cells) > 2 and not cells[-1]:
            cells.pop()  # trailing empty cells, as spreadsheets write them
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise DataError(f"{name}, line {n}: expected course{shown}grade, got {line.strip()[:60]!r}")
        out.append((n, cells[0], cells[1]))
    if not out:
        raise DataError(f"{name}: no grades after the header (expected lines of course,grade)")
    return out


def format_text(recs: Recommendations, why: WhyNot | None = None) -> str:
    """The recommendations as cards for a terminal."""
    n = recs.grades_used
    if recs.basis == "trained":
        basis = "from the trained model"
    elif recs.mode == "explicit":
        basis = f"from {n} grade{'s' if n != 1 else ''}"
    else:
        basis = f"from {n} course{'s' if n != 1 else ''} on record"
    context = [basis]
    if recs.target_term:
        context.append(f"term {recs.target_term}")
    if recs.mode == "explicit" and recs.scale is not None:
        context.append(f"grades on scale {recs.scale.name}")
    lines = [f"Top {len(recs.items)} electives ({'; '.join(context)})"]
    if recs.note:
        lines.append(recs.note)
    for item in recs.items:
        lines.append("")
        lines.append(f"{item.rank:2d}. {item.course}  {item.name}")
        if item.points is not None:
            predicted = f"    Predicted {item.letter} ({_num(item.points)})"
            if item.interval is not None and recs.coverage is not None:
                lo, hi = item.interval
                predicted += f", {recs.coverage:.0%} interval {_num(lo)}–{_num(hi)}"
            lines.append(predicted)
        else:
            lines.append(f"    Score {item.score:.3f} (no grade predicted)")
        if item.likely_full:
            lines.append("    Likely full: more students are predicted to want it than it has seats.")
        if item.explanation:
            lines.append(f"    {item.explanation}")
    if not recs.items:
        lines.append("")
        lines.append("No course is eligible.")
    lines.append("")
    left_out = len(recs.excluded)
    summary = f"{recs.eligible} eligible course{'s' if recs.eligible != 1 else ''}; {left_out} left out"
    if left_out and why is None:
        summary += " (see why with --why-not COURSE)"
    lines.append(summary + ".")
    if recs.ignored:
        lines.append("The model has no data on " + ", ".join(recs.ignored) + "; they count only for eligibility.")
    if why is not None:
        lines.append(f"Why not {why.course}? {why.message}")
    return "\n".join(lines)


def _name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _num(x: float) -> str:
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"
