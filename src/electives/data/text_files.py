"""Small text files a user hands over (a course catalogue, a list of grades): read whole, UTF-8 with or without a
byte-order mark, else latin-1 — registrars' spreadsheets save either, and every byte is a latin-1 character, so
reading never fails on the encoding."""

from __future__ import annotations

from pathlib import Path

from electives.errors import DataError

__all__ = ["read_text_file"]


def read_text_file(path: str | Path, *, what: str, shown: str | None = None) -> str:
    """The text of ``path``; a DataError naming it (as ``shown``, default the path) and ``what`` it should have
    been (e.g. "grades file") when it is missing or unreadable."""
    name = shown or str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{name}: no such {what}") from None
    except OSError as exc:
        raise DataError(f"{name}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")
