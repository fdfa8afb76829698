"""The registrar's own term files: a word vocabulary (``--term-words``, TOML) and a term order (``--term-order``,
one code per line, oldest first). A bad file raises :class:`~electives.errors.DataError` naming the file, the line
and what was expected, before any export is read."""

from __future__ import annotations

import tomllib
from pathlib import Path

from electives.data.term_words import PLACES
from electives.data.terms import TermReader, normalise_words, order_key
from electives.errors import DataError

VOCABULARY_FORMAT = (
    "# word or phrase = place within the academic year\n"
    '"herfstblok" = "first-semester"\n'
    '"zomerschool" = "summer-school"\n'
    f"(places: {', '.join(PLACES)})"
)


def _text(path: Path, flag: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{flag} {path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{flag} {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise DataError(f"{flag} {path}: cannot read it: {exc.strerror or exc}") from None


def _line_of(text: str, key: str) -> int:
    """The line a TOML key is written on (tomllib keeps no positions): the first line that starts with it."""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if stripped.startswith((f'"{key}"', f"'{key}'", key, f"[{key}]", f'["{key}"]')):
            return number
    return 0


def load_term_words(path: str | Path) -> dict[str, str]:
    """``--term-words FILE``: a TOML table of word or phrase → place (a name of :data:`PLACES`)."""
    path = Path(path)
    text = _text(path, "--term-words")
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(
            f"--term-words {path}: not valid TOML ({exc}); expected lines such as\n{VOCABULARY_FORMAT}"
        ) from None
    words: dict[str, str] = {}
    for phrase, place in table.items():
        line = _line_of(text, phrase)
        where = f"--term-words {path}, line {line}" if line else f"--term-words {path}"
        if not isinstance(place, str) or place not in PLACES:
            raise DataError(
                f"{where}: {phrase!r} = {place!r}: expected a place within the academic year, one of "
                f"{', '.join(PLACES)}, e.g.\n{VOCABULARY_FORMAT}"
            )
        tokens = normalise_words(phrase)
        if not tokens or not any(t.isalpha() for t in tokens):
            raise DataError(f"{where}: {phrase!r}: expected a word or phrase (years and numbers are read already)")
        if any(t.isdigit() and len(t) == 4 for t in tokens):
            raise DataError(f"{where}: {phrase!r}: expected a word without a year (the year is read from the code)")
        words[phrase] = place
    if not words:
        raise DataError(f"--term-words {path}: no words in it; expected lines such as\n{VOCABULARY_FORMAT}")
    return words


def load_term_order(path: str | Path) -> list[str]:
    """``--term-order FILE``: one term code per line, oldest first (blank lines and ``#`` comments skipped)."""
    path = Path(path)
    text = _text(path, "--term-order")
    codes: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.strip()
        if not code or code.startswith("#"):
            continue
        key = order_key(code)
        if key in seen:
            raise DataError(
                f"--term-order {path}, line {number}: {code!r} is already on line {seen[key]}; expected each term "
                "code once, oldest first"
            )
        seen[key] = number
        codes.append(code)
    if not codes:
        raise DataError(f"--term-order {path}: no term codes in it; expected one code per line, oldest first")
    return codes


def term_reader(words: str | Path | None = None, order: str | Path | None = None) -> TermReader:
    """The reader for an import's ``--term-words`` and ``--term-order`` files (either may be None)."""
    return TermReader(
        words=load_term_words(words) if words is not None else None,
        order=load_term_order(order) if order is not None else None,
    )
