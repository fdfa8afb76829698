"""Keyed pseudonyms: raw student ids are replaced by HMAC-SHA256 digests before anything is stored.

The key comes from ``ELECTIVES_SECRET_KEY`` or from a key file (``ELECTIVES_KEY_FILE``, default
``~/.config/electives/secret.key``) created on first use with mode 0600. Without the key a pseudonym cannot be
linked back to a student, and the same key always gives the same pseudonym, so later imports and recommendation
requests find the same student.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from electives.errors import ElectivesError

KEY_ENV = "ELECTIVES_SECRET_KEY"
KEY_FILE_ENV = "ELECTIVES_KEY_FILE"
_MIN_KEY_BYTES = 16
# Domain separation: a pseudonym and an access code of the same id must not be derivable from each other.
_PSEUDONYM_CONTEXT = b"electives/pseudonym/v1\x00"
_ACCESS_CONTEXT = b"electives/access-code/v1\x00"
_MODEL_CONTEXT = b"electives/model-signature/v1\x00"
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are read aloud and typed


def default_key_file() -> Path:
    if path := os.environ.get(KEY_FILE_ENV):
        return Path(path)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "electives" / "secret.key"


def load_key(key_file: Path | None = None, create: bool = True) -> bytes:
    """The secret key: the environment variable if set, else the key file (created when ``create``)."""
    if env := os.environ.get(KEY_ENV):
        key = env.encode("utf-8")
        if len(key) < _MIN_KEY_BYTES:
            raise ElectivesError(f"{KEY_ENV} must be at least {_MIN_KEY_BYTES} characters long")
        return key
    path = key_file or default_key_file()
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        if not create:
            raise ElectivesError(f"no secret key: set {KEY_ENV} or create the key file {path}") from None
        return _create_key_file(path)
    except OSError as exc:
        raise ElectivesError(f"cannot read the key file {path}: {exc}") from exc
    if len(key) < _MIN_KEY_BYTES:
        raise ElectivesError(f"the key file {path} holds fewer than {_MIN_KEY_BYTES} bytes")
    return key


def _create_key_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode("ascii")
    try:
        # O_EXCL: two first imports racing must not end up with two different keys.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_key(path, create=False)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


def existing_pseudonymiser(key_file: Path | None = None) -> Pseudonymiser | None:
    """The deployment's pseudonymiser when its key exists (environment or key file), else None — never creates a
    key (signing a model with a fresh key would bind it to no deployment)."""
    try:
        return Pseudonymiser(load_key(key_file, create=False))
    except ElectivesError:
        return None


class Pseudonymiser:
    """Maps raw student ids to stable pseudonyms (and access codes) under one secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ElectivesError(f"secret key must be at least {_MIN_KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def from_environment(cls, key_file: Path | None = None) -> Pseudonymiser:
        return cls(load_key(key_file))

    def pseudonym(self, raw_id: str) -> str:
        """32 hex characters (128 bits) of HMAC-SHA256 over the trimmed id."""
        digest = hmac.new(self._key, _PSEUDONYM_CONTEXT + _canonical(raw_id), hashlib.sha256)
        return digest.hexdigest()[:32]

    def access_code(self, raw_id: str) -> str:
        """A 10-character code the registrar hands to a student; derived from the id, so nothing is stored."""
        digest = hmac.new(self._key, _ACCESS_CONTEXT + _canonical(raw_id), hashlib.sha256).digest()
        n = int.from_bytes(digest[:8], "big")
        chars = []
        for _ in range(10):
            n, r = divmod(n, len(_CODE_ALPHABET))
            chars.append(_CODE_ALPHABET[r])
        return "".join(chars[:5]) + "-" + "".join(chars[5:])

    def model_signature(self, manifest_sha256: str) -> str:
        """HMAC-SHA256 of a model manifest's digest (which covers the weights' digest too): only tools holding this
        deployment's key can write a model its server accepts when it requires signed models."""
        return hmac.new(self._key, _MODEL_CONTEXT + manifest_sha256.encode("ascii"), hashlib.sha256).hexdigest()

    def check_access_code(self, raw_id: str, code: str) -> bool:
        wanted = self.access_code(raw_id)
        given = code.strip().upper().replace(" ", "")
        if "-" not in given and len(given) == 10:
            given = given[:5] + "-" + given[5:]
        # compare_digest refuses non-ASCII str; bytes compare in constant time whatever was typed.
        return hmac.compare_digest(wanted.encode("utf-8"), given.encode("utf-8"))


def _canonical(raw_id: str) -> bytes:
    return str(raw_id).strip().encode("utf-8")
