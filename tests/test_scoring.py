"""Batch scoring (`electives score-all`): chunked top-k equals brute force, taken courses never appear."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from electives.data.interactions import Interactions
from electives.data.synth import SynthConfig, generate, write
from electives.errors import DataError
from electives.models.ncf import build_model
from electives.models.training import NCF, TrainConfig
from electives.serving.scoring import top_k, write_top_k

N_STUDENTS, N_COURSES = 23, 17


def _fitted(kind: str) -> NCF:
    torch.manual_seed(4)
    model = build_model(kind, N_STUDENTS, N_COURSES, 6, 5, (8, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.7)  # spread the scores: the paper's N(0, 0.01²) start ranks by near-ties
    return NCF.trained(model.eval(), TrainConfig(mode="implicit", model=kind))


def _taken() -> Interactions:
    rng = np.random.default_rng(2)
    s, c = [], []
    for u in range(N_STUDENTS):
        n = 15 if u == 3 else int(rng.integers(0, 6))  # student 3 has only 2 untaken courses
        s += [u] * n
        c += list(rng.choice(N_COURSES, n, replace=False))
    ids_s, ids_c = [f"s{i:02d}" for i in range(N_STUDENTS)], [f"c{i:02d}" for i in range(N_COURSES)]
    return Interactions(np.array(s), np.array(c), None, np.zeros(len(s), np.int64), ids_s, ids_c)


def _brute(fitted: NCF, k: int, taken: Interactions | None) -> tuple[np.ndarray, np.ndarray]:
    s = np.repeat(np.arange(N_STUDENTS), N_COURSES)
    c = np.tile(np.arange(N_COURSES), N_STUDENTS)
    scores = fitted.predict(s, c).reshape(N_STUDENTS, N_COURSES).astype(np.float64)
    if taken is not None:
        scores[taken.students, taken.courses] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.mark.parametrize("kind", ["neumf", "gmf", "mlp"])
@pytest.mark.parametrize("exclude", [False, True])
def test_chunked_top_k_equals_brute_force(kind: str, exclude: bool) -> None:
    fitted, taken = _fitted(kind), _taken()
    parts = list(top_k(fitted, 4, exclude=taken.item_lookup() if exclude else None, chunk_size=5))
    assert [len(p.students) for p in parts] == [5, 5, 5, 5, 3]
    courses = np.concatenate([p.courses for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    want_c, want_s = _brute(fitted, 4, taken if exclude else None)
    ok = np.isfinite(want_s)
    np.testing.assert_array_equal(courses[ok], want_c[ok])
    np.testing.assert_allclose(scores[ok], want_s[ok], rtol=1e-5, atol=1e-6)
    if exclude:
        # Student 3 has 2 untaken courses: the other 2 slots are empty, and no taken course is ever returned.
        assert (courses[3, 2:] == -1).all() and np.isnan(scores[3, 2:]).all()
        returned = {(u, int(c)) for u in range(N_STUDENTS) for c in courses[u] if c >= 0}
        assert not returned & set(zip(taken.students.tolist(), taken.courses.tolist(), strict=True))


def test_k_larger_than_catalogue_pads() -> None:
    (part,) = top_k(_fitted("neumf"), 20, chunk_size=100)
    assert part.courses.shape == (N_STUDENTS, 20)
    assert (np.sort(part.courses[:, :N_COURSES], axis=1) == np.arange(N_COURSES)).all()
    assert (part.courses[:, N_COURSES:] == -1).all()


@pytest.mark.parametrize(("k", "chunk", "match"), [(0, 10, "k must"), (10, 0, "chunk size"), (True, 10, "k must")])
def test_bad_sizes_are_refused(k, chunk, match) -> None:
    with pytest.raises(DataError, match=match):
        list(top_k(_fitted("gmf"), k, chunk_size=chunk))


def test_parquet_is_complete_and_atomic(tmp_path: Path) -> None:
    fitted, taken = _fitted("neumf"), _taken()
    out = tmp_path / "top.parquet"
    report = write_top_k(fitted, out, taken.student_ids, taken.course_ids, 3, exclude=taken.item_lookup(),
                         chunk_size=4, points=(0.0, 100.0))  # fmt: skip
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["student", "rank", "course", "score"]
    assert report.rows == len(frame) == N_STUDENTS * 3 - 1  # student 3 has only 2 untaken courses
    assert report.pairs == N_STUDENTS * N_COURSES
    taken_pairs = {
        (taken.student_ids[s], taken.course_ids[c]) for s, c in zip(taken.students, taken.courses, strict=True)
    }
    assert not taken_pairs & set(zip(frame["student"], frame["course"].astype(str), strict=True))
    assert frame.groupby("student")["score"].apply(lambda x: bool((np.diff(x.to_numpy()) <= 0).all())).all()
    assert frame["score"].between(0, 100).all()
    assert [p.name for p in tmp_path.iterdir()] == ["top.parquet"]
    with pytest.raises(DataError, match="does not exist"):
        write_top_k(fitted, tmp_path / "nope" / "x.parquet", taken.student_ids, taken.course_ids)


def test_score_all_cli_excludes_the_database_courses(cli, secret_key, tmp_path: Path) -> None:
    files = write(generate(SynthConfig(n_students=60, seed=3)), tmp_path / "uni")
    db = f"sqlite:///{tmp_path / 'e.db'}"
    flags = ["--map", "student=student serial", "--map", "term=Year+term", "--map", "course=Crs Code",
             "--map", "course_name=Course Name", "--map", "grade=total", "--scale", "percent"]  # fmt: skip
    assert cli("import", files["grades"], "--db", db, *flags)[0] == 0
    small = ["--epochs", "1", "--gmf-dim", "4", "--mlp-dim", "4", "--mlp-layers", "8", "--quiet"]
    code, _, err = cli("train", "--db", db, "--out", tmp_path / "m", *small)
    assert code == 0, err
    out = tmp_path / "top.parquet"
    code, _, err = cli("score-all", tmp_path / "m", "--out", out, "-k", "5", "--db", db, "--quiet")
    assert code == 0, err
    assert "pairs/s" in err
    frame = pd.read_parquet(out)
    from electives.data.storage import Store

    with Store(db) as store:
        stored = store.load_grades(retakes="all")
    assert frame["student"].nunique() == stored["student"].nunique()
    assert (frame.groupby("student").size() <= 5).all()
    on_record = set(zip(stored["student"], stored["course"], strict=True))
    assert not on_record & set(zip(frame["student"], frame["course"].astype(str), strict=True))
    assert frame["score"].between(0, 100).all()  # predicted percent points

    assert cli("score-all", tmp_path / "m", "--out", out, "-k", "0", "--no-exclude")[0] == 2
    code, _, err = cli("score-all", tmp_path / "missing", "--out", out, "--no-exclude")
    assert code == 2 and "error" in err
    code, _, err = cli("score-all", tmp_path / "m", "--out", tmp_path / "no" / "x.parquet", "--no-exclude")
    assert code == 2 and "does not exist" in err


@pytest.mark.parametrize("family", ["bias", "mf", "knn"])
def test_top_k_serves_every_family(family: str) -> None:
    """score-all goes through the model interface for families other than NCF: the same top-k as brute force."""
    from electives.models.baselines import BiasModel, ItemKNN, MatrixFactorization

    rng = np.random.default_rng(5)
    n = 200
    s, c = rng.integers(0, N_STUDENTS, n), rng.integers(0, N_COURSES, n)
    graded = Interactions(
        s,
        c,
        rng.random(n).astype(np.float32),
        np.zeros(n, np.int64),
        [f"s{i:02d}" for i in range(N_STUDENTS)],
        [f"c{i:02d}" for i in range(N_COURSES)],
    )
    make = {"bias": BiasModel, "mf": lambda: MatrixFactorization(factors=4, epochs=5), "knn": lambda: ItemKNN(k=5)}
    fitted = make[family]().fit(graded)
    taken = _taken()
    parts = list(top_k(fitted, 4, exclude=taken.item_lookup(), chunk_size=7))
    want_c, want_s = _brute(fitted, 4, taken)
    ok = np.isfinite(want_s)
    np.testing.assert_allclose(np.concatenate([p.scores for p in parts])[ok], want_s[ok], rtol=1e-6)
    got_c = np.concatenate([p.courses for p in parts])
    assert (got_c[ok] == want_c[ok]).mean() > 0.95  # ties may order differently
    assert (got_c[~ok] == -1).all()
