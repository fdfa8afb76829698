"""Course catalogue: which courses exist, which are electives, their prerequisites and when they are offered.

The catalogue is a CSV file with the header::

    course_id,name,elective,prerequisites,credits,department,terms_offered,description,capacity,programmes

Only ``course_id`` and ``name`` are required. ``elective`` is yes/no/true/false/1/0/y/n (empty: unknown),
``prerequisites`` and ``terms_offered`` are ``;``-separated (course ids; season names such as ``Fall`` or term
labels such as ``2021-Fall``). ``capacity`` is the seats of one offering, a whole number ≥ 0 (empty: unlimited);
a course offered in several terms has that many seats in each. ``programmes`` (``;``-separated names) says which
programmes require a required course — what ``at-risk`` counts as due for a student of each — where the registrar
knows it (otherwise programmes are inferred from the records: :mod:`~electives.data.programmes`); on an elective it
is kept but not used. Every problem is a :class:`~electives.errors.DataError` naming the line (the header is line
1), the column and what was expected.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from electives.data.terms import TermError, parse_term
from electives.data.text_files import read_text_file
from electives.errors import DataError

COLUMNS = (
    "course_id",
    "name",
    "elective",
    "prerequisites",
    "credits",
    "department",
    "terms_offered",
    "description",
    "capacity",
    "programmes",
)
REQUIRED = ("course_id", "name")
_TRUE = frozenset({"yes", "y", "true", "t", "1"})
_FALSE = frozenset({"no", "n", "false", "f", "0"})
_WHOLE = re.compile(r"(\d{1,9})(?:\.0*)?")  # seats: digits only (no sign, exponent or thousands separator)


@dataclass(frozen=True)
class Course:
    """One course. ``name`` is None only for courses known from grade files alone (never from a catalogue)."""

    code: str
    name: str | None
    elective: bool | None = None
    prerequisites: tuple[str, ...] = ()
    credits: float | None = None
    department: str | None = None
    terms_offered: tuple[str, ...] = ()  # canonical: seasons as "Fall", terms as "2021-Fall"
    description: str | None = None
    capacity: int | None = None  # seats per offering; None: unlimited
    programmes: tuple[str, ...] = ()  # the programmes that require it, where the catalogue names them

    def offered_in(self, term: str) -> bool | None:
        """Whether the course runs in ``term`` (a season such as ``Fall`` or a term such as ``2024-Fall``);
        None when the catalogue does not say (no ``terms_offered``, or a numbered term against seasons)."""
        if not self.terms_offered:
            return None
        query = _offering(term)
        if query is None:
            raise DataError(f"{term!r} is not a season (e.g. Fall, Spring) or a term (e.g. 2024-Fall)")
        entries = [o for o in map(_offering, self.terms_offered) if o is not None]
        q_key, q_season = query
        if q_key is None:  # a bare season: any entry in that season counts
            return any(season == q_season for _, season in entries)
        if any(key == q_key for key, _ in entries):
            return True
        season_only = [season for key, season in entries if key is None]
        if q_season is None and season_only:
            return None  # "2024-1" against "Fall;Spring": the numbering says nothing about seasons
        return q_season in season_only


@dataclass(frozen=True)
class Catalog:
    """All courses of a catalogue, in file order, with lookups by code."""

    courses: tuple[Course, ...]
    source: str = ""
    _by_code: MappingProxyType[str, Course] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_code", MappingProxyType({c.code: c for c in self.courses}))

    def __len__(self) -> int:
        return len(self.courses)

    def __iter__(self) -> Iterator[Course]:
        return iter(self.courses)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __getitem__(self, code: str) -> Course:
        try:
            return self._by_code[code]
        except KeyError:
            raise KeyError(f"course {code!r} is not in the catalogue") from None

    def get(self, code: str) -> Course | None:
        return self._by_code.get(code)

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(self._by_code)

    @property
    def electives(self) -> tuple[Course, ...]:
        """Courses marked elective (unknown counts as not elective)."""
        return tuple(c for c in self.courses if c.elective)


def read_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalogue CSV (UTF-8 with or without BOM, else latin-1)."""
    return parse_catalog(read_text_file(path, what="catalogue file"), source=str(path))


def parse_catalog(text: str, source: str = "<catalogue>") -> Catalog:
    """Validate catalogue CSV text; see :func:`read_catalog`."""
    if not text.strip():
        raise DataError(f"{source}: the catalogue is empty (expected a header line with {', '.join(REQUIRED)})")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(
            f"{source}: line 1: missing required column(s) {', '.join(missing)} (found: {', '.join(header)})"
        )
    dupes = sorted({h for h in header if h and header.count(h) > 1})
    if dupes:
        raise DataError(f"{source}: line 1: column(s) {', '.join(dupes)} appear more than once")
    index = {name: header.index(name) for name in COLUMNS if name in header}

    rows: list[tuple[int, dict[str, str]]] = []
    line = reader.line_num  # physical lines, so quoted multi-line descriptions keep later line numbers right
    for record in reader:
        start, line = line + 1, reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        rows.append((start, {name: (record[i].strip() if i < len(record) else "") for name, i in index.items()}))
    if not rows:
        raise DataError(f"{source}: the catalogue has a header but no courses")

    lines: dict[str, int] = {}
    courses: list[Course] = []
    for ln, row in rows:
        courses.append(_course(row, ln, lines, source))
        lines[courses[-1].code] = ln

    for course in courses:
        for pre in course.prerequisites:
            if pre not in lines:
                raise DataError(
                    f"{source}: line {lines[course.code]}, column prerequisites: {pre!r} (a prerequisite of "
                    f"{course.code!r}) is not a course in the catalogue"
                )
    cycle = _find_cycle({c.code: c.prerequisites for c in courses})
    if cycle:
        raise DataError(
            f"{source}: line {lines[cycle[0]]}, column prerequisites: prerequisite cycle "
            f"{' → '.join(cycle)} (expected prerequisites to form no loop)"
        )
    return Catalog(tuple(courses), source=source)


def _course(row: dict[str, str], ln: int, seen: dict[str, int], source: str) -> Course:
    def fail(column: str, message: str) -> DataError:
        return DataError(f"{source}: line {ln}, column {column}: {message}")

    code = row["course_id"]
    if not code:
        raise fail("course_id", "expected a course id, got an empty value")
    if code in seen:
        raise fail("course_id", f"duplicate course id {code!r} (first on line {seen[code]})")
    if not row["name"]:
        raise fail("name", f"expected a course name for {code!r}, got an empty value")

    elective: bool | None = None
    if flag := row.get("elective", ""):
        if flag.lower() in _TRUE:
            elective = True
        elif flag.lower() in _FALSE:
            elective = False
        else:
            raise fail("elective", f"expected yes/no/true/false/1/0/y/n or empty, got {flag!r}")

    credits: float | None = None
    if raw := row.get("credits", ""):
        try:
            credits = float(raw.replace(",", "."))
        except ValueError:
            credits = math.nan
        if not math.isfinite(credits) or credits < 0:
            raise fail("credits", f"expected a non-negative number, got {raw!r}")

    prerequisites = tuple(dict.fromkeys(p.strip() for p in row.get("prerequisites", "").split(";") if p.strip()))

    terms: list[str] = []
    for entry in (t.strip() for t in row.get("terms_offered", "").split(";")):
        if not entry:
            continue
        canonical = canonical_term(entry)
        if canonical is None:
            raise fail(
                "terms_offered", f"expected a season (e.g. Fall, Spring) or a term (e.g. 2024-Fall), got {entry!r}"
            )
        terms.append(canonical)

    capacity: int | None = None
    if raw := row.get("capacity", ""):
        capacity = _whole_number(raw)
        if capacity is None:
            raise fail("capacity", f"expected the seats per offering, a whole number ≥ 0 (or empty), got {raw!r}")

    programmes = tuple(dict.fromkeys(p.strip() for p in row.get("programmes", "").split(";") if p.strip()))

    return Course(
        code=code,
        name=row["name"],
        elective=elective,
        prerequisites=prerequisites,
        credits=credits,
        department=row.get("department") or None,
        terms_offered=tuple(dict.fromkeys(terms)),
        description=row.get("description") or None,
        capacity=capacity,
        programmes=programmes,
    )


def _whole_number(text: str) -> int | None:
    """A whole number ≥ 0 as a spreadsheet writes it ("30", or "30.0" from a float column); None otherwise."""
    match = _WHOLE.fullmatch(text)
    return int(match[1]) if match else None


def _delimiter(text: str) -> str:
    """Comma unless the header line clearly uses ';' or a tab (spreadsheet exports in some locales)."""
    first = text.lstrip("\ufeff").splitlines()[0]
    return max(",;\t", key=lambda d: (first.count(d), d == ","))


def _season(text: str) -> tuple[int, str] | None:
    """A bare season ('Fall', 'SP') as (order within the year, canonical name), via the term parser."""
    try:
        term = parse_term(f"{text} 2000")
    except TermError:
        return None
    return term.key % 10, term.label.split("-", 1)[1]


def _offering(text: str) -> tuple[int | None, int | None] | None:
    """(term key or None, season or None) of a season or term; None when it is neither."""
    try:
        term = parse_term(text)
    except TermError:
        season = _season(text.strip())
        return (None, season[0]) if season else None
    suffix = term.label.split("-", 1)[1] if "-" in term.label else ""
    season = _season(suffix) if suffix.isalpha() else None  # "2021-2" is a numbered term, not a season
    return term.key, season[0] if season else None


def canonical_term(text: str) -> str | None:
    """A season or term as the catalogue stores it ("fall" → "Fall", "FA2024" → "2024-Fall"); None when ``text``
    is neither."""
    text = text.strip()
    try:
        return parse_term(text).label
    except TermError:
        season = _season(text)
        return season[1] if season else None


def _find_cycle(graph: dict[str, tuple[str, ...]]) -> list[str] | None:
    """The first prerequisite loop found, as a path that ends where it starts (iterative: catalogues can be deep)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in graph:
        if root in state:
            continue
        path: list[str] = [root]
        stack: list[Iterator[str]] = [iter(graph[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(graph.get(nxt, ())))
    return None
