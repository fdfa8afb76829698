"""Training throughput on one machine: samples/s and where an implicit-mode ML-1M epoch spends its time.

One epoch = data preparation (negatives drawn for every positive, shuffle, gather into tensors: `epoch_tensors`)
+ model math (forward, backward, optimiser step over `--steps` batches, extrapolated to the epoch). Printed per
thread count; the negative sampler's membership test is timed both ways (bitmap vs binary search).

    .venv/bin/python benchmarks/throughput.py                       # implicit defaults, 1 and 2 threads
    .venv/bin/python benchmarks/throughput.py --gmf-dim 32 --mlp-dim 64 --mlp-layers 128 64 32 --batch-size 4096
    .venv/bin/python benchmarks/throughput.py --threads 1 --variant compile     # torch.compile (inductor) the loss
    .venv/bin/python benchmarks/throughput.py --threads 1 --variant sparse      # sparse embedding grads, SparseAdam
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd
import torch
from ml1m import load

from electives.data.interactions import Interactions
from electives.data.sampling import membership
from electives.models.epochs import epoch_tensors, loss_function, prepare_training
from electives.models.ncf import build_model
from electives.models.training import TrainConfig


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    p.add_argument("--steps", type=int, default=200, help="batches timed per thread count")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--n-negatives", type=int)
    p.add_argument("--gmf-dim", type=int)
    p.add_argument("--mlp-dim", type=int)
    p.add_argument("--mlp-layers", type=int, nargs="*")
    p.add_argument(
        "--variant",
        choices=["eager", "compile", "sparse"],
        default="eager",
        help="what the product does (eager), or a probe: torch.compile of the forward and loss, or sparse "
        "embedding gradients with SparseAdam for the embeddings (fused AdamW for the rest)",
    )
    return p.parse_args()


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The implicit defaults, with the sizes given on the command line."""
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
    return TrainConfig(mode="implicit", **over).resolved()


def time_membership(train: Interactions) -> None:
    """The membership test inside negative sampling, old way (binary search) vs bitmap."""
    lookup = train.item_lookup()
    rng = np.random.default_rng(0)
    s = rng.integers(0, train.n_students, 4_000_000)
    c = rng.integers(0, train.n_courses, 4_000_000)
    t0 = time.perf_counter()
    lookup.contains(s, c)
    search = time.perf_counter() - t0
    taken = membership(lookup)  # builds and caches the bitmap
    t0 = time.perf_counter()
    taken(s, c)
    bitmap = time.perf_counter() - t0
    print(f"membership of 4M pairs: binary search {search:.2f} s, bitmap {bitmap:.3f} s ({search / bitmap:.0f}×)\n")


def time_steps(
    compute, opts: list[torch.optim.Optimizer], tensors: tuple[torch.Tensor, ...], bs: int, steps: int, warm: int
) -> tuple[float, float, float, float]:
    """Seconds in forward, backward and optimiser step over ``steps`` batches after ``warm`` untimed ones, and
    the CPU seconds of those batches."""
    st, ct, yt = tensors
    n_batches = math.ceil(len(st) / bs)
    fwd = bwd = step = 0.0
    cpu0 = 0.0
    for j in range(steps + warm):
        if j == warm:
            cpu0 = time.process_time()
        i = (j % n_batches) * bs
        a = time.perf_counter()
        loss = compute(st[i : i + bs], ct[i : i + bs], yt[i : i + bs])
        b = time.perf_counter()
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        d = time.perf_counter()
        for opt in opts:
            opt.step()
        e = time.perf_counter()
        if j >= warm:  # the first steps allocate (and compile)
            fwd, bwd, step = fwd + b - a, bwd + d - b, step + e - d
    return fwd, bwd, step, time.process_time() - cpu0


def time_epoch(cfg: TrainConfig, train: Interactions, threads: int, steps: int, variant: str) -> dict[str, object]:
    """One epoch on ``threads`` threads: data preparation timed whole, model math over ``steps`` batches."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = prepare_training(cfg, train, rng=rng)
    t0 = time.perf_counter()
    st, ct, yt, _ = epoch_tensors(cfg, data, rng=rng, device="cpu")
    prep = time.perf_counter() - t0
    model = build_model(cfg.model, train.n_students, train.n_courses, cfg.gmf_dim, cfg.mlp_dim, cfg.mlp_layers)
    loss_fn = loss_function(cfg)
    opts = _optimisers(model, cfg, variant == "sparse")

    def forward(
        sb: torch.Tensor, cb: torch.Tensor, yb: torch.Tensor, model: torch.nn.Module = model, loss_fn=loss_fn
    ) -> torch.Tensor:
        out, l2 = model.forward_with_l2(sb, cb)
        return loss_fn(out, yb).mean() + (cfg.embedding_l2 or 0.0) * l2

    compute = torch.compile(forward) if variant == "compile" else forward
    bs = cfg.batch_size
    n_batches = math.ceil(len(st) / bs)
    steps = min(steps, n_batches)
    warm = 8 if variant == "compile" else 3  # compiling happens in the first steps
    fwd, bwd, step, cpu = time_steps(compute, opts, (st, ct, yt), bs, steps, warm)
    math_s = (fwd + bwd + step) / steps * n_batches
    math_cpu = cpu / steps * n_batches
    return {
        "variant": variant,
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


def main() -> None:
    args = parse_args()
    cfg = train_config(args)
    train, _, _ = load()
    print(
        f"ML-1M: {len(train):,} positives; {cfg.model} gmf {cfg.gmf_dim}, mlp {cfg.mlp_dim} {list(cfg.mlp_layers)}, "
        f"batch {cfg.batch_size}, {cfg.n_negatives} negatives"
    )
    time_membership(train)
    rows = [time_epoch(cfg, train, threads, args.steps, args.variant) for threads in args.threads]
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:,.1f}"))


def _optimisers(model: torch.nn.Module, cfg: TrainConfig, sparse: bool) -> list[torch.optim.Optimizer]:
    decay = cfg.weight_decay or 0.0
    if not sparse:
        return [torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=decay, fused=True)]
    tables = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    for m in tables:
        m.sparse = True
    ids = {id(m.weight) for m in tables}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [
        torch.optim.SparseAdam([m.weight for m in tables], lr=cfg.lr),
        torch.optim.AdamW(rest, lr=cfg.lr, weight_decay=decay, fused=True),
    ]


if __name__ == "__main__":
    main()
