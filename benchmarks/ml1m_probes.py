"""Probes on ML-1M's validation split: would a listwise loss or bias terms help the implicit NeuMF?

Each positive and its N sampled negatives form one row. `--loss softmax`: the softmax cross-entropy of the
positive among them (sampled softmax); `--loss log`: the paper's log loss on every pair (what `electives train`
does). `--biases`: a student and a course bias added to the logit (L2 like the embeddings). Sizes, learning rate
and embedding L2 are the implicit defaults', about 2048 pairs per batch. Scored on the leave-one-out validation
split `electives train` carves from the training data (newest training movie of each user against 99 sampled
negatives): compare with the defaults' peak validation HR@10 in RESULTS.md (0.7253 at epoch 6). Probes for what
the product should offer, not a product path.

    .venv/bin/python benchmarks/ml1m_probes.py --loss softmax --negatives 4 --epochs 10
    .venv/bin/python benchmarks/ml1m_probes.py --loss softmax --negatives 16 --epochs 6
    .venv/bin/python benchmarks/ml1m_probes.py --loss log --biases --epochs 7
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from ml1m import load
from torch import Tensor, nn

from electives.data.sampling import sample_negatives
from electives.data.splits import validation_split
from electives.models.epochs import prepare_validation, validation_score
from electives.models.ncf import NeuMF, build_model
from electives.models.training import TrainConfig


class BiasedNeuMF(NeuMF):
    """NeuMF + b_s + b_c on the logit."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.student_bias, self.course_bias = nn.Embedding(self.n_students, 1), nn.Embedding(self.n_courses, 1)
        nn.init.zeros_(self.student_bias.weight)
        nn.init.zeros_(self.course_bias.weight)

    def forward_with_l2(self, s: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        out, l2 = super().forward_with_l2(s, c)
        bs, bc = self.student_bias(s).squeeze(-1), self.course_bias(c).squeeze(-1)
        return out + bs + bc, l2 + (bs.pow(2).sum() + bc.pow(2).sum()) / max(1, len(s))

    def forward(self, s: Tensor, c: Tensor) -> Tensor:
        return super().forward(s, c) + self.student_bias(s).squeeze(-1) + self.course_bias(c).squeeze(-1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loss", choices=["softmax", "log"], default="softmax")
    p.add_argument("--biases", action="store_true")
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
    validation = prepare_validation(cfg, fit_data=fit_data, validation=val, train=train, rng=rng, device="cpu")
    assert validation is not None
    lookup = fit_data.item_lookup()
    students = np.repeat(np.arange(fit_data.n_students), lookup.counts())
    torch.manual_seed(cfg.seed)
    sizes = (train.n_students, train.n_courses, cfg.gmf_dim, cfg.mlp_dim, cfg.mlp_layers)
    model = BiasedNeuMF(*sizes) if args.biases else build_model("neumf", *sizes)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, fused=True)
    k = 1 + args.negatives
    rows = max(1, (cfg.batch_size or 2048) // k)
    assert cfg.embedding_l2 is not None
    print(
        f"NeuMF{' + biases' if args.biases else ''}, {args.loss} loss, 1 positive + {args.negatives} negatives per row"
    )
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
            if args.loss == "softmax":
                target = torch.zeros(len(sb), dtype=torch.long)
                fit_loss = nn.functional.cross_entropy(out.view(-1, k), target)
            else:
                labels = torch.zeros(len(sb), k)
                labels[:, 0] = 1.0
                fit_loss = nn.functional.binary_cross_entropy_with_logits(out, labels.reshape(-1))
            loss = fit_loss + cfg.embedding_l2 * l2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(sb)
        hr, ndcg = validation_score(model, cfg, validation)
        print(
            f"epoch {epoch}: loss {total / len(s):.4f}, validation HR@10 {hr:.4f}, NDCG@10 {ndcg:.4f}, "
            f"{time.perf_counter() - t0:.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
