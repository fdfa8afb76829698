"""Academic terms: read the many ways registrars write them and order them correctly.

Accepted forms (case-insensitive, any of ``-``, ``_``, ``/``, space or nothing between the parts):

- season + year or year + season: ``2021-Fall``, ``Fall 2021``, ``FA2002``, ``2002FA``, ``SP2003``, ``S12002``
- academic year + season: ``2019/2020 Spring`` (fall belongs to the first year, the rest to the second)
- year + semester number: ``2021 1``, ``2021-2`` (ordered by the number within the year)
- a plain term number: ``7`` (data that numbers its terms 1, 2, 3 ...)

Within a calendar year: winter/intersession < spring < first summer session < summer < second summer
session < fall.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SEASONS: dict[str, int] = {
    # winter / January intersession
    "WI": 1, "WIN": 1, "WINTER": 1, "IT": 1, "JAN": 1, "J": 1,
    "SP": 2, "SPR": 2, "SPRING": 2,
    "S1": 3, "SU1": 3, "SUMMER1": 3, "SS1": 3,
    "SU": 4, "SUM": 4, "SUMMER": 4, "SS": 4,
    "S2": 5, "SU2": 5, "SUMMER2": 5, "SS2": 5,
    "FA": 6, "FAL": 6, "FALL": 6, "AU": 6, "AUT": 6, "AUTUMN": 6,
}  # fmt: skip
_SEASON_LABEL = {1: "Winter", 2: "Spring", 3: "Summer1", 4: "Summer", 5: "Summer2", 6: "Fall"}

_SEASON_RE = "|".join(sorted(_SEASONS, key=len, reverse=True))
_SEP = r"[\s\-_/.]*"
_YEAR = r"(?P<year>(19|20)\d\d)"
_SEASON_YEAR = re.compile(rf"^(?P<season>{_SEASON_RE}){_SEP}{_YEAR}$", re.IGNORECASE)
_YEAR_SEASON = re.compile(rf"^{_YEAR}{_SEP}(?P<season>{_SEASON_RE})$", re.IGNORECASE)
_ACADEMIC_YEAR = re.compile(
    rf"^(?P<y1>(19|20)\d\d){_SEP}(?P<y2>(19|20)?\d\d){_SEP}(?P<season>{_SEASON_RE})$", re.IGNORECASE
)
_YEAR_NUMBER = re.compile(rf"^{_YEAR}{_SEP}(?P<n>\d)$")
_PLAIN_NUMBER = re.compile(r"^(?P<n>\d{1,3})$")


@dataclass(frozen=True, order=True)
class Term:
    """A term: ``key`` orders terms (larger is later), ``label`` is a canonical name for display."""

    key: int
    label: str


class TermError(ValueError):
    """A term string in none of the accepted forms."""


def parse_term(raw: str) -> Term:
    """Parse one term string; raises :class:`TermError` naming the value when it is in no known form."""
    text = raw.strip()
    if m := _SEASON_YEAR.match(text) or _YEAR_SEASON.match(text):
        year, season = int(m["year"]), _SEASONS[m["season"].upper()]
        return Term(year * 10 + season, f"{year}-{_SEASON_LABEL[season]}")
    if m := _ACADEMIC_YEAR.match(text):
        first = int(m["y1"])
        second = int(m["y2"]) if len(m["y2"]) == 4 else first // 100 * 100 + int(m["y2"])
        if second != first + 1:
            raise TermError(f"term {raw!r}: academic year {m['y1']}/{m['y2']} should span two consecutive years")
        season = _SEASONS[m["season"].upper()]
        year = first if season == 6 else second
        return Term(year * 10 + season, f"{year}-{_SEASON_LABEL[season]}")
    if m := _YEAR_NUMBER.match(text):
        year, n = int(m["year"]), int(m["n"])
        return Term(year * 10 + n, f"{year}-{n}")
    if m := _PLAIN_NUMBER.match(text):
        n = int(m["n"])
        return Term(n, str(n))
    raise TermError(
        f"term {raw!r} is in no known form (expected e.g. 2021-Fall, FA2002, 'Spring 2020', '2021 1' or a term number)"
    )
