"""Which column(s) hold each field: ``--map`` expressions (``dept+level`` joins columns), else header names
guessed from :data:`GUESSES`. Names match case-insensitively, then ignoring ``_ - .``."""

from __future__ import annotations

import re
from collections.abc import Mapping

from electives.data.importing.options import FIELDS, REQUIRED_FIELDS
from electives.errors import DataError

# Header names tried for each unmapped field, compared after _loose() normalisation.
GUESSES: dict[str, tuple[str, ...]] = {
    "student": (
        "student", "student id", "studentid", "student no", "student number", "student serial", "student code",
        "sid", "stu id", "user", "user id", "userid",
    ),
    "course": (
        "course", "course id", "courseid", "course code", "coursecode", "course no", "course number", "crs",
        "crs code", "crs id", "subject code", "item", "item id",
    ),
    "term": ("term", "semester", "sem", "term code", "academic term"),
    "grade": (
        "grade", "mark", "marks", "total", "score", "final grade", "final mark", "grade point", "gradepoint",
        "grade points", "gpa", "points", "result",
    ),
    "course_name": ("course name", "coursename", "course title", "title", "crs name"),
}  # fmt: skip


def _norm(name: str) -> str:
    return " ".join(name.lower().split())


def _loose(name: str) -> str:
    return " ".join(re.sub(r"[_\-.]+", " ", name.lower()).split())


def _find_column(header: list[str], name: str) -> list[int]:
    for norm in (_norm, _loose):
        hits = [i for i, h in enumerate(header) if norm(h) == norm(name)]
        if hits:
            return hits
    return []


def resolve_fields(header: list[str], mapping: Mapping[str, str], *, name: str) -> dict[str, list[int]]:
    """field → indexes of its column(s) (several for ``dept+level``). Raises naming the missing column and
    listing the file's columns."""
    listing = ", ".join(repr(h) for h in header)
    fields: dict[str, list[int]] = {}
    used: set[int] = set()
    for fname, expr in mapping.items():
        if not expr:
            continue  # --map grade= : the file has no such column
        idx = _expr_columns(header, expr)
        if idx is None:
            part, hits = _missing_part(header, expr)
            problem = f"column {part!r} appears {hits} times" if hits else f"no column {part!r}"
            raise DataError(f"{name}: --map {fname}={expr}: {problem}; the file's columns are {listing}")
        fields[fname] = idx
        used.update(idx)
    for fname in FIELDS:
        if fname in mapping:
            continue
        hits = sorted({i for guess in GUESSES[fname] for i in range(len(header)) if _loose(header[i]) == guess} - used)
        if len(hits) > 1:
            cols = " and ".join(repr(header[i]) for i in hits)
            raise DataError(
                f"{name}: cannot tell which column holds the {fname.replace('_', ' ')}: {cols}; "
                f"choose one with --map {fname}=COLUMN"
            )
        if hits:
            fields[fname] = hits[:1]
            used.add(hits[0])
    for fname in REQUIRED_FIELDS:
        if fname not in fields:
            raise DataError(
                f"{name}: no {fname} column (looked for {', '.join(GUESSES[fname][:6])} ...); the file's columns "
                f"are {listing}; name it with --map {fname}=COLUMN"
            )
    return fields


def _expr_columns(header: list[str], expr: str) -> list[int] | None:
    """Column indexes of ``a+b`` (a whole name containing '+' wins over splitting it)."""
    whole = _find_column(header, expr)
    if len(whole) == 1:
        return whole
    parts = [p.strip() for p in expr.split("+")]
    out = []
    for part in parts:
        hits = _find_column(header, part)
        if len(hits) != 1:
            return None
        out.append(hits[0])
    return out


def _missing_part(header: list[str], expr: str) -> tuple[str, int]:
    """The first part of ``expr`` that names no single column, and how many columns it names."""
    for part in (p.strip() for p in expr.split("+")):
        hits = len(_find_column(header, part))
        if hits != 1:
            return part, hits
    return expr, 0  # pragma: no cover
