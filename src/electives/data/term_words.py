"""The built-in term vocabulary: the places within an academic year, and the words registrars write for them in
English, Dutch, German, French, Spanish, Portuguese, Italian and Turkish.

Words are stored as :func:`electives.data.terms.normalise_words` leaves them: case-folded, accents dropped, one
space between words, ordinal suffixes dropped ("1st", "1e", "1er", "1º", "1." → "1").

A **place** says where a term falls, in two readings:

- with an academic year ``Y1-Y2`` (``2020-21 Eerste Semester``): in which of its two calendar years, and at which
  slot of that year (the slots of :mod:`electives.data.terms`: 1 winter, 2 spring, 4 summer, 6 fall);
- with one calendar year (``Tweede semester 2021``): the slot within that year. Seasons keep their season; the
  numbered periods (first/second semester, trimesters 1-3) are ordered by their number within the year, as
  ``2021 1`` and ``2021 2`` are.

Year-long courses end with the academic year: they are graded in the second semester's exam session, so they
share its key and sort right after it (before the summer). A row whose term says "unassigned" with a year is
placed at the end of that year; without a year it has no place at all (kept, stored without a term key, and
read as older than every dated row, so it is never a held-out "latest term").
"""

from __future__ import annotations

from dataclasses import dataclass

# A year-long course sorts after everything else in its slot; an unassigned row with a year after that.
YEAR_LONG_SUB = 1_000_000
UNASSIGNED_SUB = 1_000_001


@dataclass(frozen=True)
class Place:
    """Where a term falls: ``academic`` = (0 for the first calendar year of the academic year, 1 for the second;
    slot), ``calendar`` = slot within a calendar year; ``sub`` orders places sharing a slot; ``label`` is the
    canonical suffix of the term's label (a season name, a number, ``Year`` or ``Unassigned``)."""

    academic: tuple[int, int]
    calendar: int
    label: str
    sub: int = 0


PLACES: dict[str, Place] = {
    "fall": Place((0, 6), 6, "Fall"),
    "winter": Place((1, 1), 1, "Winter"),
    "spring": Place((1, 2), 2, "Spring"),
    "summer": Place((1, 4), 4, "Summer"),
    "summer-school": Place((1, 4), 4, "Summer"),
    # German-style semesters are named for the season they end in: WS 2020/21 runs October to March.
    "winter-semester": Place((0, 6), 6, "Fall"),
    "summer-semester": Place((1, 2), 2, "Spring"),
    "first-semester": Place((0, 6), 1, "1"),
    "second-semester": Place((1, 2), 2, "2"),
    "first-trimester": Place((0, 6), 1, "T1"),
    "second-trimester": Place((1, 1), 2, "T2"),
    "third-trimester": Place((1, 2), 3, "T3"),
    "year-long": Place((1, 2), 9, "Year", sub=YEAR_LONG_SUB),
    "unassigned": Place((1, 2), 9, "Unassigned", sub=UNASSIGNED_SUB),
}

# Words that only say "this is a term" ("Fall Semester", "Güz Dönemi"): dropped when the phrase is not known
# as written.
FILLER = frozenset(
    ("term", "semester", "session", "period", "periode", "donem", "donemi", "yariyil", "yariyili", "semestre",
     "semestr", "halbjahr", "sem")
)  # fmt: skip


def _numbered(place: str, words: tuple[str, ...], numbers: tuple[str, ...]) -> dict[str, str]:
    """Both orders of number and word: "1 semester", "semester 1"."""
    out = {}
    for word in words:
        for n in numbers:
            out[f"{n} {word}"] = place
            out[f"{word} {n}"] = place
    return out


_SEMESTER_WORDS = ("semester", "semestre", "sem", "cuatrimestre", "yariyil", "donem", "halbjahr")
_TRIMESTER_WORDS = ("trimester", "trimestre", "t", "q", "quarter")

_BY_PLACE: dict[str, tuple[str, ...]] = {
    "fall": (
        "fall", "autumn", "herfst", "najaar", "herbst", "herbstsemester", "hs", "automne", "otono", "outono",
        "autunno", "guz",
    ),
    "winter": ("winter", "hiver", "invierno", "inverno", "kis", "wintertrimester"),
    "spring": (
        "spring", "voorjaar", "lente", "fruhjahr", "fruhling", "fruhjahrssemester", "fs", "printemps",
        "primavera", "bahar",
    ),
    "summer": ("summer", "zomer", "sommer", "ete", "verano", "verao", "estate", "yaz"),
    "summer-school": (
        "summer school", "summer session", "summer term", "zomerschool", "zomercursus", "sommerschule",
        "sommerkurs", "ecole d ete", "universite d ete", "cours d ete", "escuela de verano", "curso de verano",
        "escola de verao", "curso de verao", "scuola estiva", "corso estivo", "yaz okulu",
    ),
    "winter-semester": ("wintersemester", "ws", "wise", "winter semester"),
    "summer-semester": ("sommersemester", "sose", "summer semester"),
    "first-semester": (
        "first semester", "eerste semester", "erstes semester", "premier semestre", "primer semestre",
        "primeiro semestre", "primo semestre", "birinci yariyil", "birinci donem", "ilk yariyil",
        "primer cuatrimestre",
    ),
    "second-semester": (
        "second semester", "tweede semester", "zweites semester", "second semestre", "deuxieme semestre",
        "segundo semestre", "secondo semestre", "ikinci yariyil", "ikinci donem", "segundo cuatrimestre",
    ),
    "first-trimester": (
        "first trimester", "first quarter", "eerste trimester", "erstes trimester", "premier trimestre",
        "primer trimestre", "primeiro trimestre", "primo trimestre", "birinci ceyrek",
    ),
    "second-trimester": (
        "second trimester", "second quarter", "tweede trimester", "zweites trimester", "deuxieme trimestre",
        "segundo trimestre", "secondo trimestre", "ikinci ceyrek",
    ),
    "third-trimester": (
        "third trimester", "third quarter", "derde trimester", "drittes trimester", "troisieme trimestre",
        "tercer trimestre", "terceiro trimestre", "terzo trimestre", "ucuncu ceyrek",
    ),
    "year-long": (
        "year", "year long", "yearlong", "full year", "whole year", "annual", "academic year", "academiejaar",
        "jaar", "jaarvak", "heel jaar", "volledig jaar", "studiejaar", "jahr", "ganzjahrig", "jahreskurs",
        "studienjahr", "ganzes jahr", "akademisches jahr", "annee", "annuel", "annuelle", "annee complete",
        "annee universitaire", "annee academique", "anual", "ano", "ano academico", "curso academico",
        "curso completo", "ano letivo", "ano lectivo", "ano completo", "annuale", "anno", "anno accademico",
        "intero anno", "yillik", "tum yil", "akademik yil", "yil",
    ),
    "unassigned": (
        "unassigned", "not assigned", "no term", "unknown", "tbd", "niet toegewezen", "niet toegekend",
        "onbekend", "nicht zugeordnet", "nicht zugewiesen", "ohne zuordnung", "unbekannt", "non attribue",
        "non assigne", "non affecte", "inconnu", "no asignado", "sin asignar", "desconocido", "nao atribuido",
        "sem atribuicao", "desconhecido", "non assegnato", "non attribuito", "sconosciuto", "atanmamis",
        "belirsiz", "bilinmiyor",
    ),
}  # fmt: skip

BUILTIN_WORDS: dict[str, str] = {word: place for place, words in _BY_PLACE.items() for word in words}
BUILTIN_WORDS |= _numbered("first-semester", _SEMESTER_WORDS, ("1",))
BUILTIN_WORDS |= _numbered("second-semester", _SEMESTER_WORDS, ("2",))
for _n, _place in enumerate(("first-trimester", "second-trimester", "third-trimester"), start=1):
    BUILTIN_WORDS |= _numbered(_place, _TRIMESTER_WORDS, (str(_n),))

# Ordinal suffixes dropped after a number: 1st 2nd 3rd 4th, 1e 1ste 2de, 1er 1re 2e 2eme, 1o 1a 2do 1ro 3ro,
# 1inci 2nci 3uncu (Turkish), and º/ª (read as o/a once accents are dropped).
ORDINAL_SUFFIXES = frozenset(
    ("st", "nd", "rd", "th", "e", "ste", "de", "er", "re", "eme", "ere", "o", "a", "do", "ro", "to", "inci", "nci",
     "uncu", "ncu")
)  # fmt: skip
