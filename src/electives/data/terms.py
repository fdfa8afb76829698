"""Academic terms: read the many ways registrars write them and order them correctly.

Accepted forms (case-insensitive, any of ``-``, ``_``, ``/``, space or nothing between the parts):

- season + year or year + season: ``2021-Fall``, ``Fall 2021``, ``FA2002``, ``2002FA``, ``SP2003``, ``S12002``
- academic year + season: ``2019/2020 Spring`` (fall belongs to the first year, the rest to the second)
- year + semester number: ``2021 1``, ``2021-2`` (ordered by the number within the year)
- a plain term number: ``7`` (data that numbers its terms 1, 2, 3 ...)

Within a calendar year: winter/intersession < spring < first summer session < summer < second summer
session < fall.

The forms above keep their keys (``year * 10 + slot``). Beyond them, :class:`TermReader` reads:

- an academic year alone (``2020-21``, ``2020/2021``, ``2020-2021``): the end of that academic year, where
  year-long courses end;
- a year (calendar or academic) with a word of the vocabulary, in any order (``2020-21 Eerste Semester``,
  ``Wintersemester 2020/21``, ``Güz 2021``, ``2021 Tweede semester``); the words and their places are in
  :mod:`electives.data.term_words`, and a user vocabulary (``--term-words``) adds to or overrides them;
- a calendar year alone (``2021``): the whole year, after its other terms;
- year + any number (``2012 95``): ordered by the number after the year's terms 0-9 (summer schools coded 91-95);
- an "unassigned" word without a year (``Niet toegewezen``): no place in time (``key`` None).

The key is stored as an integer with one digit per calendar year, so forms that need finer places (numbers 10 and
above, year-long, unassigned-with-year) share the key of the year's slot and carry ``sub``, their order within it:
an import orders by (key, sub), and so does the database, which stores both (``term_key``, ``term_sub``). Terms that
share a key still share their place where a model is concerned (its "latest term" is the latest key).

``--term-order`` (:class:`TermReader` ``order=``) is for codes only the registrar can order: it lists every term
code, oldest first, and the position is the key (as plain term numbers are).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import total_ordering

from electives.data.term_words import BUILTIN_WORDS, FILLER, ORDINAL_SUFFIXES, PLACES, YEAR_LONG_SUB
from electives.errors import DataError

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
_YEAR_TOKEN = re.compile(r"^(19|20)\d\d$")
_TOKEN = re.compile(r"[^\W\d_]+|\d+")
_EXPECTED = "(expected e.g. 2021-Fall, FA2002, 'Spring 2020', '2021 1' or a term number)"

UNASSIGNED_LABEL = "Unassigned"


@total_ordering
@dataclass(frozen=True)
class Term:
    """A term: ``key`` orders terms (larger is later; None: unassigned, before every dated term), ``label`` is a
    canonical name for display, ``sub`` orders terms that share a key (see the module's docstring)."""

    key: int | None
    label: str
    sub: int = 0

    @property
    def rank(self) -> tuple[float, int]:
        """The full order: (key, sub), an unassigned term first."""
        return (float("-inf") if self.key is None else self.key, self.sub)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Term):
            return NotImplemented
        return (self.rank, self.label) < (other.rank, other.label)


class TermError(ValueError):
    """A term string in none of the accepted forms; ``why`` says what is missing in a few words and ``words``
    are the words no vocabulary knows."""

    def __init__(self, message: str, *, why: str = "", words: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.why = why
        self.words = tuple(words)


def normalise_words(text: str) -> list[str]:
    """``"2ème Semestre"`` → ``["2", "semestre"]``: case-folded, accents dropped, words and numbers apart (also
    where no separator stands between them), ordinal suffixes after a number dropped."""
    text = text.casefold().replace("ı", "i")  # Turkish dotless i has no decomposition
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    out: list[str] = []
    for token in _TOKEN.findall(text):
        if out and out[-1].isdigit() and len(out[-1]) <= 2 and token in ORDINAL_SUFFIXES:
            continue
        out.append(token)
    return out


def order_key(code: str) -> str:
    """How a code is matched against a ``--term-order`` line: spaces collapsed, case ignored."""
    return " ".join(code.split()).casefold()


class TermReader:
    """Reads term codes with the built-in vocabulary plus ``words`` (phrase → place name, see
    :data:`electives.data.term_words.PLACES`), or, given ``order`` (codes oldest first), by position only."""

    def __init__(self, words: Mapping[str, str] | None = None, order: Sequence[str] | None = None) -> None:
        self.words = dict(BUILTIN_WORDS)
        for phrase, place in (words or {}).items():
            if place not in PLACES:
                raise ValueError(f"place {place!r} is not one of {', '.join(PLACES)}")
            self.words[" ".join(normalise_words(phrase))] = place
        # Every word the vocabulary knows, so an unknown code can name the words it lacks.
        self.known_words = FILLER | {w for phrase in self.words for w in phrase.split()}
        self.order = None if order is None else {order_key(c): i for i, c in enumerate(order, start=1)}

    def read(self, raw: str) -> Term:
        """The term of ``raw``; raises :class:`TermError` naming the value when no form or word fits."""
        text = raw.strip()
        if self.order is None:
            return self._parse(text, raw)
        position = self.order.get(order_key(text))
        if position is not None:
            return Term(position, " ".join(text.split()))
        try:
            term = self._parse(text, raw)
        except TermError:
            term = None
        if term is not None and term.key is None:
            return term  # unassigned needs no place in the order
        raise TermError(f"term {raw!r} is in no known form {_EXPECTED}", why="not in the --term-order file")

    def _parse(self, text: str, raw: str) -> Term:
        term = _legacy(text, raw)
        return term if term is not None else self._worded(text, raw)

    def _worded(self, text: str, raw: str) -> Term:
        tokens = normalise_words(text)
        years, rest = _split_years(tokens, raw)
        place = self._place(rest)
        if years is None:
            if place == "unassigned":
                return Term(None, UNASSIGNED_LABEL)
            raise self._unknown(raw, rest, why="no year" if place else "")
        first, second = years
        if second is None and len(rest) == 1 and rest[0].isdigit():
            n = int(rest[0])  # year + any number: after the year's numbers 0-9, by the number
            return Term(first * 10 + min(n, 9), f"{first}-{n}", sub=n)
        if not rest:
            place = "year-long"  # a year alone: the whole (academic) year
        if place is None:
            raise self._unknown(raw, rest)
        spec = PLACES[place]
        if second is None:
            label = f"{first}-{spec.label}"
            return Term(first * 10 + spec.calendar, label, sub=spec.sub)
        year, slot = first + spec.academic[0], spec.academic[1]
        if spec.sub >= YEAR_LONG_SUB:
            label = f"{first}-{second % 100:02d} {spec.label}"
        else:
            label = f"{year}-{_SEASON_LABEL[slot]}"
        return Term(year * 10 + slot, label, sub=spec.sub)

    def _place(self, words: list[str]) -> str | None:
        """The place a phrase names: as written, else without the words that only say "term"."""
        if not words:
            return None
        place = self.words.get(" ".join(words))
        if place is None:
            core = [w for w in words if w not in FILLER]
            place = self.words.get(" ".join(core)) if core else None
        return place

    def _unknown(self, raw: str, words: list[str], why: str = "") -> TermError:
        unknown = [w for w in words if not w.isdigit() and w not in self.known_words]
        if not why:
            why = "unknown word(s) " + ", ".join(map(repr, unknown)) if unknown else "no known form"
        return TermError(f"term {raw!r} is in no known form {_EXPECTED}", why=why, words=unknown)


def _split_years(tokens: list[str], raw: str) -> tuple[tuple[int, int | None] | None, list[str]]:
    """((first year, second year of an academic year or None), the other tokens), or (None, tokens) without a
    year. ``2020-21``, ``2020/2021`` and ``2020 21`` are academic years; a second year that does not follow the
    first is an error, as in the season forms."""
    at = next((i for i, t in enumerate(tokens) if _YEAR_TOKEN.match(t)), None)
    if at is None:
        return None, tokens
    first = int(tokens[at])
    second = None
    rest = tokens[:at]
    after = tokens[at + 1 :]
    if after and after[0].isdigit() and len(after[0]) in (2, 4):
        nxt = after[0]
        if len(nxt) == 4 and _YEAR_TOKEN.match(nxt):
            if int(nxt) != first + 1:
                raise TermError(
                    f"term {raw!r}: academic year {first}/{nxt} should span two consecutive years",
                    why=f"academic year {first}/{nxt} should span two consecutive years",
                )
            second, after = first + 1, after[1:]
        elif len(nxt) == 2 and int(nxt) == (first + 1) % 100:
            second, after = first + 1, after[1:]
    rest += after
    if any(_YEAR_TOKEN.match(t) for t in rest):
        raise TermError(f"term {raw!r} is in no known form {_EXPECTED}", why="more than one year")
    return (first, second), rest


def _legacy(text: str, raw: str) -> Term | None:
    """The forms read before the vocabulary existed, with the keys they always had; None when none fits."""
    if m := _SEASON_YEAR.match(text) or _YEAR_SEASON.match(text):
        year, season = int(m["year"]), _SEASONS[m["season"].upper()]
        return Term(year * 10 + season, f"{year}-{_SEASON_LABEL[season]}")
    if m := _ACADEMIC_YEAR.match(text):
        first = int(m["y1"])
        second = int(m["y2"]) if len(m["y2"]) == 4 else first // 100 * 100 + int(m["y2"])
        if second != first + 1:
            span = f"academic year {m['y1']}/{m['y2']} should span two consecutive years"
            raise TermError(f"term {raw!r}: {span}", why=span)
        season = _SEASONS[m["season"].upper()]
        year = first if season == 6 else second
        return Term(year * 10 + season, f"{year}-{_SEASON_LABEL[season]}")
    if m := _YEAR_NUMBER.match(text):
        year, n = int(m["year"]), int(m["n"])
        return Term(year * 10 + n, f"{year}-{n}")
    if m := _PLAIN_NUMBER.match(text):
        n = int(m["n"])
        return Term(n, str(n))
    return None


BUILTIN_READER = TermReader()


def stored_sub(label: str | None, key: int | None) -> int | None:
    """The ``sub`` of a term known only by its label and key (as a database of schema 1 or a hand-built frame
    holds it): a label the reader wrote reads back to its term, so its sub is kept where the key agrees; 0 when it
    does not (e.g. a ``--term-order`` position); None without a key."""
    if key is None:
        return None
    try:
        term = BUILTIN_READER.read(label or "")
    except TermError:
        return 0
    return term.sub if term.key == key else 0


def parse_term(raw: str) -> Term:
    """Parse one term string with the built-in vocabulary; raises :class:`TermError` naming the value when it is
    in no known form, or has no place in time (an "unassigned" word without a year)."""
    term = BUILTIN_READER.read(raw)
    if term.key is None:
        raise TermError(f"term {raw!r} is unassigned: it has no place in time", why="unassigned")
    return term


def stored_term(text: str, stored: Sequence[tuple[str, int]], *, what: str) -> tuple[int, str]:
    """The order key and label of ``text`` given on the command line as ``what`` (``--since``, ``--term``): a
    stored term's label (``stored``: (label, key) pairs, any order; case ignored), else a term code in a known
    form. A :class:`~electives.errors.DataError` naming the stored terms otherwise."""
    wanted = text.strip().casefold()
    for label, key in stored:
        if str(label).casefold() == wanted:
            return int(key), str(label)
    try:
        term = parse_term(text)
    except TermError as exc:
        labels = [label for _, label in sorted({int(k): str(lb) for lb, k in stored}.items())]
        listed = ", ".join(labels[-8:]) if labels else "none"
        more = f"{len(labels) - 8} earlier, then " if len(labels) > 8 else ""
        raise DataError(
            f"{what} {text!r}: no stored term has that name and it is in no known form ({exc}); stored terms: "
            f"{more}{listed}"
        ) from None
    return int(term.key), term.label  # type: ignore[arg-type]


def next_term(stored: Sequence[tuple[str, int]]) -> str | None:
    """The term after the latest of ``stored`` ((label, key) pairs, as :func:`stored_term` takes them) in the
    data's own rhythm: the next of the seasons or numbered terms the data has (2023-Spring → 2023-Fall when it
    has spring and fall terms, 2023-Fall → 2024-Spring), or the next plain term number. None when the latest term
    is in none of these forms (a ``--term-order`` position, a year-long term): no guess is made."""
    dated = [(int(key), str(label)) for label, key in stored]
    if not dated:
        return None
    key, label = max(dated)
    if label == str(key):
        return str(key + 1)  # plain term numbers
    year, slot = divmod(key, 10)
    for name in (_SEASON_LABEL.get, str):  # seasons (2023-Fall) or numbered terms (2021-2), as the latest is
        if label == f"{year}-{name(slot)}":
            slots = sorted({k % 10 for k, lb in dated if lb == f"{k // 10}-{name(k % 10)}"})
            later = [s for s in slots if s > slot]
            return f"{year}-{name(later[0])}" if later else f"{year + 1}-{name(slots[0])}"
    return None
