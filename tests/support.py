"""What test modules share outside fixtures: a module-scoped fixture can use neither `capsys` (the `cli` fixture)
nor `monkeypatch` (the `secret_key` fixture), so these do the same for it; and a synthetic university imported
into SQLite, the start of every trained test world."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from electives.data.catalog import Catalog, read_catalog
from electives.data.importing import ImportResult, read_export
from electives.data.pseudonyms import Pseudonymiser
from electives.data.storage import Store
from electives.data.synth import EXPORT_MAPPING, SynthConfig, University, generate, write

TEST_KEY = "test-secret-key-0123456789abcdef"


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One torch thread inside the block: the test machine's 2 cores are shared, and OpenMP oversubscription
    stalls; the count is restored after it (other test files share the worker process)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@contextlib.contextmanager
def secret_key_set(root: Path) -> Iterator[pytest.MonkeyPatch]:
    """TEST_KEY in the environment inside the block, and a key file path inside ``root``: nothing reaches
    ~/.config (what the `secret_key` fixture does for one test)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ELECTIVES_SECRET_KEY", TEST_KEY)
        mp.setenv("ELECTIVES_KEY_FILE", str(root / "unused-secret.key"))
        yield mp


def bias_world(root: Path, rows: list[tuple[str, str, str, str]], catalog: str) -> str:
    """A hand-made registrar in ``root``: ``rows`` (student, term, course, mark on the percent scale) and the
    ``catalog`` CSV text imported into ``root/grades.db``, and a bias model trained on them in ``root/model``.
    Returns the database URL."""
    pd.DataFrame(rows, columns=["student", "term", "course", "grade"]).to_csv(root / "grades.csv", index=False)
    (root / "catalog.csv").write_text(catalog)
    db = f"sqlite:///{root / 'grades.db'}"
    with secret_key_set(root):
        run_all(
            ["import", root / "grades.csv", "--scale", "percent", "--catalog", root / "catalog.csv", "--db", db],
            ["train", "--db", db, "--out", root / "model", "--model", "bias", "--quiet"],
        )
    return db


def run_all(*commands: Sequence[object]) -> None:
    """Run each `electives` command in turn; fail with its stderr at the first that does not exit 0."""
    for argv in commands:
        code, _, err = run_cli(*argv)
        assert code == 0, f"electives {argv[0]}: {err}"


def run_cli(*args: object) -> tuple[int, str, str]:
    """Run `electives ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from electives.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


@dataclass(frozen=True, eq=False)
class ImportedUniversity:
    """A synthetic university written as the registrar's files, its export read under TEST_KEY, and both the
    grades and the catalogue saved into a SQLite database."""

    university: University
    paths: dict[str, Path]
    key: Pseudonymiser
    result: ImportResult
    catalog: Catalog
    db_path: Path
    db_url: str


def import_university(config: SynthConfig, root: Path) -> ImportedUniversity:
    """Generate ``config``'s university under ``root`` and import it as `electives import` would."""
    university = generate(config)
    paths = write(university, root / "synth")
    key = Pseudonymiser(TEST_KEY.encode())
    result = read_export(paths["grades"], mapping=EXPORT_MAPPING, scale="percent", pseudonymiser=key)
    catalog = read_catalog(paths["catalog"])
    db_path = root / "grades.db"
    url = f"sqlite:///{db_path}"
    with Store(url) as store:
        store.save_import(result, catalog)
    return ImportedUniversity(university, paths, key, result, catalog, db_path, url)
