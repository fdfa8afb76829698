"""An advisor's own list of students (``--students ids.txt``): raw numbers in, pseudonyms out, nothing stored.

One student number per line; blank lines and lines starting with ``#`` are skipped; a header line ``student``
(any case) is allowed so a one-column spreadsheet export works. The raw numbers live only in memory, to label the
rows of a report with the numbers the advisor gave.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from electives.data.pseudonyms import Pseudonymiser, load_key
from electives.data.text_files import read_text_file
from electives.errors import DataError

__all__ = ["Advisees", "read_advisees"]

_HEADERS = {"student", "student_id", "student id", "id", "number", "student number"}


@dataclass(frozen=True)
class Advisees:
    """The ids as given (file order, first occurrence kept) and their pseudonyms, index for index."""

    given: tuple[str, ...]
    pseudonyms: tuple[str, ...]
    duplicates: int = 0  # lines that repeated an id already listed

    def labels(self) -> dict[str, str]:
        """Pseudonym → the number the advisor gave, for labelling report rows."""
        return dict(zip(self.pseudonyms, self.given, strict=True))

    def unknown(self, on_record: set[str] | frozenset[str]) -> tuple[str, ...]:
        """The given numbers whose pseudonym is not among ``on_record`` (counted in reports, not an error)."""
        return tuple(g for g, p in zip(self.given, self.pseudonyms, strict=True) if p not in on_record)


def read_advisees(path: str | Path, *, pseudonymiser: Pseudonymiser | None = None) -> Advisees:
    """Read an ids file; a DataError naming the file and line when a line is not one student number.
    ``pseudonymiser``: default the deployment's key, never created here (a new key would match no stored
    student: its absence is an error naming where the key is looked for)."""
    if pseudonymiser is None:
        pseudonymiser = Pseudonymiser(load_key(create=False))
    text = read_text_file(path, what="student ids file")
    given: list[str] = []
    seen: set[str] = set()
    duplicates = 0
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        if not given and not seen and value.lower() in _HEADERS:
            continue
        if "," in value or "\t" in value or ";" in value:
            raise DataError(
                f"{path}: line {number}: expected one student number per line, got {value[:40]!r} "
                "(several columns — save only the student number column)"
            )
        if value in seen:
            duplicates += 1
            continue
        seen.add(value)
        given.append(value)
    if not given:
        raise DataError(f"{path}: no student numbers (expected one per line)")
    return Advisees(
        given=tuple(given), pseudonyms=tuple(pseudonymiser.pseudonym(g) for g in given), duplicates=duplicates
    )
