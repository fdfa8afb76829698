"""Academic terms: every accepted form, the canonical labels and the ordering."""

from __future__ import annotations

import pytest

from electives.data.terms import Term, TermError, next_term, parse_term


@pytest.mark.parametrize(
    ("raw", "key", "label"),
    [
        ("2021-Fall", 20216, "2021-Fall"),
        ("Fall 2021", 20216, "2021-Fall"),
        ("fall_2021", 20216, "2021-Fall"),
        ("AUTUMN 2020", 20206, "2020-Fall"),
        ("FA2002", 20026, "2002-Fall"),
        ("2002FA", 20026, "2002-Fall"),
        ("SP2003", 20032, "2003-Spring"),
        ("S12002", 20023, "2002-Summer1"),
        ("S22003", 20035, "2003-Summer2"),
        ("Summer 2020", 20204, "2020-Summer"),
        ("su2 2020", 20205, "2020-Summer2"),
        ("IT1994", 19941, "1994-Winter"),
        ("2020 winter", 20201, "2020-Winter"),
        ("2019/2020 Spring", 20202, "2020-Spring"),  # spring belongs to the second year
        ("2019/20 Fall", 20196, "2019-Fall"),  # fall to the first
        ("2019-2020 fall", 20196, "2019-Fall"),
        ("2021 1", 20211, "2021-1"),
        ("2021-2", 20212, "2021-2"),
        ("7", 7, "7"),
        (" 12 ", 12, "12"),
    ],
)
def test_forms(raw: str, key: int, label: str) -> None:
    assert parse_term(raw) == Term(key, label)


def test_order_within_a_year_and_across_years() -> None:
    raw = ["FA2002", "SP2003", "S22002", "IT2002", "S12002", "SP2002", "FA2001", "S22003", "IT2003"]
    ordered = sorted(raw, key=lambda t: parse_term(t).key)
    assert ordered == ["FA2001", "IT2002", "SP2002", "S12002", "S22002", "FA2002", "IT2003", "SP2003", "S22003"]
    assert parse_term("SP2003") < parse_term("S12003") < parse_term("S22003") < parse_term("FA2003")
    assert parse_term("2021 1") < parse_term("2021 2") < parse_term("2022 1")
    assert parse_term("2") < parse_term("11")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("Fall", "term 'Fall' is in no known form"),
        ("2021-Autumnish", "term '2021-Autumnish' is in no known form"),
        ("", "term '' is in no known form"),
        ("1234", "term '1234' is in no known form"),
        ("2021 1 2", "term '2021 1 2' is in no known form"),
        ("1850 Fall", "term '1850 Fall' is in no known form"),
    ],
)
def test_unreadable_terms(raw: str, message: str) -> None:
    with pytest.raises(TermError) as err:
        parse_term(raw)
    assert str(err.value) == (f"{message} (expected e.g. 2021-Fall, FA2002, 'Spring 2020', '2021 1' or a term number)")


def test_academic_year_must_be_consecutive() -> None:
    with pytest.raises(TermError) as err:
        parse_term("2019/2021 Spring")
    assert str(err.value) == "term '2019/2021 Spring': academic year 2019/2021 should span two consecutive years"


def test_term_error_is_a_value_error() -> None:
    assert issubclass(TermError, ValueError)


# ---------------------------------------------------------------------- academic years, numbers, the vocabulary
from electives.data.term_words import BUILTIN_WORDS, PLACES  # noqa: E402
from electives.data.terms import TermReader  # noqa: E402


@pytest.mark.parametrize("raw", ["2020-21", "2020/2021", "2020-2021", "2020/21", "2020-21 Academiejaar"])
def test_an_academic_year_alone_ends_with_the_year(raw: str) -> None:
    term = parse_term(raw)
    assert (term.key, term.label) == (20212, "2020-21 Year")
    assert parse_term("2020-21 Tweede Semester") < term < parse_term("Summer 2021")
    assert parse_term("2020-21 Eerste Semester") < term


def test_year_plus_any_number_is_ordered_by_the_number() -> None:
    # A real export: semesters 1 and 2, summer schools coded 91-95.
    codes = ["2013 1", "2012 95", "2012 2", "2012 91", "2012 1", "2012 93", "2011 92"]
    assert sorted(codes, key=parse_term) == ["2011 92", "2012 1", "2012 2", "2012 91", "2012 93", "2012 95", "2013 1"]
    assert parse_term("2012 95") == Term(20129, "2012-95", sub=95)
    assert parse_term("2012 9") < parse_term("2012 10") < parse_term("2012 95") < parse_term("2013 0")


# One code per language for each place; the order within an academic year, oldest first.
LANGUAGES = {
    "en": ["First semester", "Winter", "Second semester", "Year-long", "Summer school"],
    "nl": ["Eerste Semester", "Winter", "Tweede Semester", "Academiejaar", "Zomerschool"],
    "de": ["Wintersemester", "Winter", "Sommersemester", "Ganzjährig", "Sommerschule"],
    "fr": ["1er semestre", "Hiver", "2ème semestre", "Annuel", "École d'été"],
    "es": ["Primer semestre", "Invierno", "Segundo cuatrimestre", "Anual", "Curso de verano"],
    "pt": ["1º semestre", "Inverno", "Segundo semestre", "Ano letivo", "Escola de verão"],
    "it": ["Primo semestre", "Inverno", "Secondo semestre", "Annuale", "Scuola estiva"],
    "tr": ["Güz Yarıyılı", "Kış", "Bahar Dönemi", "Yıllık", "Yaz Okulu"],
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_languages_words_order_the_academic_year(language: str) -> None:
    words = LANGUAGES[language]
    codes = [f"2020-21 {w}" for w in words] + [f"2019/2020 {words[3]}", f"{words[0]} 2021-22"]
    shuffled = codes[::-1]
    assert sorted(shuffled, key=parse_term) == [codes[5], *codes[:5], codes[6]]
    assert [parse_term(c).label for c in codes[:5]] == [
        "2020-Fall", "2021-Winter", "2021-Spring", "2020-21 Year", "2021-Summer",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "place"),
    [
        ("Terms Trimester 1", None),
        ("trimestre 2", "second-trimester"),
        ("3. Trimester", "third-trimester"),
        ("Fall Semester", "fall"),
        ("Güz Dönemi", "fall"),
        ("Frühjahrssemester", "spring"),
        ("WiSe", "winter-semester"),
        ("SoSe", "summer-semester"),
        ("Niet toegewezen", "unassigned"),
        ("Non attribué", "unassigned"),
        ("Sin asignar", "unassigned"),
        ("Não atribuído", "unassigned"),
        ("Non assegnato", "unassigned"),
        ("Nicht zugeordnet", "unassigned"),
        ("Atanmamış", "unassigned"),
    ],
)
def test_words_are_read_whatever_their_case_accents_and_ordinals(raw: str, place: str | None) -> None:
    english = {p: p.replace("-", " ") for p in PLACES}
    if place is None:
        with pytest.raises(TermError):
            parse_term(f"2020-21 {raw}")
    elif place == "unassigned":
        assert TermReader().read(raw) == Term(None, "Unassigned")
    else:
        assert parse_term(f"2020-21 {raw}") == parse_term(f"2020-21 {english[place]}")


def test_a_calendar_year_with_a_semester_is_ordered_by_its_number() -> None:
    codes = ["Eerste semester 2020", "Tweede semester 2020", "Eerste semester 2021"]
    assert sorted(codes[::-1], key=parse_term) == codes
    assert parse_term(codes[0]) == Term(20201, "2020-1")
    assert parse_term("Wintersemester 2020") > parse_term("Sommersemester 2020")  # WS 2020 starts in October


def test_unassigned_has_no_place_and_is_kept_apart() -> None:
    reader = TermReader()
    unassigned = reader.read("Niet toegewezen")
    assert unassigned == Term(None, "Unassigned")
    assert unassigned < reader.read("7") < reader.read("FA1990")  # before every dated term
    with pytest.raises(TermError, match="unassigned: it has no place in time"):
        parse_term("Niet toegewezen")
    # With a year it ends that year, after its year-long courses.
    with_year = reader.read("2020-21 Niet toegewezen")
    assert reader.read("2020-21 Academiejaar") < with_year < reader.read("Summer 2021")


def test_unknown_codes_say_why_and_name_their_words() -> None:
    reader = TermReader()
    for raw, why, words in [
        ("2021-22 Herfstblok", "unknown word(s) 'herfstblok'", ("herfstblok",)),
        ("Tweede Semester", "no year", ()),
        ("2019/2021", "academic year 2019/2021 should span two consecutive years", ()),
    ]:
        with pytest.raises(TermError) as err:
            reader.read(raw)
        assert (err.value.why, err.value.words) == (why, words)


def test_a_user_vocabulary_adds_and_overrides_words() -> None:
    reader = TermReader(words={"Herfstblok": "first-semester", "Lenteblok": "second-semester", "jaar": "summer"})
    assert reader.read("2021-22 Herfstblok") == Term(20216, "2021-Fall")
    assert reader.read("Lenteblok 2021/2022") == Term(20222, "2022-Spring")
    assert reader.read("2021-22 Jaar").label == "2022-Summer"  # the user's place wins
    assert parse_term("2021-22 Jaar").label == "2021-22 Year"  # the built-in reader is unchanged
    with pytest.raises(ValueError, match="place 'autumn' is not one of fall, winter"):
        TermReader(words={"herfst": "autumn"})


def test_a_term_order_orders_by_position_only() -> None:
    reader = TermReader(order=["ZS-12", "WS-12", "zs-13"])
    assert [reader.read(c) for c in ("ZS-12", " ws-12 ", "ZS-13")] == [
        Term(1, "ZS-12"), Term(2, "ws-12"), Term(3, "ZS-13"),
    ]  # fmt: skip
    assert reader.read("Niet toegewezen").key is None  # unassigned needs no place
    with pytest.raises(TermError) as err:
        reader.read("2021-Fall")  # known, but the order file orders every code
    assert err.value.why == "not in the --term-order file"


def test_every_place_is_reachable_and_named() -> None:
    assert set(BUILTIN_WORDS.values()) == set(PLACES)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (["2022-Fall", "2023-Spring"], "2023-Fall"),  # the data's own seasons, in order
        (["2023-Spring", "2023-Fall"], "2024-Spring"),  # past the last season of the year: the next year's first
        (["2022-Fall", "2023-Spring", "2023-Summer"], "2023-Fall"),
        (["2023-Fall"], "2024-Fall"),  # fall terms only: a year later
        (["2021 1", "2021 2"], "2022-1"),  # numbered terms
        (["2021 1", "2021 2", "2021 3"], "2022-1"),
        (["3", "7"], "8"),  # plain term numbers
    ],
)
def test_next_term_follows_the_datas_rhythm(stored: list[str], expected: str) -> None:
    pairs = [(parse_term(t).label, int(parse_term(t).key)) for t in stored]  # type: ignore[arg-type]
    assert next_term(pairs) == expected
    assert next_term(list(reversed(pairs))) == expected  # order does not matter
    assert parse_term(expected).key > max(k for _, k in pairs)  # type: ignore[operator]


def test_next_term_guesses_nothing_it_cannot_read() -> None:
    assert next_term([]) is None
    assert next_term([("Week 7", 7)]) is None  # a --term-order position: no rhythm to follow
    assert next_term([("2020-21 Year", 20217)]) is None  # a year-long term
