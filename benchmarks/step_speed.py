"""The dense step against the row step on ML-1M's implicit defaults: CPU milliseconds per step, side by side.

Each step trains its own model on the same epoch of ML-1M (the dense step on shuffled pairs, the row step on
groups of a positive and its negatives, about `--batch-size` pairs either way). They take turns in blocks of
`--block` steps, so that a busy machine slows both alike; the figure is the median over blocks of CPU time per
step (wall time on a shared machine measures the neighbours). Also shown: how much of the row step the embedding
tables' optimisers take (row by row for the users, whole-table for the movies: `table_adam`), and each step's epoch
preparation (negatives, shuffle, tensors).

    .venv/bin/python benchmarks/step_speed.py --threads 1 --blocks 40
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from ml1m import load

from electives.models.distributed import Context
from electives.models.epochs import prepare_training
from electives.models.ncf import build_model
from electives.models.row_adam import RowAdam, TableAdam
from electives.models.steps import DenseStep, RowStep
from electives.models.training import TrainConfig


def timed_adam(opt: RowAdam | TableAdam, clock: list[float]) -> None:
    """Adds the CPU seconds of every ``opt.step`` to ``clock[0]``."""
    inner = opt.step

    def step(rows: torch.Tensor, grads: list[torch.Tensor]) -> None:
        t0 = time.process_time()
        inner(rows, grads)
        clock[0] += time.process_time() - t0

    opt.step = step  # type: ignore[method-assign]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--blocks", type=int, default=40)
    p.add_argument("--block", type=int, default=20, help="steps per block")
    p.add_argument("--batch-size", type=int)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    train, _, _ = load()
    cfg = TrainConfig(mode="implicit", batch_size=args.batch_size).resolved()
    rng = np.random.default_rng(0)
    rows = prepare_training(cfg, train, rng=rng)
    steps, batches, prep = {}, {}, {}
    for name in ("dense", "rows"):
        torch.manual_seed(0)
        model = build_model("neumf", train.n_students, train.n_courses, cfg.gmf_dim, cfg.mlp_dim, cfg.mlp_layers)
        steps[name] = DenseStep(model, cfg, device="cpu", ctx=Context()) if name == "dense" else RowStep(model, cfg)
        t0 = time.process_time()
        batches[name] = steps[name].epoch(rows, rng=rng, local=rng)
        prep[name] = time.process_time() - t0
    adam = [0.0]
    row_step = steps["rows"]
    assert isinstance(row_step, RowStep)
    timed_adam(row_step.students, adam)
    timed_adam(row_step.courses, adam)
    per_block: dict[str, list[float]] = {"dense": [], "rows": []}
    adam_share = []
    n = min(len(b) for b in batches.values())
    for block in range(args.blocks + 1):  # the first block warms up
        for name, step in steps.items():
            adam[0] = 0.0
            t0 = time.process_time()
            for j in range(block * args.block, (block + 1) * args.block):
                step.step(*batches[name][j % n])
            spent = time.process_time() - t0
            if block:
                per_block[name].append(spent / args.block)
                if name == "rows":
                    adam_share.append(adam[0] / spent)
    dense, row = (float(np.median(per_block[k])) * 1e3 for k in ("dense", "rows"))
    print(
        f"ML-1M implicit defaults (batch {cfg.batch_size}), {args.threads} thread(s), {args.blocks}×{args.block} steps"
    )
    print(f"  dense step: {dense:.2f} ms CPU/step, {len(batches['dense'])} steps/epoch, prep {prep['dense']:.2f} s")
    print(f"  row step:   {row:.2f} ms CPU/step, {len(batches['rows'])} steps/epoch, prep {prep['rows']:.2f} s")
    print(f"  the tables' optimisers' share of the row step: {100 * float(np.median(adam_share)):.0f}%")
    ratios = np.array(per_block["dense"]) / np.array(per_block["rows"])
    lo, hi = np.percentile(ratios, [25, 75])
    print(f"  dense / rows per block: median {np.median(ratios):.2f}× (quartiles {lo:.2f}–{hi:.2f})")


if __name__ == "__main__":
    main()
