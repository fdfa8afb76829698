"""Shared by the web tests: one tiny trained world per test process, and app factories over it.

A small synthetic university is imported into SQLite, a small NeuMF is trained for a few epochs and saved as an
artifact with calibration and metrics, and a PNG is put beside it for the model page. Built once per process
(pytest-xdist runs each web test file in some worker; the cache keeps it to one training per worker).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import TEST_KEY, import_university, one_torch_thread

from electives.data.catalog import Catalog
from electives.data.importing import ImportResult
from electives.data.interactions import Interactions
from electives.data.pseudonyms import Pseudonymiser
from electives.data.splits import validation_split
from electives.data.synth import SynthConfig, University
from electives.models.artifact import save_model
from electives.models.calibration import fit_conformal
from electives.models.training import NCF, TrainConfig, fit

KEY = TEST_KEY  # the pseudonym key
WEB_SECRET = "web-test-secret-" + "0" * 32
ADVISOR_TOKEN = "advisor-test-token-0123456789"
CONFIG = SynthConfig(n_students=120, n_courses=24, n_electives=12, n_departments=2, seed=11)
TRAIN = TrainConfig(gmf_dim=8, mlp_dim=8, mlp_layers=(16, 8), lr=0.01, batch_size=128, epochs=6, patience=6, seed=0)


@dataclass(frozen=True, eq=False)
class WebWorld:
    root: Path
    university: University
    result: ImportResult
    catalog: Catalog
    catalog_path: Path
    db_url: str
    model_dir: Path
    fitted: NCF
    train: Interactions
    key: Pseudonymiser

    def grades_of(self, raw_id: str) -> list[tuple[str, str]]:
        """A student's (course, mark) rows as the registrar exported them (marks are percent totals)."""
        frame = self.result.frame
        rows = frame[(frame["student"] == self.key.pseudonym(raw_id)) & frame["points"].notna()]
        return list(zip(rows["course"], rows["mark"], strict=True))


def tiny_png(width: int = 32, height: int = 24, *, blank: bool = False) -> bytes:
    """A valid grey PNG for the model page's plots: a dark diagonal on light grey (something drawn, as a plot
    has), or one flat grey when ``blank`` (an empty frame, which the page must leave off)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    def pixel(x: int, y: int) -> int:
        return 0x20 if not blank and abs(x * height - y * width) < width else 0xE0

    raw = b"".join(b"\x00" + bytes(pixel(x, y) for x in range(width)) for y in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@functools.cache
def web_world() -> WebWorld:
    root = Path(tempfile.mkdtemp(prefix="electives-web-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    with one_torch_thread():
        imported = import_university(CONFIG, root)
        result = imported.result
        frame = result.frame
        df = pd.DataFrame(
            {"student": frame["student"], "course": frame["course"], "term": frame["term_key"], "grade": frame["grade"]}
        )
        train = Interactions.from_frame(df[df["grade"].notna()].astype({"term": "int64"}))
        fitted = fit(train, TRAIN, progress=False)
        # The validation rows `fit` carved out of `train` and never trained on (explicit: no refit): the metrics
        # and the interval come from them, as `electives train` does it.
        cfg = TRAIN.resolved()
        _, val = validation_split(train, cfg.validation, cfg.val_fraction, cfg.seed)  # type: ignore[arg-type]
        residuals = val.grades - fitted.predict(val.students, val.courses)
        metrics = {
            "val_rmse": float(np.sqrt(np.mean(residuals**2))) * 100,  # percent points
            "val_mae": float(np.mean(np.abs(residuals))) * 100,
            "validation_rows": len(val),
        }
        names = dict(zip(frame["course"], frame["course_name"], strict=True))
        model_dir = save_model(
            root / "model",
            fitted,
            train,
            scale=result.scale,
            course_names=names,
            calibration=fit_conformal(residuals, 0.8),
            metrics=metrics,
        )
        (model_dir / "calibration.png").write_bytes(tiny_png())
        # Plots the model page must leave off: an empty frame, a zero-byte file and a truncated one.
        (model_dir / "blank.png").write_bytes(tiny_png(blank=True))
        (model_dir / "zero.png").write_bytes(b"")
        (model_dir / "truncated.png").write_bytes(tiny_png()[:40])
    return WebWorld(
        root,
        imported.university,
        result,
        imported.catalog,
        imported.paths["catalog"],
        imported.db_url,
        model_dir,
        fitted,
        train,
        imported.key,
    )


def save_variant(world: WebWorld, out: Path, seed: int) -> Path:
    """The world's model with slightly perturbed output bias: same shape, different weights and version."""
    fitted = world.fitted
    state = {k: v.clone() for k, v in fitted.model.state_dict().items()}
    fitted.model.out.bias.data += 0.01 * (seed + 1)
    try:
        return save_model(
            out,
            fitted,
            world.train,
            scale=world.result.scale,
            course_names=dict(zip(world.result.frame["course"], world.result.frame["course_name"], strict=True)),
            calibration=fit_conformal(np.linspace(-0.1, 0.1, 50), 0.8),
            metrics={"val_rmse": 5.0 + seed},
        )
    finally:
        fitted.model.load_state_dict(state)


def web_config(world: WebWorld, **overrides: Any):
    from electives.web import WebConfig

    values: dict[str, Any] = {
        "model_dir": world.model_dir,
        "db_url": world.db_url,
        "catalog": world.catalog_path,
        "secret_key": WEB_SECRET,
        "reload_seconds": 0,
        # Leave torch's and OpenBLAS' thread counts alone: they are process-wide, and other test files share the
        # process (a served worker sets both to 1; `electives serve` is tested in a subprocess).
        "torch_threads": None,
    }
    values.update(overrides)
    return WebConfig(**values)


def make_app(world: WebWorld, **overrides: Any):
    """A Flask app over the world (the pseudonym key is in the environment only while the app starts)."""
    from electives.web import create_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ELECTIVES_SECRET_KEY", KEY)
        app = create_app(web_config(world, **overrides))
    app.config["TESTING"] = True
    return app


@functools.cache
def _student_with_choices(world: WebWorld) -> str:
    from electives.serving.recommender import Recommender

    rec = Recommender.load(world.model_dir, catalog=world.catalog_path)
    for raw in map(str, world.university.student_ids):
        grades = world.grades_of(raw)
        if len(grades) >= 6 and rec.recommend_for_grades(grades).eligible >= 3:
            return raw
    raise AssertionError("no student with six grades and three open electives")


def known_student(world: WebWorld) -> str:
    """A raw student id with at least six grades on record and at least three electives still open."""
    return _student_with_choices(world)


@dataclass(frozen=True)
class AdvisorWorld:
    """A copy of the world's database with seat plans stored (``electives plan``'s functions): one for the term
    after the grades (``next_term``) and one for a season (``season``)."""

    db_url: str
    next_term: str
    season: str


@functools.cache
def advisor_world(world: WebWorld) -> AdvisorWorld:
    from electives.data.storage import Store
    from electives.data.terms import next_term
    from electives.models.artifact import load_model
    from electives.serving.plan import build_plan

    db = world.root / "advisor.db"
    shutil.copyfile(world.db_url.removeprefix("sqlite:///"), db)
    url = f"sqlite:///{db}"
    model = load_model(world.model_dir)
    with Store(url) as store, one_torch_thread():
        upcoming = next_term(store.terms())
        assert upcoming is not None
        season = "Spring" if upcoming.endswith("Fall") else "Fall"  # a plan for every term of a season
        for term in (upcoming, season):
            plan = build_plan(model, store, term=term, k=2)
            store.save_plan(plan.term, plan.seat_counts())
    return AdvisorWorld(url, upcoming, season)


def advisor_app(world: WebWorld, **overrides: Any):
    """An app with the advisor page on, over the advisor world's database."""
    values = {"db_url": advisor_world(world).db_url, "advisor_token": ADVISOR_TOKEN, **overrides}
    return make_app(world, **values)
