"""Privacy audit: use the product as a user would (the `electives` command in a fresh directory), then read every
byte it wrote and look for the students' raw ids and names. There must be none, anywhere: database, model
artifact, import report, printed output. Folding in a new student's grades must leave no trace on disk.

The input is a synthetic university whose student ids are rewritten to ``QZX-<serial>-ID`` and which gets a
``full name`` column of made-up names (``Qyxandra Vorbelt<serial>``): strings that cannot turn up by chance in
numbers, hashes or binary data, so a hit is a real leak. HOME, TMPDIR and the XDG folders point inside the audited
directory, so whatever the product writes to the usual places is audited too.

To extend the audit (e.g. the web app: serve, call the API, then audit), use the module-scoped ``product_run``
fixture: ``product_run.cli([...], ...)`` / ``product_run.env`` run more of the product in the same directory, and
``product_run.assert_no_raw_data()`` checks everything written so far (``snapshot()`` compares before/after).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from electives.data.synth import SynthConfig, generate, write

SYNTH_FLAGS = [
    "--map", "student=student serial", "--map", "term=Year+term", "--map", "course=Crs Code",
    "--map", "course_name=Course Name", "--map", "grade=total", "--scale", "percent",
]  # fmt: skip
TINY = ["--epochs", "3", "--gmf-dim", "4", "--mlp-dim", "4", "--mlp-layers", "8", "--quiet"]


# Runs `electives` commands in one process, each with stdout/stderr in its own files, as the shell would.
_DRIVER = """
import contextlib, json, sys
from electives.cli import main
codes = []
for name, args in json.loads(sys.argv[1]):
    with open(name + ".stdout", "w", encoding="utf-8") as out, open(name + ".stderr", "w", encoding="utf-8") as err:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
    codes.append(code)
    if code:
        break
print(json.dumps(codes))
"""


def raw_id(serial: str) -> str:
    return f"QZX-{serial}-ID"


def raw_name(serial: str) -> str:
    return f"Qyxandra Vorbelt{serial}"


@dataclass
class ProductRun:
    """A directory where the product is used as a user would use it, and the raw data that must not leak from it.

    ``inputs``: files the user supplied (the registrar's export etc.), which legitimately hold raw ids.
    ``echoes``: outputs that by design repeat raw ids the user gave in an input (`score` writes back the pairs it
    was given), mapped to the set of ids they may contain. Everything else must hold no raw id or name."""

    root: Path
    env: dict[str, str]
    ids: set[str]
    names: set[str]
    inputs: set[Path] = field(default_factory=set)
    echoes: dict[Path, set[str]] = field(default_factory=dict)
    steps: int = 0

    def cli(self, *commands: list[object]) -> list[str]:
        """Run each command (the arguments of `electives ...`) through the `electives` entry point, in order, in
        ONE fresh Python process in `root` (imports are paid once); stop at the first failure. What each prints is
        kept under `root/captured/`, so it is audited like any file the product writes. Returns the stdouts."""
        captured = self.root / "captured"
        captured.mkdir(exist_ok=True)
        steps = []
        for args in commands:
            self.steps += 1
            steps.append((str(captured / f"{self.steps:02d}-{args[0]}"), [str(a) for a in args]))
        proc = subprocess.run(
            [sys.executable, "-c", _DRIVER, json.dumps(steps)], cwd=self.root, env=self.env, capture_output=True
        )
        assert proc.returncode == 0, f"driver failed:\n{proc.stderr.decode()[-3000:]}"
        codes = json.loads(proc.stdout)
        for (name, args), code in zip(steps, codes, strict=False):
            err = Path(name + ".stderr").read_text()
            assert code == 0, f"electives {' '.join(args)} exited {code}:\n{err[-2000:]}"
        assert len(codes) == len(steps)
        return [Path(name + ".stdout").read_text() for name, _ in steps]

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file() or p.is_symlink())

    def snapshot(self, exclude: tuple[str, ...] = ("captured",)) -> dict[str, str]:
        """{relative path: sha256} of every file, leaving out the test's own captures."""
        out = {}
        for p in self.files():
            rel = p.relative_to(self.root)
            if rel.parts[0] not in exclude:
                out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
        return out

    def leaks(self) -> dict[str, list[str]]:
        """{file: raw ids/names found in it} over every file written that is not an input."""
        found: dict[str, list[str]] = {}
        needles = [(s, s) for s in sorted(self.ids | self.names)]
        for path in self.files():
            if path in self.inputs:
                continue
            data = path.read_bytes()
            # UTF-8, UTF-16 and case changes: a leak in another encoding or case is still a leak.
            haystacks = (data.lower(), data.decode("utf-16-le", errors="ignore").lower().encode())
            allowed = self.echoes.get(path, set())
            hits = [
                label
                for label, text in needles
                if label not in allowed and any(text.lower().encode() in h for h in haystacks)
            ]
            if hits:
                found[str(path.relative_to(self.root))] = hits[:5] + (
                    [f"... {len(hits)} in all"] if len(hits) > 5 else []
                )
        return found

    def assert_no_raw_data(self) -> None:
        leaks = self.leaks()
        assert not leaks, f"raw student ids or names written by the product: {leaks}"


@pytest.fixture(scope="module")
def product_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductRun]:
    """synthetic export with rewritten ids and added names → import into SQLite → train → recommend (a known student) →
    score: the `make run` journey plus the everyday commands, in a fresh directory with its own key file."""
    root = tmp_path_factory.mktemp("audit")
    for d in ("home", "tmp", "cache", "config", "input"):
        (root / d).mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ELECTIVES_") and k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")
    }
    env.update(
        ELECTIVES_KEY_FILE=str(root / "secret.key"),  # created by the first import, inside the audited directory
        HOME=str(root / "home"),
        TMPDIR=str(root / "tmp"),
        XDG_CACHE_HOME=str(root / "cache"),
        XDG_CONFIG_HOME=str(root / "config"),
        MPLCONFIGDIR=str(root / "cache" / "mpl"),
        OMP_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    run = ProductRun(root, env, set(), set())
    # The registrar's export: a synthetic university (the same files `electives synth` writes) with ids rewritten.
    uni = root / "input" / "university"
    write(generate(SynthConfig(n_students=120, seed=11)), uni)
    export = pd.read_csv(uni / "grades.csv", dtype=str, keep_default_na=False)
    serials = export["student serial"]
    export["student serial"] = serials.map(raw_id)
    export.insert(1, "full name", serials.map(raw_name))
    export.to_csv(root / "input" / "export.csv", index=False)
    # The generator's own files hold its original serials; the audited input is export.csv only.
    for name in ("grades.csv", "grades-latin1.csv", "truth.csv"):
        (uni / name).unlink(missing_ok=True)
    run.ids, run.names = set(serials.map(raw_id)), set(serials.map(raw_name))
    assert len(run.ids) == 120
    counts = export["student serial"].value_counts(sort=False)
    known = str(counts.index[counts.between(4, 10)][0])  # early in their studies: electives left to recommend
    pairs = root / "input" / "pairs.tsv"
    picked = export.drop_duplicates("student serial").head(5)
    pairs.write_text("".join(f"{s}\t{c}\n" for s, c in zip(picked["student serial"], picked["Crs Code"], strict=True)))

    db = "sqlite:///electives.db"
    run.cli(
        ["import", "input/export.csv", "--db", db, *SYNTH_FLAGS, "--catalog", uni / "catalog.csv",
         "--report", "import-report.json"],
        ["train", "--db", db, "--out", "model", *TINY],
        ["recommend", "model", "--student", known, "--db", db, "-k", "10"],
        ["score", "model", "--pairs", pairs, "--out", "scored.tsv"],
    )  # fmt: skip
    run.inputs = {p for p in run.files() if p.is_relative_to(root / "input")}
    run.echoes = {root / "scored.tsv": set(picked["student serial"])}
    yield run


def test_the_journey_wrote_what_a_user_expects(product_run: ProductRun) -> None:
    root = product_run.root
    for path in ("electives.db", "model/manifest.json", "model/model.safetensors", "import-report.json",
                 "scored.tsv", "secret.key"):  # fmt: skip
        assert (root / path).is_file(), path
    shown = sorted((root / "captured").glob("*-recommend.stdout"))[-1].read_text()
    assert " 1. " in shown, f"the known student got no recommendation, so the audit covers no real answer:\n{shown}"
    assert len((root / "scored.tsv").read_text().splitlines()) == 5


def test_no_raw_id_or_name_in_anything_the_product_wrote(product_run: ProductRun) -> None:
    # The check can fail: planting one raw id in a written file is caught.
    canary = product_run.root / "tmp" / "canary.txt"
    canary.write_text(f"oops {sorted(product_run.ids)[0].lower()}")
    try:
        assert "tmp/canary.txt" in product_run.leaks()
    finally:
        canary.unlink()
    product_run.assert_no_raw_data()


def test_score_echoes_only_the_ids_it_was_given(product_run: ProductRun) -> None:
    scored = product_run.root / "scored.tsv"
    text = scored.read_text()
    given = product_run.echoes[scored]
    assert {line.split("\t")[0] for line in text.splitlines()} == given
    assert not [s for s in product_run.ids - given if s in text]


def test_fold_in_leaves_no_trace(product_run: ProductRun) -> None:
    run = product_run
    grades = run.root / "input" / "new-student.csv"
    grades.write_text("course,grade\nCS101,88\nMA101,71\nCS102,64\n")
    run.inputs.add(grades)
    before = run.snapshot()
    (shown,) = run.cli(["recommend", "model", "--grades", grades, "--db", "sqlite:///electives.db", "--json"])
    out = json.loads(shown)
    assert out["recommendations"] and out["grades_used"] == 3
    after = run.snapshot()
    assert after == before, {
        "new": sorted(set(after) - set(before)),
        "changed": sorted(k for k in before if k in after and after[k] != before[k]),
        "removed": sorted(set(before) - set(after)),
    }
    run.assert_no_raw_data()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, body: dict | None = None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_serving_and_the_api_leave_no_raw_data(product_run: ProductRun) -> None:
    """`electives serve` under gunicorn, called as a student would: with their number and access code (right and
    wrong) and with typed grades. Its logs are audited too; nothing else on disk may change."""
    import signal
    import time

    from electives.data.pseudonyms import Pseudonymiser, load_key

    run = product_run
    known = sorted(run.ids)[3]
    code = Pseudonymiser(load_key(run.root / "secret.key", create=False)).access_code(known)
    port = _free_port()
    before = run.snapshot()
    log = run.root / "captured" / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "electives", "serve", "model", "--db", "sqlite:///electives.db",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=run.root, env=run.env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(240):
                try:
                    if _call(base + "/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                assert server.poll() is None, log.read_text()[-2000:]
                time.sleep(0.25)
            else:
                pytest.fail(f"the server did not become ready:\n{log.read_text()[-2000:]}")
            status, body = _call(base + "/api/v1/students/recommendations", {"student_id": known, "access_code": code})
            assert status == 200, body
            assert json.loads(body)["recommendations"]
            status, body = _call(
                base + "/api/v1/students/recommendations", {"student_id": known, "access_code": "AAAAA-AAAAA"}
            )
            assert status in (401, 403), body
            assert known not in body
            status, body = _call(
                base + "/api/v1/recommendations",
                {"grades": [{"course": "CS101", "grade": "88"}, {"course": "MA101", "grade": "71"}]},
            )
            assert status == 200, body
            status, _ = _call(base + "/")
            assert status == 200
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    assert log.stat().st_size > 0  # the access log was written, so it was audited
    after = run.snapshot()
    assert after == before, {"new": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after))}
    run.assert_no_raw_data()
