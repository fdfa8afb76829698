"""The source file, before any row is read: size limit, SHA-256, gzip (told by magic bytes, not by the file name)
and the encoding — UTF-8 (with or without BOM), UTF-16/32 with a BOM, else latin-1, or as given. Binaries (by
magic bytes, NUL bytes or control characters), undecodable and truncated files raise
:class:`~electives.errors.DataError`."""

from __future__ import annotations

import codecs
import gzip
import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from electives.errors import DataError

SNIFF_BYTES = 64 * 1024  # decoded head kept for delimiter sniffing
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx or .ods workbook?)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an OLE document (an old .xls workbook?)"),
    (b"%PDF-", "a PDF document"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"BZh91AY&SY", "a bzip2 archive"),
    (b"\x7fELF", "an executable"),
    (b"PAR1", "a Parquet file"),
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


@dataclass
class Source:
    """How to read the file: compressed or not, the codec, its decoded head and notes for the report."""

    gzip: bool
    codec: str
    encoding_label: str
    head: str
    notes: list[str]


def check_file(path: Path, *, max_size: int | None) -> int:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: file does not exist") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    size = st.st_size
    if size == 0:
        raise DataError(f"{path.name} is empty: expected a header line and grade rows")
    if max_size is not None and size > max_size:
        suggestion = f"{-(-size // 2**20)}M"
        raise DataError(
            f"{path.name} is {_human(size)}{f' ({size:,} bytes)' if size >= 1024 else ''}, over the import limit "
            f"of {_human(max_size)}; "
            f"if the file is right, raise the limit with --max-size (e.g. --max-size {suggestion})"
        )
    return size


def _human(n: int) -> str:
    """1536 → '1.5 KiB'; 209715200 → '200 MiB'."""
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
    except OSError as exc:
        raise DataError(f"{path.name} cannot be read: {exc.strerror or exc}") from None
    return h.hexdigest()


def open_binary(path: Path, *, is_gzip: bool) -> BinaryIO:
    raw = path.open("rb")
    return gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip else raw  # type: ignore[return-value]


def _gzip_error(name: str, exc: BaseException) -> DataError:
    detail = "it ends early (truncated)" if isinstance(exc, EOFError) else f"it is corrupt ({exc})"
    return DataError(f"{name} is gzip-compressed but {detail}; copy the file again or export it uncompressed")


def sniff(path: Path, *, name: str, encoding: str | None) -> Source:
    """Decide compression and encoding, refuse binaries, and check the whole file decodes (one streaming pass,
    so a bad byte near the end is found before any row is cleaned)."""
    with path.open("rb") as fh:
        magic = fh.read(2)
    is_gzip = magic == _GZIP_MAGIC
    try:
        with open_binary(path, is_gzip=is_gzip) as fh:
            head = fh.read(SNIFF_BYTES)
    except (EOFError, OSError, zlib.error) as exc:
        if is_gzip:
            raise _gzip_error(name, exc) from None
        raise DataError(f"{name} cannot be read: {exc}") from None
    if not head.strip():
        raise DataError(f"{name} is empty: expected a header line and grade rows")
    for sig, what in _MAGIC:
        if head.startswith(sig):
            raise DataError(f"{name} is {what}, not a CSV/TSV export; export the grades as CSV first")

    notes: list[str] = []
    if encoding is not None:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            raise DataError(f"--encoding {encoding!r} is not an encoding Python knows (try utf-8 or latin-1)") from None
        if codec == "utf-8" and head.startswith(codecs.BOM_UTF8):
            codec = "utf-8-sig"
        label, fallback = codec, None
    else:
        codec = next((c for bom, c in _BOMS if head.startswith(bom)), "utf-8")
        label, fallback = codec, ("latin-1" if codec == "utf-8" else None)

    if not codec.startswith(("utf-16", "utf-32")) and b"\x00" in head:
        hint = ""
        if head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4:
            hint = " (it looks like UTF-16 without a byte-order mark: pass --encoding utf-16-le or utf-16-be)"
        line = head.count(b"\n", 0, head.index(b"\x00")) + 1
        raise DataError(f"{name} contains NUL bytes (line {line}): it is not a text CSV/TSV export{hint}")
    bad = _first_decode_error(path, is_gzip, codec, name)
    if bad is not None:
        offset, line, byte = bad
        if fallback is None:
            raise DataError(
                f"{name} is not valid {codec}: byte 0x{byte:02x} at line {line} (byte {offset:,}) cannot be "
                "decoded; pass the right --encoding (e.g. latin-1) or re-save the file as UTF-8"
            )
        codec = label = fallback
        notes.append(f"not valid UTF-8 (byte 0x{byte:02x} at line {line}); read as latin-1")
        _first_decode_error(path, is_gzip, codec, name)  # latin-1 always decodes; this looks for NUL bytes
    if codec == "utf-8-sig":
        label = "utf-8 (BOM)"

    decoder = codecs.getincrementaldecoder(codec)(errors="replace")
    text = decoder.decode(head, final=False)
    if len(_CONTROL.findall(text)) > max(8, len(text) // 50):
        raise DataError(f"{name} is a binary file, not a CSV/TSV export (too many control characters)")
    if is_gzip:
        notes.append("gzip-compressed")
    return Source(gzip=is_gzip, codec=codec, encoding_label=label, head=text, notes=notes)


def _first_decode_error(path: Path, is_gzip: bool, codec: str, name: str) -> tuple[int, int, int] | None:
    """(byte offset, line, byte) of the first byte that does not decode, or None; also refuses NUL bytes and
    truncated gzip streams anywhere in the file."""
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    offset = 0
    lines = 0
    try:
        with open_binary(path, is_gzip=is_gzip) as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    start = max(exc.start, 0)
                    return offset + start, lines + chunk[:start].count(b"\n") + 1, exc.object[exc.start]
                if "\x00" in text:
                    line = lines + text.count("\n", 0, text.index("\x00")) + 1
                    raise DataError(f"{name} contains NUL bytes (line {line}): it is not a text CSV/TSV export")
                lines += text.count("\n")
                offset += len(chunk)
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                return offset, lines + 1, exc.object[exc.start]
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _gzip_error(name, exc) from None
    return None
