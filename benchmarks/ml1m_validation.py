"""ML-1M implicit NeuMF settings side by side on the validation split that `electives train` carves (each user's
newest training movie against 99 sampled negatives): per setting and seed, the best epoch's validation HR@10 and
NDCG@10, the training seconds up to that epoch and the seconds per epoch. Early stopping as in the product
(patience from the implicit defaults), no refit; the test part is never read, so choosing among the settings on
these figures is honest.

Each ``--setting NAME:FIELD=VALUE,FIELD=VALUE`` overrides TrainConfig fields of the implicit defaults (values are
Python literals, else strings; ``mlp_layers=(64,32,16)``).

    .venv/bin/python benchmarks/ml1m_validation.py --threads 1 --seeds 0 1 2 \\
        --setting dense:training_step=dense --setting rows:training_step=rows
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from ml1m import load

from electives.data.interactions import Interactions
from electives.data.splits import validation_split
from electives.models.epochs import prepare_validation, validation_score
from electives.models.training import TrainConfig, fit


def parse_setting(text: str) -> tuple[str, dict[str, Any]]:
    """ "name:field=value,field=value" → (name, {field: value}); a tuple's commas stay inside its parentheses."""
    name, _, rest = text.partition(":")
    fields: dict[str, Any] = {}
    depth, part = 0, ""
    for ch in rest + ",":
        depth += int(ch in "([") - int(ch in ")]")
        if ch == "," and depth == 0:
            if part:
                key, _, value = part.partition("=")
                try:
                    fields[key.strip()] = ast.literal_eval(value.strip())
                except (ValueError, SyntaxError):
                    fields[key.strip()] = value.strip()
            part = ""
        else:
            part += ch
    return name, fields


def run(train: Interactions, fields: dict[str, Any], seed: int) -> dict[str, Any]:
    """One fit on the carved validation split; the best epoch's validation figures and the seconds to reach it."""
    cfg = TrainConfig(mode="implicit", seed=seed, refit=False, **fields)
    resolved = cfg.resolved()
    # The validation rows and negatives fit draws (its first draws from the seed), to score NDCG@10 as well.
    fit_data, val_data = validation_split(train, "loo", resolved.val_fraction, seed)
    rng = np.random.default_rng(seed)
    val = prepare_validation(resolved, fit_data=fit_data, validation=val_data, train=train, rng=rng, device="cpu")
    assert val is not None
    epochs: list[dict[str, float]] = []
    # CPU seconds of each epoch (this process; a shared machine's wall clock measures the neighbours), leaving out
    # the second validation pass below.
    clock = [time.process_time()]

    def on_epoch(stats: Any, model: Any) -> None:
        cpu = time.process_time() - clock[0]
        hr, ndcg = validation_score(model, resolved, val)
        epochs.append(
            {"phase": stats.phase, "epoch": stats.epoch, "hr": hr, "ndcg": ndcg, "seconds": stats.seconds, "cpu": cpu}
        )
        print(
            f"    {stats.phase} epoch {stats.epoch}: val HR@10 {hr:.4f} NDCG@10 {ndcg:.4f}, {stats.seconds:.1f} s ({cpu:.1f} CPU s)",
            flush=True,
        )
        clock[0] = time.process_time()

    t0 = time.perf_counter()
    fitted = fit(train, cfg, progress=False, on_epoch=on_epoch)
    total = time.perf_counter() - t0
    # With pre-training the GMF and MLP phases come first: the best epoch counts within the last phase, and the
    # seconds to it include every earlier phase's.
    first = next(i for i, e in enumerate(epochs) if e["phase"] == resolved.model)
    to_best = epochs[: first + fitted.best_epoch]
    best = to_best[-1]
    return {
        "seed": seed,
        "best_epoch": fitted.best_epoch,
        "epochs": len(epochs) - first,
        "pre_epochs": first,
        "val_hr@10": best["hr"],
        "val_ndcg@10": best["ndcg"],
        "s_to_best": sum(e["seconds"] for e in to_best),
        "cpu_s_to_best": sum(e["cpu"] for e in to_best),
        "s_per_epoch": float(np.median([e["seconds"] for e in epochs])),
        "fit_s": total,
        "history": epochs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", action="append", required=True, help="NAME:FIELD=VALUE,… (repeatable)")
    p.add_argument("--seeds", type=int, nargs="*", default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write every run here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    train, _, _ = load()  # the test pairs and negatives are not used
    settings = [parse_setting(s) for s in args.setting]
    rows = []
    for seed in args.seeds:
        for name, fields in settings:
            print(f"{name} (seed {seed}): {fields}", flush=True)
            rows.append({"setting": name, **run(train, fields, seed)})
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "history"} for r in rows])
    print()
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}" if x < 1 else f"{x:.1f}"))
    means = table.groupby("setting", sort=False)[
        ["val_hr@10", "val_ndcg@10", "best_epoch", "s_to_best", "cpu_s_to_best"]
    ].mean()
    print("\nmean over seeds\n" + means.to_string(float_format=lambda x: f"{x:.4f}" if x < 1 else f"{x:.1f}"))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
