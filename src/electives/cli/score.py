"""Scoring sub-commands: `score` (student–course pairs from a file, for anyone's own evaluator) and `score-all`
(the top-k untaken courses of every student into a Parquet file).

Distributed training needs no command of its own: `torchrun --standalone --nproc_per_node=N -m electives train …`
runs the ordinary `train` on N processes (see electives.models.distributed).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
from typing import Any

import numpy as np

from electives.defaults import DB_ENV
from electives.errors import DataError


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_score(subparsers)
    _register_score_all(subparsers)


def _register_score_all(subparsers: argparse._SubParsersAction) -> None:
    from electives.limits import MAX_CHUNK, MAX_SCORE_ALL_K

    p = subparsers.add_parser(
        "score-all",
        help="write the top-k courses of every student to a Parquet file",
        description=(
            "Score every student against every course with a trained model, in chunks of students, and write the "
            "k best courses each student has not taken as Parquet rows (student pseudonym, rank, course, score; "
            "the score is the predicted grade in the scale's points for explicit models, the family's ranking "
            "score for implicit ones). Courses on record in the database (--db, else $ELECTIVES_DB) are "
            "excluded. The file appears only when complete."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="model artifact directory (from electives train)")
    p.add_argument("--out", required=True, metavar="FILE.parquet", help="Parquet file to write")
    p.add_argument(
        "-k", type=int, default=10, metavar="N", help=f"courses per student, 1..{MAX_SCORE_ALL_K} (default: 10)"
    )
    p.add_argument(
        "--chunk-size", type=int, default=4096, metavar="N", help=f"students per chunk, 1..{MAX_CHUNK} (default: 4096)"
    )
    p.add_argument("--db", metavar="URL", help=f"database whose stored courses are excluded (default: ${DB_ENV})")
    p.add_argument("--no-exclude", action="store_true", help="rank every course, taken or not")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_score_all)


def run_score_all(args: argparse.Namespace) -> int:
    import torch

    from electives.models.artifact import load_model
    from electives.serving.scoring import write_top_k

    if args.threads is not None:
        if args.threads < 1:
            raise DataError(f"--threads {args.threads}: expected 1 or more")
        torch.set_num_threads(args.threads)
    if args.no_exclude and args.db:
        raise DataError("give either --db or --no-exclude, not both")
    model = load_model(args.model, device="cuda" if torch.cuda.is_available() else "cpu")
    exclude = None
    url = None if args.no_exclude else (args.db or os.environ.get(DB_ENV))
    if url:
        exclude = _taken(url, model)
    elif not args.no_exclude:
        print(
            f"score-all: no --db and no ${DB_ENV}: taken courses are not excluded (say --no-exclude to mean it)",
            file=sys.stderr,
        )
    points = (model.scale.low, model.scale.span) if model.mode == "explicit" and model.scale is not None else None
    report = write_top_k(
        model.fitted,
        args.out,
        model.student_ids,
        model.course_ids,
        args.k,
        exclude=exclude,
        chunk_size=args.chunk_size,
        points=points,
        progress=not args.quiet,
    )
    print(
        f"wrote {report.rows:,} rows ({report.students:,} students, top {args.k}) to {args.out} in "
        f"{report.seconds:.1f} s: {report.pairs_per_second / 1e6:.2f} M student–course pairs/s",
        file=sys.stderr,
    )
    return 0


def _taken(url: str, model: Any) -> Any:
    """The courses each of the model's students has on record in the database, as an ItemLookup."""
    from electives.data.interactions import Interactions
    from electives.data.storage import Store

    with Store(url) as store:
        rows = store.load_grade_rows(retakes="all").rows  # index arrays: no string per stored row
    students, courses = model.student_index(), model.course_index()
    s = np.array([students.get(p, -1) for p in rows.student_ids], dtype=np.int64)[rows.students]
    c = np.array([courses.get(code, -1) for code in rows.course_ids], dtype=np.int64)[rows.courses]
    known = (s >= 0) & (c >= 0)  # students or courses the model never saw cannot be ranked anyway
    s, c = s[known], c[known]
    return Interactions(s, c, None, np.zeros(len(s), np.int64), model.student_ids, model.course_ids).item_lookup()


def _register_score(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="score student–course pairs with a trained model",
        description=(
            "Read `student<TAB>course` lines (raw student ids, as in the registrar's export) and write them back "
            "with a score column: the predicted grade in the scale's points (explicit mode) or the model's "
            "ranking score (implicit mode: NeuMF's probability, EASE's or iALS's score), so anyone can check the metrics with their own evaluator."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="model artifact directory (from electives train)")
    p.add_argument("--pairs", required=True, metavar="FILE", help="tab-separated student, course lines ('-': stdin)")
    p.add_argument("--out", metavar="FILE", help="where to write the scored lines (default: stdout)")
    p.add_argument(
        "--skip-unknown",
        action="store_true",
        help="write an empty score for students or courses the model does not know instead of failing",
    )
    p.set_defaults(func=run_score)


def run_score(args: argparse.Namespace) -> int:
    from electives.data.pseudonyms import Pseudonymiser
    from electives.models.artifact import load_model

    model = load_model(args.model)
    pairs = _read_pairs(args.pairs)
    pseudo = Pseudonymiser.from_environment()
    s_index, c_index = model.student_index(), model.course_index()
    pseudonyms = {raw: pseudo.pseudonym(raw) for raw in {s for _, s, _ in pairs}}
    s = np.array([s_index.get(pseudonyms[raw], -1) for _, raw, _ in pairs], dtype=np.int64)
    c = np.array([c_index.get(course, -1) for _, _, course in pairs], dtype=np.int64)
    unknown = (s < 0) | (c < 0)
    if unknown.any() and not args.skip_unknown:
        i = int(np.argmax(unknown))
        line, _, course = pairs[i]
        what = "student" if s[i] < 0 else f"course {course!r}"
        raise DataError(
            f"{args.pairs}, line {line}: the model does not know this {what} "
            f"({int(unknown.sum()):,} unknown pairs in all); use --skip-unknown to score the rest"
        )
    scores = np.full(len(pairs), np.nan)
    ok = ~unknown
    raw_scores = model.fitted.predict(s[ok], c[ok]).astype(np.float64)
    if model.mode == "explicit" and model.scale is not None:
        raw_scores = model.scale.low + raw_scores * model.scale.span
    scores[ok] = raw_scores
    target = open(args.out, "w", encoding="utf-8", newline="") if args.out else contextlib.nullcontext(sys.stdout)  # noqa: SIM115
    with target as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        for (_, student, course), score in zip(pairs, scores, strict=True):
            writer.writerow([student, course, "" if np.isnan(score) else f"{score:.6g}"])
    if args.out:
        print(f"scored {int(ok.sum()):,} of {len(pairs):,} pairs into {args.out}", file=sys.stderr)
    return 0


def _read_pairs(path: str) -> list[tuple[int, str, str]]:
    try:
        source = contextlib.nullcontext(sys.stdin) if path == "-" else open(path, encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise DataError(f"cannot read --pairs {path}: {exc.strerror}") from None
    pairs = []
    try:
        with source as fh:
            for line_no, line in enumerate(fh, start=1):
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                parts = text.split("\t")
                if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
                    raise DataError(f"{path}, line {line_no}: expected 'student<TAB>course', got {text[:60]!r}")
                pairs.append((line_no, parts[0].strip(), parts[1].strip()))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    if not pairs:
        raise DataError(f"{path}: no pairs to score")
    return pairs
