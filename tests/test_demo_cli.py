"""`electives demo`: the whole path on a small synthetic university, through the real sub-commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

from electives.cli import main


def test_demo_runs_the_whole_path(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("ELECTIVES_SECRET_KEY", raising=False)
    monkeypatch.delenv("ELECTIVES_KEY_FILE", raising=False)
    root = tmp_path / "demo"
    argv = ["demo", "--dir", str(root), "--students", "300", "--epochs", "2", "--quiet", "-k", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # Every step ran and said so, in order.
    steps = [int(n) for n in re.findall(r"^== (\d)\.", out, flags=re.M)]
    assert steps == [1, 2, 3, 4, 5, 6]
    # The evaluation compared NeuMF with the baselines on the held-out latest term and wrote its report.
    report = json.loads((root / "report" / "report.json").read_text())
    assert report["context"]["split"] == "temporal"
    assert {"neumf", "bias", "mf"} <= set(report["metrics"])
    assert report["metrics"]["neumf"]["rmse"] < report["metrics"]["global-mean"]["rmse"]
    assert (root / "report" / "report.md").is_file()
    assert (root / "model" / "manifest.json").is_file()
    assert (root / "secret.key").is_file()  # the demo's own key, never ~/.config
    manifest = json.loads((root / "model" / "manifest.json").read_text())
    assert manifest["n_students"] > 0
    # Two recommendation blocks of k cards each, each checked against the ground truth.
    assert len(re.findall(r"^Top 3 electives", out, flags=re.M)) == 2
    assert len(re.findall(r"predicted +\d+\.\d +true +\d+\.\d", out)) == 6
    typed = (root / "new-student-grades.csv").read_text().splitlines()
    assert typed[0] == "course,grade" and len(typed) == 7


def test_demo_is_repeatable_in_place(tmp_path: Path, capsys, monkeypatch) -> None:
    """A second run reuses the database: the import adds nothing and the model is replaced atomically."""
    monkeypatch.setenv("ELECTIVES_SECRET_KEY", "test-key-for-demo")
    root = tmp_path / "demo"
    argv = ["demo", "--dir", str(root), "--students", "200", "--epochs", "1", "--skip-evaluate", "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "was already imported" in out and "nothing added" in out


def test_demo_rejects_bad_epochs(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--dir", str(tmp_path), "--epochs", "0"]) == 2
    assert "--epochs 0" in capsys.readouterr().err
