"""Term codes through the importer: every graded row kept or the import refused, the registrar's own words and
order, and rows counted per term."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from electives.data.importing import UnknownTerms, read_export
from electives.data.storage import Store
from electives.data.term_files import load_term_order, load_term_words, term_reader
from electives.errors import DataError

pytestmark = pytest.mark.usefixtures("secret_key")
Cli = Callable[..., tuple[int, str, str]]
MALFORMED = Path(__file__).parent / "malformed"

# Shaped like the Belgian export of the issue: an academic year and a Dutch word, and an unassigned term.
BELGIAN = """student,course,term,grade
1,A,2020-21 Eerste Semester,14
1,B,2020-21 Tweede Semester,12
1,C,2020-21 Academiejaar,15
1,D,Niet toegewezen,11
2,A,2021-22 Eerste Semester,9
2,B,2021-22 Eerste Semester,16
2,C,2020-21 Academiejaar,10
"""
SCALE20 = """name = "twenty"
low = 0
high = 20
numeric = true
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def belgian(tmp_path: Path) -> tuple[Path, Path]:
    return write(tmp_path, "belgian.csv", BELGIAN), write(tmp_path, "twenty.toml", SCALE20)


def test_an_academic_year_with_dutch_words_imports_every_row(belgian: tuple[Path, Path]) -> None:
    export, scale = belgian
    result = read_export(export, scale=scale)
    frame = result.frame.set_index("row")
    assert result.report.rows_kept == 7 and not result.report.dropped
    assert frame["term"].to_dict() == {
        2: "2020-Fall", 3: "2021-Spring", 4: "2020-21 Year", 5: "Unassigned", 6: "2021-Fall", 7: "2021-Fall",
        8: "2020-21 Year",
    }  # fmt: skip
    assert frame["term_key"].astype(object).where(frame["term_key"].notna(), None).tolist() == [
        20206, 20212, 20212, None, 20216, 20216, 20212,
    ]  # fmt: skip
    assert result.report.terms == [
        {"term": "Unassigned", "rows": 1},
        {"term": "2020-Fall", "rows": 1},
        {"term": "2021-Spring", "rows": 1},
        {"term": "2020-21 Year", "rows": 2},
        {"term": "2021-Fall", "rows": 2},
    ]
    assert "  rows per term: Unassigned 1, 2020-Fall 1, 2021-Spring 1, 2020-21 Year 2, 2021-Fall 2" in (
        result.report.summary().splitlines()
    )
    assert result.report.to_dict()["terms"] == result.report.terms
    assert result.report.to_dict()["unknown_terms"] == {}


def test_an_unassigned_row_is_stored_without_a_key(belgian: tuple[Path, Path], tmp_path: Path, cli: Cli) -> None:
    export, scale = belgian
    db = tmp_path / "g.db"
    code, _out, err = cli("import", export, "--scale", scale, "--db", f"sqlite:///{db}")
    assert code == 0, err
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT term, term_key FROM grades WHERE term_key IS NULL").fetchall()
    conn.close()
    assert rows == [("Unassigned", None)]


def test_summer_schools_coded_91_to_95_are_kept_and_ordered(tmp_path: Path) -> None:
    export = write(
        tmp_path,
        "g.csv",
        "student,course,term,grade\n1,A,2012 95,70\n1,A,2012 2,40\n1,B,2012 91,80\n1,C,2013 1,90\n2,A,2012 93,60\n",
    )
    result = read_export(export, scale="percent")
    assert result.report.rows_kept == 4
    assert result.report.dropped == {"retake": 1}
    assert result.frame.loc[result.frame["course"] == "A", "mark"].tolist() == ["70", "60"]  # 95 is after 2
    assert [t["term"] for t in result.report.terms] == ["2012-91", "2012-93", "2012-95", "2013-1"]


def test_summer_schools_keep_their_order_in_the_database(tmp_path: Path, cli: Cli) -> None:
    """Each summer school's number is stored beside the year's key (term_sub), so the database orders 2012 91
    before 2012 95 whichever file came first; the same mark in two of them is two attempts, not one row twice."""
    db = f"sqlite:///{tmp_path / 'g.db'}"
    first = write(tmp_path, "a.csv", "student,course,term,grade\n1,A,2012 95,70\n2,B,2012 91,50\n")
    later = write(tmp_path, "b.csv", "student,course,term,grade\n1,A,2012 91,40\n2,B,2012 95,50\n")
    for export in (first, later):
        code, _out, err = cli("import", export, "--scale", "percent", "--db", db)
        assert code == 0, err
    with sqlite3.connect(tmp_path / "g.db") as conn:
        stored = conn.execute("SELECT term, term_key, term_sub FROM grades ORDER BY term_sub").fetchall()
    conn.close()
    assert stored == [("2012-91", 20129, 91)] * 2 + [("2012-95", 20129, 95)] * 2
    with Store(db) as store:
        assert store.load_grades("latest")["mark"].tolist() == ["70", "50"]  # 2012 95's attempts


def test_unknown_codes_refuse_the_import_naming_the_words_and_the_format(tmp_path: Path, cli: Cli) -> None:
    db = tmp_path / "g.db"
    out_json = tmp_path / "report.json"
    code, out, err = cli(
        "import", MALFORMED / "bad_terms.csv", "--scale", "letter-us", "--db", f"sqlite:///{db}", "--report", out_json
    )
    assert code == 2
    assert err.splitlines()[:4] == [
        "electives import: error: bad_terms.csv: 3 term code(s) in no known form, in 4 row(s); nothing was imported "
        "(storing the rest would lose those rows):",
        "  'Fall': 2 row(s) (line(s) 2, 6): no year",
        "  '2021-Autumnish': 1 row(s) (line(s) 5): unknown word(s) 'autumnish'",
        "  '2019/2021 Spring': 1 row(s) (line(s) 7): academic year 2019/2021 should span two consecutive years",
    ]
    assert "unknown words: 'autumnish'" in err
    assert '    "autumnish" = "first-semester"' in err
    assert "--term-words FILE" in err and "--term-order FILE" in err and "places: fall, winter, spring" in err
    assert "bad-term                     5  term empty or in no known form" in out
    report = json.loads(out_json.read_text())
    assert report["unknown_terms"]["Fall"] == {"rows": 2, "lines": [2, 6], "why": "no year", "words": []}
    assert report["unknown_terms"]["2021-Autumnish"]["words"] == ["autumnish"]
    assert not db.exists()


def test_a_vocabulary_file_explains_the_unknown_words(tmp_path: Path, cli: Cli) -> None:
    export = write(tmp_path, "g.csv", "student,course,term,grade\n1,A,2021-22 Herfstblok,A\n1,B,Lenteblok 2021-22,B\n")
    with pytest.raises(UnknownTerms):
        read_export(export, scale="letter-us")
    words = write(tmp_path, "words.toml", '# ours\n"herfstblok" = "first-semester"\nLenteblok = "second-semester"\n')
    result = read_export(export, scale="letter-us", terms=term_reader(words=words))
    assert result.frame["term"].tolist() == ["2021-Fall", "2022-Spring"]
    db = tmp_path / "g.db"
    code, out, _ = cli("import", export, "--scale", "letter-us", "--term-words", words, "--db", f"sqlite:///{db}")
    assert code == 0, out
    assert "rows per term: 2021-Fall 1, 2022-Spring 1" in out


def test_an_order_file_orders_codes_only_the_registrar_knows(tmp_path: Path, cli: Cli) -> None:
    export = write(tmp_path, "g.csv", "student,course,term,grade\n1,A,ZS-B,A\n1,A,ZS-A,B\n1,B,Niet toegewezen,C\n")
    order = write(tmp_path, "order.txt", "# oldest first\nZS-A\n\nZS-B\n")
    result = read_export(export, scale="letter-us", terms=term_reader(order=order))
    assert result.frame["term"].tolist() == ["ZS-B", "Unassigned"]  # ZS-B is the later attempt
    assert result.frame["term_key"].tolist()[0] == 2
    code, _, err = cli("import", export, "--scale", "letter-us", "--term-order", order, "--dry-run")
    assert code == 0, err
    short = write(tmp_path, "short.txt", "ZS-A\n")
    code, _, err = cli("import", export, "--scale", "letter-us", "--term-order", short, "--dry-run")
    assert code == 2
    assert "'ZS-B': 1 row(s) (line(s) 2): not in the --term-order file" in err
    assert "Or add these codes to the --term-order file" in err


BAD_FILES = [
    ("--term-words", "w.toml", 'herfst = "autumn"\n', "line 1: 'herfst' = 'autumn': expected a place within the "
     "academic year, one of fall, winter"),
    ("--term-words", "w.toml", 'a = "fall"\n"2020 herfst" = "fall"\n', "line 2: '2020 herfst': expected a word "
     "without a year"),
    ("--term-words", "w.toml", "herfst = \n", "not valid TOML (Invalid value (at line 1, column 10))"),
    ("--term-words", "w.toml", "[blocks]\nherfst = 'fall'\n", "line 1: 'blocks' = {'herfst': 'fall'}: expected a place"),
    ("--term-words", "w.toml", "# nothing\n", "no words in it; expected lines such as"),
    ("--term-order", "o.txt", "ZS-A\nZS-B\nzs-a\n", "line 3: 'zs-a' is already on line 1; expected each term code once"),
    ("--term-order", "o.txt", "\n# none\n", "no term codes in it; expected one code per line, oldest first"),
]  # fmt: skip


@pytest.mark.parametrize(("flag", "name", "text", "message"), BAD_FILES)
def test_a_bad_term_file_is_refused_naming_file_and_line(
    flag: str, name: str, text: str, message: str, tmp_path: Path, cli: Cli
) -> None:
    export = write(tmp_path, "g.csv", "student,course,term,grade\n1,A,2021-Fall,A\n")
    path = write(tmp_path, name, text)
    db = tmp_path / "g.db"
    code, out, err = cli("import", export, "--scale", "letter-us", flag, path, "--db", f"sqlite:///{db}")
    assert code == 2
    assert f"{flag} {path}" in err and message in err
    assert out == ""  # refused before the export is read
    assert not db.exists()


def test_a_refused_term_file_leaves_a_database_as_it_was(tmp_path: Path, cli: Cli) -> None:
    export = write(tmp_path, "g.csv", "student,course,term,grade\n1,A,2021-Fall,A\n")
    db = tmp_path / "g.db"
    assert cli("import", export, "--scale", "letter-us", "--db", f"sqlite:///{db}")[0] == 0
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    other = write(tmp_path, "h.csv", "student,course,term,grade\n2,A,2021-Herfstblok,A\n")
    bad = write(tmp_path, "w.toml", "herfstblok = 3\n")
    assert cli("import", other, "--scale", "letter-us", "--term-words", bad, "--db", f"sqlite:///{db}")[0] == 2
    assert cli("import", other, "--scale", "letter-us", "--db", f"sqlite:///{db}")[0] == 2
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT COUNT(*) FROM grades").fetchone()[0] == 1
    conn.close()


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"--term-words .*nope.toml: no such file"):
        load_term_words(tmp_path / "nope.toml")
    latin = tmp_path / "o.txt"
    latin.write_bytes("Été 2021\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"--term-order .*o.txt: not UTF-8 text \(byte 0\); save it as UTF-8"):
        load_term_order(latin)
