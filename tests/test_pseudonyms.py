"""Keyed pseudonyms and access codes: stable under one key, unlinkable without it, key file created safely."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from electives.data.pseudonyms import KEY_ENV, KEY_FILE_ENV, Pseudonymiser, default_key_file, load_key
from electives.errors import ElectivesError

KEY = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No key in the environment; the key file inside tmp_path (never ~/.config)."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = tmp_path / "conf" / "electives" / "secret.key"
    monkeypatch.setenv(KEY_FILE_ENV, str(path))
    return path


def test_pseudonyms_are_stable_and_keyed() -> None:
    a, b = Pseudonymiser(KEY), Pseudonymiser(KEY)
    other = Pseudonymiser(b"another-key-of-enough-length!!")
    assert a.pseudonym("20190001") == b.pseudonym("20190001")
    assert a.pseudonym("20190001") != other.pseudonym("20190001")
    assert a.pseudonym("20190001") != a.pseudonym("20190002")
    assert re.fullmatch(r"[0-9a-f]{32}", a.pseudonym("20190001"))
    assert "20190001" not in a.pseudonym("20190001")


def test_ids_are_trimmed_but_case_sensitive() -> None:
    p = Pseudonymiser(KEY)
    assert p.pseudonym(" S1 ") == p.pseudonym("S1")
    assert p.pseudonym("s1") != p.pseudonym("S1")
    assert p.pseudonym(123) == p.pseudonym("123")  # type: ignore[arg-type]


def test_short_keys_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ElectivesError, match="at least 16 bytes"):
        Pseudonymiser(b"short")
    monkeypatch.setenv(KEY_ENV, "too-short")
    with pytest.raises(ElectivesError) as err:
        load_key()
    assert str(err.value) == f"{KEY_ENV} must be at least 16 characters long"


def test_key_from_the_environment(monkeypatch: pytest.MonkeyPatch, no_env_key: Path) -> None:
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    assert Pseudonymiser.from_environment().pseudonym("x") == Pseudonymiser(KEY).pseudonym("x")
    assert not no_env_key.exists()  # the environment key wins; no file is made


def test_key_file_is_created_once_with_mode_0600(no_env_key: Path) -> None:
    first = Pseudonymiser.from_environment().pseudonym("20190001")
    assert no_env_key.exists()
    assert stat.S_IMODE(no_env_key.stat().st_mode) == 0o600
    assert re.fullmatch(rb"[0-9a-f]{64}\n", no_env_key.read_bytes())
    assert Pseudonymiser.from_environment().pseudonym("20190001") == first  # read back, not replaced
    assert Pseudonymiser(no_env_key.read_bytes().strip()).pseudonym("20190001") == first


def test_key_file_problems(no_env_key: Path) -> None:
    with pytest.raises(ElectivesError) as err:
        load_key(create=False)
    assert str(err.value) == f"no secret key: set {KEY_ENV} or create the key file {no_env_key}"
    no_env_key.parent.mkdir(parents=True)
    no_env_key.write_bytes(b"short\n")
    with pytest.raises(ElectivesError) as err:
        load_key()
    assert str(err.value) == f"the key file {no_env_key} holds fewer than 16 bytes"


def test_default_key_file_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "k"))
    assert default_key_file() == tmp_path / "k"
    monkeypatch.delenv(KEY_FILE_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_key_file() == tmp_path / "xdg" / "electives" / "secret.key"


def test_access_codes() -> None:
    p = Pseudonymiser(KEY)
    code = p.access_code("20190001")
    assert re.fullmatch(r"[A-HJ-NP-Z2-9]{5}-[A-HJ-NP-Z2-9]{5}", code)  # no 0/O, 1/I
    assert code == Pseudonymiser(KEY).access_code("20190001")
    assert code != p.access_code("20190002")
    assert code != Pseudonymiser(b"another-key-of-enough-length!!").access_code("20190001")
    for typed in (code, code.lower(), code.replace("-", ""), f" {code[:5]} {code[6:]} "):
        assert p.check_access_code("20190001", typed)
    assert not p.check_access_code("20190002", code)
    assert not p.check_access_code("20190001", "AAAAA-AAAAA")
    assert not p.check_access_code("20190001", "ÄÄÄÄÄ-ÄÄÄÄÄ")  # non-ASCII is simply wrong, never an exception
    assert code.replace("-", "").lower() not in p.pseudonym("20190001")  # domain-separated from the pseudonym
