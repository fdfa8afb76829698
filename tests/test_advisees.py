"""The advisor's ids file: raw numbers are pseudonymised, labelled back, counted when unknown."""

from __future__ import annotations

import pytest

from electives.data.advisees import read_advisees
from electives.data.pseudonyms import Pseudonymiser
from electives.errors import DataError
from tests.support import TEST_KEY


def _pseudo() -> Pseudonymiser:
    return Pseudonymiser(TEST_KEY.encode())


def test_reads_numbers_skips_blank_comment_header_and_repeats(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("student\n# my advisees\n1001\n\n 1002 \n1001\n")
    advisees = read_advisees(path, pseudonymiser=_pseudo())
    assert advisees.given == ("1001", "1002")
    assert advisees.duplicates == 1
    p = _pseudo()
    assert advisees.pseudonyms == (p.pseudonym("1001"), p.pseudonym("1002"))
    assert advisees.labels()[p.pseudonym("1002")] == "1002"
    assert advisees.unknown({p.pseudonym("1001")}) == ("1002",)


def test_several_columns_name_the_line(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("1001\n1002,Ann\n")
    with pytest.raises(DataError, match=r"line 2: expected one student number per line"):
        read_advisees(path, pseudonymiser=_pseudo())


def test_empty_or_missing_file_is_refused(tmp_path):
    empty = tmp_path / "ids.txt"
    empty.write_text("\n# nothing\n")
    with pytest.raises(DataError, match="no student numbers"):
        read_advisees(empty, pseudonymiser=_pseudo())
    with pytest.raises(DataError, match="no such student ids file"):
        read_advisees(tmp_path / "absent.txt", pseudonymiser=_pseudo())
