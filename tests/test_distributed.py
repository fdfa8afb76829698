"""Data-parallel training: `electives train` under a real 2-process `torchrun` (gloo on CPU), and the sharding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from electives.data.interactions import Interactions
from electives.data.pseudonyms import Pseudonymiser
from electives.errors import ElectivesError
from electives.models import distributed
from electives.models.artifact import load_model
from electives.models.distributed import Context
from electives.models.epochs import epoch_tensors, prepare_training
from electives.models.training import TrainConfig

RANK_STATE = Path(__file__).with_name("ddp_rank_state.py")
SMALL = ["--mode", "implicit", "--epochs", "3", "--lr", "0.02", "--batch-size", "256", "--gmf-dim", "8"]
SMALL += ["--mlp-dim", "8", "--mlp-layers", "16,8", "--seed", "3", "--quiet", "--no-header", "--columns"]
SMALL += ["student,course"]


@pytest.fixture(scope="module")
def enrolments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three groups of students, each taking 12 of its own group's 20 courses and one course of another group:
    a model that learned anything ranks a student's untaken own-group courses first."""
    rng = np.random.default_rng(0)
    lines = []
    for s in range(240):
        g = s % 3
        own = rng.choice(20, size=12, replace=False) + 20 * g
        other = rng.integers(0, 20) + 20 * ((g + 1) % 3)
        lines += [f"S{s:04d},C{c:03d}" for c in [other, *own]]  # the last row is held out for validation
    path = tmp_path_factory.mktemp("enrol") / "enrolments.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_torchrun_two_processes_trains_one_artifact(cli, secret_key, enrolments, tmp_path) -> None:
    out, logs, dumps = tmp_path / "ddp", tmp_path / "logs", tmp_path / "ranks"
    dumps.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["--log-dir", str(logs), "--redirects", "3", str(RANK_STATE), str(dumps)]
    cmd += ["train", "--data", str(enrolments)]
    proc = subprocess.run([*cmd, *SMALL, "--out", str(out)], env=env, capture_output=True, text=True, timeout=180)
    rank_out = {r: _rank_log(logs, r, "stdout") for r in (0, 1)}
    rank_err = {r: _rank_log(logs, r, "stderr") for r in (0, 1)}
    assert proc.returncode == 0, proc.stderr[-3000:] + rank_err[0][-2000:] + rank_err[1][-2000:]
    assert "rank 0/2" in rank_err[0] and "rank 1/2" in rank_err[1]
    # Only rank 0 reports and writes; the artifact directory holds exactly one finished artifact.
    assert f"model written to {out}" in rank_out[0] and rank_out[1].strip() == ""
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.safetensors"]

    model = load_model(out)
    assert model.mode == "implicit" and len(model.student_ids) == 240
    scores = model.fitted.score_all(np.arange(len(model.student_ids)))
    assert scores.shape == (240, 60) and np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()

    # Both ranks end with the same parameters, bit for bit (DDP averages the gradients; each rank restores the
    # best epoch rank 0 chose), and the artifact is that model.
    ranks = [dict(np.load(dumps / f"rank{r}.npz")) for r in (0, 1)]
    saved = {k: v.numpy() for k, v in model.fitted.model.state_dict().items()}
    assert ranks[0].keys() == ranks[1].keys() == saved.keys()
    for name in saved:
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=f"ranks differ in {name}")
        np.testing.assert_array_equal(ranks[0][name], saved[name], err_msg=f"artifact differs in {name}")
    # A trained model, not the initial weights (N(0, 0.01) embeddings score every course alike, AUC ≈ 0.5):
    # measured here from the weights, it orders a student's untaken own-group courses above the other groups'.
    assert _own_group_auc(model, secret_key, enrolments) > 0.9
    ddp = json.loads((out / "manifest.json").read_text())["metrics"]
    assert 0.0 <= ddp["val_ndcg_at_10_full"] <= ddp["val_hr_at_10_full"] <= 1.0

    # The same command in one process: both learned the groups, and agree within noise.
    single = tmp_path / "single"
    code, _, err = cli("train", "--data", enrolments, *SMALL, "--out", single)
    assert code == 0, err
    one = json.loads((single / "manifest.json").read_text())["metrics"]
    # Guessing ranks the held-out course in the top 10 of the 48 untaken ones about 21% of the time.
    assert ddp["val_hr_at_10_full"] > 0.6 and one["val_hr_at_10_full"] > 0.6
    assert abs(ddp["val_hr_at_10_full"] - one["val_hr_at_10_full"]) < 0.15


def _own_group_auc(model, key: str, enrolments: Path) -> float:
    """Share of (own-group, other-group) pairs of untaken courses each student's scores order correctly."""
    pseudonym = Pseudonymiser(key.encode()).pseudonym
    taken = pd.read_csv(enrolments, header=None, names=["student", "course"])
    index = {p: i for i, p in enumerate(model.student_ids)}
    wins = total = 0
    for raw, rows in taken.groupby("student"):
        scores = model.fitted.score_all(np.array([index[pseudonym(raw)]]))[0]
        group = np.array([int(c[1:]) // 20 for c in model.course_ids]) == int(raw[1:]) % 3
        untaken = ~np.isin(model.course_ids, rows["course"].to_numpy())
        own, other = scores[group & untaken], scores[~group & untaken]
        wins += int((own[:, None] > other[None, :]).sum())
        total += own.size * other.size
    return wins / total


def _rank_log(logs: Path, rank: int, stream: str) -> str:
    found = sorted(logs.rglob(f"{rank}/{stream}.log"))
    return "".join(p.read_text() for p in found)


def _data() -> Interactions:
    rng = np.random.default_rng(1)
    s = np.repeat(np.arange(30), 7)
    c = np.concatenate([rng.choice(40, 7, replace=False) for _ in range(30)])
    return Interactions.from_frame(pd.DataFrame({"student": [f"s{i}" for i in s], "course": [f"c{j}" for j in c]}))


@pytest.mark.parametrize("mode", ["implicit", "explicit"])
def test_ranks_get_equal_disjoint_shards(mode: str) -> None:
    data = _data()
    if mode == "explicit":
        data = Interactions(data.students, data.courses, np.linspace(0, 1, len(data), dtype=np.float32),
                            data.terms, data.student_ids, data.course_ids)  # fmt: skip
    cfg = TrainConfig(mode=mode, n_negatives=3).resolved()
    prepared = prepare_training(cfg, data, rng=np.random.default_rng(0))
    shards = []
    for rank in range(4):
        # Every rank draws the shared permutation from an identically seeded stream.
        s, c, y, _ = epoch_tensors(
            cfg,
            prepared,
            rng=np.random.default_rng(5),
            device="cpu",
            ctx=Context(rank, 4, rank),
            local=np.random.default_rng(rank),
        )
        pos = (y == 1) if mode == "implicit" else np.ones(len(y), dtype=bool)
        shards.append({(int(a), int(b)) for a, b in zip(s[pos], c[pos], strict=True)})
        assert len(s) == (len(data) // 4) * (1 + 3 if mode == "implicit" else 1)
        if mode == "implicit":
            # Negatives are never courses the student has.
            lookup = data.item_lookup()
            assert not lookup.contains(s[y == 0].numpy(), c[y == 0].numpy()).any()
    assert len({len(x) for x in shards}) == 1
    union = set().union(*shards)
    assert sum(len(x) for x in shards) == len(union)  # disjoint
    assert len(union) >= len(data) - 3  # at most world_size - 1 rows sit out


def test_context_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = distributed.init()
    assert ctx == Context(0, 1, 0) and ctx.is_main and not ctx.distributed
    assert distributed.all_mean(2.5) == 2.5 and distributed.broadcast_object({"a": 1}) == {"a": 1}
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.context() == Context(2, 4, 0)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ElectivesError, match="RANK"):
        distributed.context()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ElectivesError, match="RANK"):
        distributed.context()
