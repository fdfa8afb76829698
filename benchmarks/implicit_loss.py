"""ML-1M validation HR@10 of NeuMF trained with a listwise loss instead of the paper's pointwise log loss.

Each positive and its N sampled negatives form one row; the loss is the softmax cross-entropy of the positive
among them (sampled softmax), at the implicit defaults' sizes, learning rate and embedding L2, with about the same
number of pairs per batch (2048). Scored on the same leave-one-out validation split `electives train` carves from
the training data (newest training movie of each user against 99 sampled negatives): compare with the defaults'
peak validation HR@10 in RESULTS.md (0.7253 at epoch 6). A probe for whether the implicit mode should offer this
loss, not a product path.

    .venv/bin/python benchmarks/implicit_loss.py --negatives 4 --epochs 10
    .venv/bin/python benchmarks/implicit_loss.py --negatives 16 --epochs 6
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from ml1m import load

from electives.model import build_model
from electives.splits import validation_split
from electives.training import TrainConfig, _prepare_validation, _validate, sample_negatives


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--negatives", type=int, default=4)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(mode="implicit", seed=args.seed).resolved()
    train, _, _ = load()
    fit_data, val = validation_split(train, "loo", cfg.val_fraction, cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    validation = _prepare_validation(cfg, fit_data, val, train, rng, "cpu")
    assert validation is not None
    lookup = fit_data.item_lookup()
    students = np.repeat(np.arange(fit_data.n_students), lookup.counts())
    torch.manual_seed(cfg.seed)
    model = build_model("neumf", train.n_students, train.n_courses, cfg.gmf_dim, cfg.mlp_dim, cfg.mlp_layers)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, fused=True)
    k = 1 + args.negatives
    rows = max(1, (cfg.batch_size or 2048) // k)
    assert cfg.embedding_l2 is not None
    print(f"NeuMF, sampled softmax over 1 positive + {args.negatives} negatives, {rows} positives per batch")
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(len(students))
        s, c = students[order], lookup.indices[order]
        items = torch.from_numpy(np.concatenate([c[:, None], sample_negatives(s, lookup, args.negatives, rng)], 1))
        st = torch.from_numpy(s)
        total = 0.0
        for i in range(0, len(s), rows):
            sb, ib = st[i : i + rows], items[i : i + rows]
            out, l2 = model.forward_with_l2(sb.repeat_interleave(k), ib.reshape(-1))
            target = torch.zeros(len(sb), dtype=torch.long)
            loss = torch.nn.functional.cross_entropy(out.view(-1, k), target) + cfg.embedding_l2 * l2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(sb)
        hr, ndcg = _validate(model, cfg, validation)
        print(
            f"epoch {epoch}: loss {total / len(s):.4f}, validation HR@10 {hr:.4f}, NDCG@10 {ndcg:.4f}, "
            f"{time.perf_counter() - t0:.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
