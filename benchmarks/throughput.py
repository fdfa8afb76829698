"""Training throughput on one machine: samples/s and where an implicit-mode ML-1M epoch spends its time.

One epoch = data preparation (negatives drawn for every positive, shuffle, gather into tensors: `_epoch_tensors`)
+ model math (forward, backward, optimiser step over `--steps` batches, extrapolated to the epoch). Printed per
thread count; the negative sampler's membership test is timed both ways (bitmap vs binary search).

    .venv/bin/python benchmarks/throughput.py                       # implicit defaults, 1 and 2 threads
    .venv/bin/python benchmarks/throughput.py --gmf-dim 32 --mlp-dim 64 --mlp-layers 128 64 32 --batch-size 4096
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd
import torch
from ml1m import load

from electives.model import build_model
from electives.training import TrainConfig, _epoch_tensors, _loss_fn, _membership, _prepare_training


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    p.add_argument("--steps", type=int, default=200, help="batches timed per thread count")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--n-negatives", type=int)
    p.add_argument("--gmf-dim", type=int)
    p.add_argument("--mlp-dim", type=int)
    p.add_argument("--mlp-layers", type=int, nargs="*")
    args = p.parse_args()
    over = {
        k: v
        for k, v in {
            "batch_size": args.batch_size,
            "n_negatives": args.n_negatives,
            "gmf_dim": args.gmf_dim,
            "mlp_dim": args.mlp_dim,
            "mlp_layers": tuple(args.mlp_layers) if args.mlp_layers else None,
        }.items()
        if v is not None
    }
    cfg = TrainConfig(mode="implicit", **over).resolved()
    train, _, _ = load()
    print(
        f"ML-1M: {len(train):,} positives; {cfg.model} gmf {cfg.gmf_dim}, mlp {cfg.mlp_dim} {list(cfg.mlp_layers)}, "
        f"batch {cfg.batch_size}, {cfg.n_negatives} negatives"
    )

    # The membership test inside negative sampling, old way (binary search) vs bitmap.
    lookup = train.item_lookup()
    rng = np.random.default_rng(0)
    s = rng.integers(0, train.n_students, 4_000_000)
    c = rng.integers(0, train.n_courses, 4_000_000)
    t0 = time.perf_counter()
    lookup.contains(s, c)
    search = time.perf_counter() - t0
    taken = _membership(lookup)  # builds and caches the bitmap
    t0 = time.perf_counter()
    taken(s, c)
    bitmap = time.perf_counter() - t0
    print(f"membership of 4M pairs: binary search {search:.2f} s, bitmap {bitmap:.3f} s ({search / bitmap:.0f}×)\n")

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        data = _prepare_training(cfg, train, rng)
        t0 = time.perf_counter()
        st, ct, yt, _ = _epoch_tensors(cfg, data, rng, "cpu")
        prep = time.perf_counter() - t0
        model = build_model(cfg.model, train.n_students, train.n_courses, cfg.gmf_dim, cfg.mlp_dim, cfg.mlp_layers)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay or 0.0, fused=True)
        loss_fn = _loss_fn(cfg)
        bs = cfg.batch_size
        n_batches = math.ceil(len(st) / bs)
        steps = min(args.steps, n_batches)
        fwd = bwd = step = 0.0
        cpu0 = 0.0
        for j in range(steps + 3):
            if j == 3:
                cpu0 = time.process_time()
            i = (j % n_batches) * bs
            a = time.perf_counter()
            sb, cb = st[i : i + bs], ct[i : i + bs]
            out, l2 = model.forward_with_l2(sb, cb)
            loss = loss_fn(out, yt[i : i + bs]).mean()
            if cfg.embedding_l2:
                loss = loss + cfg.embedding_l2 * l2
            b = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            d = time.perf_counter()
            opt.step()
            e = time.perf_counter()
            if j >= 3:  # the first steps allocate
                fwd, bwd, step = fwd + b - a, bwd + d - b, step + e - d
        math_s = (fwd + bwd + step) / steps * n_batches
        math_cpu = (time.process_time() - cpu0) / steps * n_batches
        rows.append(
            {
                "threads": threads,
                "samples/epoch": len(st),
                "prep_s": prep,
                "math_s": math_s,
                "math_cpu_s": math_cpu,
                "forward_%": 100 * fwd / (fwd + bwd + step),
                "backward_%": 100 * bwd / (fwd + bwd + step),
                "optimiser_%": 100 * step / (fwd + bwd + step),
                "prep_share_%": 100 * prep / (prep + math_s),
                "epoch_s": prep + math_s,
                "samples/s": len(st) / (prep + math_s),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:,.1f}"))


if __name__ == "__main__":
    main()
