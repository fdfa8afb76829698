"""The import options as given on the command line: fields, retake policies, sizes, ``--map`` expressions,
placeholders and delimiters. Each parser raises with the flag's name in the message."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from electives.errors import DataError

RetakePolicy = Literal["latest", "best", "all"]
RETAKE_POLICIES = ("latest", "best", "all")
FIELDS = ("student", "course", "term", "grade", "course_name")
REQUIRED_FIELDS = ("student", "course")

DEFAULT_PLACEHOLDERS = ("777", "888", "999")
DEFAULT_MAX_SIZE = 100 * 2**20  # bytes on disk (compressed size for gzip files)
# Records split and coded at a time: about 50 MB of Python strings for a short row, whatever the file's size.
DEFAULT_CHUNK_ROWS = 100_000

# Names of delimiters in the printed summary, and the names accepted by --delimiter.
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe", "whitespace": "whitespace"}
_DELIMITER_ALIASES = {
    "comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|", "whitespace": "whitespace",
    "space": "whitespace", " ": "whitespace", "ws": "whitespace",
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int | None:
    """``100M`` → 104857600 (binary units K, M, G, T; an optional B/iB); ``none`` → None (no limit)."""
    if text.strip().lower() in ("none", "off", "unlimited"):
        return None
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size (expected e.g. 500K, 100M, 2G or none)")
    factor = 1024 ** " kmgt".index((m[2] or " ").lower())
    return int(float(m[1]) * factor)


def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """``["course=dept+level", "student=student serial"]`` → ``{"course": "dept+level", ...}``.

    An empty EXPR (``--map grade=``) means the file has no such column: e.g. import a graded file as
    enrolment-only. Only term, grade and course_name may be emptied."""
    mapping: dict[str, str] = {}
    for item in items:
        name, sep, expr = item.partition("=")
        name = name.strip().lower()
        if not sep:
            raise DataError(f"--map {item!r}: expected FIELD=COLUMN, e.g. --map course=dept+level")
        if name not in FIELDS:
            raise DataError(f"--map {item!r}: unknown field {name!r}; expected one of {', '.join(FIELDS)}")
        if name in mapping:
            raise DataError(f"--map: field {name!r} is mapped twice")
        if not expr.strip() and name in REQUIRED_FIELDS:
            raise DataError(f"--map {item!r}: the {name} field is required and needs a column")
        mapping[name] = expr.strip()
    return mapping


def parse_placeholders(text: str) -> tuple[str, ...]:
    """``"777,888,999"`` → ``("777", "888", "999")``; an empty string turns the rule off."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def parse_delimiter(text: str) -> str:
    """A delimiter as given on the command line: one character, or comma/semicolon/tab/pipe/whitespace."""
    if text in _DELIMITER_ALIASES:
        return _DELIMITER_ALIASES[text]
    if text.lower() in _DELIMITER_ALIASES:
        return _DELIMITER_ALIASES[text.lower()]
    if len(text) == 1 and text not in '\r\n"':
        return text
    raise DataError(f"--delimiter {text!r}: expected one character or one of comma, semicolon, tab, pipe, whitespace")
