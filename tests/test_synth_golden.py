"""The synthetic university's files are pinned byte for byte: a refactoring of the generator must not move a
single random draw. The digests were taken from the generator before it was split into a package; a deliberate
change to the generated data updates them (and says so in its commit): the catalogues' and README's digests
changed when the electives got seats (the capacity column); the grades and truth did not move."""

from __future__ import annotations

import hashlib
from pathlib import Path

from electives.data.synth import SynthConfig, generate, write, write_large

SMALL = {
    "grades": "0c3f5e7c5fd5158aa824e2a6fcd0334067eb6406a0d373cf481408ede3f393f8",
    "grades_latin1": "fd34b5350430ac9d0804f37bdc891e57f5454fb83d92494e1d9cbede36bb8c46",
    "catalog": "22def22338cf9c78e7d3c7523f9513e65778d8b6a596ac24c1d0925032ce27a7",
    "truth": "09603bc56f1090021cd5385934c4317b3e358fc92cd3d29cff1c79ba46c47271",
    "readme": "1eb505be59e60d2da2841194efb2cec97eb32f6a504916d19691c47059442323",
}
LARGE = {
    "grades": "4e5598c72f21d90b16a0d7751aa061f8f2b0639afdcec0bc6dc93ab17fb2de27",
    "catalog": "579f44f3c51496a3c648df5740e018a8b48005624ae683957a88de9a91ad6d37",
}


def _digests(paths: dict[str, Path]) -> dict[str, str]:
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in paths.items()}


def test_small_university_files_are_pinned(tmp_path: Path) -> None:
    assert _digests(write(generate(SynthConfig(n_students=200, seed=11)), tmp_path)) == SMALL


def test_write_large_files_are_pinned(tmp_path: Path) -> None:
    # chunk_students smaller than n_students: the chunked loop must draw in the same order too
    paths = write_large(tmp_path, n_students=300, n_courses=60, grades_per_student=12, chunk_students=128)
    assert _digests(paths) == LARGE
