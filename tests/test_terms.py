"""Academic terms: every accepted form, the canonical labels and the ordering."""

from __future__ import annotations

import pytest

from electives.data.terms import Term, TermError, parse_term


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
