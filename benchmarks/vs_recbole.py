"""Seconds per epoch and HR@10 of our NeuMF vs RecBole's NeuMF on ML-1M, side by side in one run.

Same model sizes (GMF factors, MLP embedding and tower), batch size, negatives per positive, learning rate, epoch
count and thread count; no early stopping on either side. Both are scored on the same ML-1M leave-one-out test
(the held-out movie among its 99 fixed negatives) with electives' metrics. RecBole runs in its own virtual
environment (benchmarks/peers/README.md) as a subprocess; wall seconds are noisy on a shared machine, so CPU
seconds of each process are shown too.

    .venv/bin/python benchmarks/vs_recbole.py --epochs 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ml1m import DATA, load

from electives.data.interactions import Interactions
from electives.evaluation import metrics
from electives.models.training import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
PEER_PY = ROOT / "benchmarks" / "peers" / ".venv-recbole" / "bin" / "python"
PEER = ROOT / "benchmarks" / "peers" / "recbole_neumf.py"


def _metrics(scores: np.ndarray) -> dict[str, float]:
    ranks = metrics.sampled_ranks(scores[:, 0], scores[:, 1:])
    return {"hr@10": metrics.hit_rate(ranks, 10), "ndcg@10": metrics.ndcg(ranks, 10)}


def parse_args() -> argparse.Namespace:
    d = TrainConfig(mode="implicit").resolved()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    # The sizes both sides run (RecBole's NeuMF has a learned GMF output and no regulariser): the paper's, which
    # were our implicit defaults when the comparison was recorded; ours now default to 8 negatives and GMF 128.
    p.add_argument("--negatives", type=int, default=4)
    p.add_argument("--gmf-dim", type=int, default=64)
    p.add_argument("--mlp-dim", type=int, default=d.mlp_dim)
    p.add_argument("--mlp-layers", type=int, nargs="*", default=list(d.mlp_layers))
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument(
        "--training-step", choices=["rows", "dense"], default=d.training_step, help="ours (default: %(default)s)"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-recbole", action="store_true")
    return p.parse_args()


def run_electives(
    args: argparse.Namespace, train: Interactions, test: Interactions, negatives: np.ndarray
) -> dict[str, float]:
    """Our NeuMF with the peer's loss and sizes, fixed epochs: seconds per epoch and sampled metrics."""
    cfg = TrainConfig(
        mode="implicit",
        gmf_dim=args.gmf_dim,
        mlp_dim=args.mlp_dim,
        mlp_layers=tuple(args.mlp_layers),
        batch_size=args.batch_size,
        n_negatives=args.negatives,
        lr=args.lr,
        training_step=args.training_step,
        weight_decay=0.0,
        embedding_l2=0.0,  # RecBole's NeuMF has no regulariser: same loss on both sides
        gmf_output="learned",  # and GMF's output weights are learned there
        epochs=args.epochs,
        validation="none",
    )
    cpu: list[float] = []
    last = [time.process_time()]

    def tick(stats: object, model: object) -> None:
        now = time.process_time()
        cpu.append(now - last[0])
        last[0] = now

    print(f"electives: {cfg.resolved()}", flush=True)
    fitted = fit(train, cfg, progress=False, on_epoch=tick)
    seconds = [h.seconds for h in fitted.history]
    pos = fitted.predict(test.students, test.courses)
    neg = fitted.predict(np.repeat(test.students, negatives.shape[1]), negatives.ravel()).reshape(negatives.shape)
    row = {
        "s/epoch": float(np.median(seconds)),
        "CPU s/epoch": float(np.median(cpu)),
        **_metrics(np.concatenate([pos[:, None], neg], axis=1)),
    }
    print(
        f"  electives epochs: {[round(s, 1) for s in seconds]} s wall, {[round(c, 1) for c in cpu]} s CPU", flush=True
    )
    return row


def run_recbole(args: argparse.Namespace) -> dict[str, float]:
    """RecBole's NeuMF in its own virtual environment, same settings: seconds per epoch and sampled metrics."""
    if not PEER_PY.exists():
        raise SystemExit(f"{PEER_PY} is missing: install the peer as benchmarks/peers/README.md says")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "recbole.npz"
        cmd = [str(PEER_PY), str(PEER), "--data", str(DATA), "--out", str(out), "--epochs", str(args.epochs)]
        cmd += ["--batch-size", str(args.batch_size), "--negatives", str(args.negatives), "--lr", str(args.lr)]
        cmd += ["--gmf-dim", str(args.gmf_dim), "--mlp-dim", str(args.mlp_dim), "--threads", str(args.threads)]
        cmd += ["--mlp-layers", *map(str, args.mlp_layers)]
        env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
        subprocess.run(cmd, check=True, env=env, stdout=sys.stdout, stderr=subprocess.DEVNULL)
        res = np.load(out)
        row = {
            "s/epoch": float(np.median(res["seconds"])),
            "CPU s/epoch": float(np.median(res["cpu_seconds"])),
            **_metrics(res["scores"]),
        }
        print(f"  recbole epochs: {np.round(res['seconds'], 1).tolist()} s wall", flush=True)
    return row


def print_table(args: argparse.Namespace, rows: dict[str, dict[str, float]]) -> None:
    table = pd.DataFrame(rows).T
    print(
        f"\nML-1M, {args.epochs} epochs, batch {args.batch_size}, {args.negatives} negatives, GMF {args.gmf_dim}, "
        f"MLP {args.mlp_dim} {args.mlp_layers}, lr {args.lr}, {args.threads} threads, our step {args.training_step}\n"
    )
    print(table.to_string(float_format=lambda x: f"{x:.4f}" if x < 1 else f"{x:.1f}"))
    if "recbole" in rows:
        wall = rows["recbole"]["s/epoch"] / rows["electives"]["s/epoch"]
        cpu_ratio = rows["recbole"]["CPU s/epoch"] / rows["electives"]["CPU s/epoch"]
        print(f"\nspeed-up per epoch: {wall:.1f}× wall, {cpu_ratio:.1f}× CPU")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    train, test, negatives = load()
    rows = {"electives": run_electives(args, train, test, negatives)}
    if not args.skip_recbole:
        rows["recbole"] = run_recbole(args)
    print_table(args, rows)


if __name__ == "__main__":
    main()
