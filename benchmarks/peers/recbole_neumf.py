"""RecBole's NeuMF on the ML-1M leave-one-out split, as a speed and accuracy peer (run in its own venv).

Trains RecBole 1.2.1's NeuMF for a fixed number of epochs with the given sizes, batch size and negatives, times
each training epoch (RecBole's own `Trainer._train_epoch`: its data loader, negative sampler and optimiser step),
then scores each test user's held-out movie and its 99 fixed negatives (ml-1m/loo/negatives.tsv.gz) and writes
the scores and timings to an .npz that benchmarks/vs_recbole.py turns into HR@10/NDCG@10 with electives' metrics.

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 benchmarks/peers/.venv-recbole/bin/python benchmarks/peers/recbole_neumf.py \
        --data ../shared/data/ml-1m/loo --epochs 3 --out /tmp/recbole.npz
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def _atomic_files(data: Path, root: Path) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """ml1m.{train,valid,test}.inter in RecBole's atomic format. `valid` is never trained on: it holds the test
    pairs plus one pair per movie that appears only among the negatives, so that every scored movie has an id."""
    train = pd.read_csv(data / "train.tsv.gz", sep="\t", names=["u", "i"], dtype=str)
    test = pd.read_csv(data / "test.tsv", sep="\t", names=["u", "i"], dtype=str)
    neg = pd.read_csv(data / "negatives.tsv.gz", sep="\t", header=None, dtype=str)
    negatives = neg.iloc[:, 1:].to_numpy()
    seen = set(train["i"]) | set(test["i"])
    extra = sorted(set(negatives.ravel()) - seen)
    filler = pd.DataFrame({"u": test["u"].iloc[: len(extra)].to_numpy(), "i": extra})
    d = root / "ml1m"
    d.mkdir(parents=True, exist_ok=True)
    for name, frame in (("train", train), ("valid", pd.concat([test, filler])), ("test", test)):
        with open(d / f"ml1m.{name}.inter", "w") as fh:
            fh.write("user_id:token\titem_id:token\n")
            frame.to_csv(fh, sep="\t", header=False, index=False)
    return train, test, negatives


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--negatives", type=int, default=4)
    p.add_argument("--gmf-dim", type=int, default=64)
    p.add_argument("--mlp-dim", type=int, default=32)
    p.add_argument("--mlp-layers", type=int, nargs="*", default=[64, 32, 16])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def _config_dict(args: argparse.Namespace, root: Path) -> dict[str, object]:
    """RecBole's settings: the atomic files under ``root``, fixed epochs, our sizes, CPU, no early stopping."""
    return {
        "data_path": str(root),
        "checkpoint_dir": str(root / "saved"),
        "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {"inter": ["user_id", "item_id"]},
        "train_neg_sample_args": {
            "distribution": "uniform",
            "sample_num": args.negatives,
            "alpha": 1.0,
            "dynamic": False,
            "candidate_num": 0,
        },
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["Hit", "NDCG"],
        "topk": [10],
        "valid_metric": "Hit@10",
        "epochs": args.epochs,
        "train_batch_size": args.batch_size,
        "eval_batch_size": 1 << 16,
        "learning_rate": args.lr,
        "weight_decay": 0.0,
        "mf_embedding_size": args.gmf_dim,
        "mlp_embedding_size": args.mlp_dim,
        "mlp_hidden_size": list(args.mlp_layers),
        "dropout_prob": 0.0,
        "mf_train": True,
        "mlp_train": True,
        "use_pretrain": False,
        "device": "cpu",
        "use_gpu": False,
        "seed": args.seed,
        "reproducibility": True,
        "show_progress": False,
        "worker": 0,
        "state": "WARNING",
    }


def _train_epochs(trainer, train_data, epochs: int) -> tuple[list[float], list[float], list[float]]:
    """Wall seconds, CPU seconds and mean loss of each of ``epochs`` training epochs."""
    seconds, cpu, losses = [], [], []
    for epoch in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        losses.append(float(loss if not isinstance(loss, tuple) else sum(loss)) / len(train_data))
        print(
            f"recbole epoch {epoch + 1}: {seconds[-1]:.1f} s wall, {cpu[-1]:.1f} s CPU, loss {losses[-1]:.4f}",
            flush=True,
        )
    return seconds, cpu, losses


def _score_test(model, dataset, test: pd.DataFrame, negatives: np.ndarray) -> np.ndarray:
    """Scores of each test user's held-out movie (column 0) and its fixed negatives."""
    from recbole.data.interaction import Interaction

    users = np.repeat(test["u"].to_numpy(), 1 + negatives.shape[1])
    items = np.concatenate([test["i"].to_numpy()[:, None], negatives], axis=1).ravel()
    uid = dataset.token2id(dataset.uid_field, users)
    iid = dataset.token2id(dataset.iid_field, items)
    model.eval()
    with torch.no_grad():
        inter = Interaction({dataset.uid_field: torch.as_tensor(uid), dataset.iid_field: torch.as_tensor(iid)})
        return model.predict(inter).numpy().reshape(len(test), -1)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import NeuMF
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    args.data, args.out = args.data.resolve(), args.out.resolve()
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chdir(root)  # RecBole writes log/ and log_tensorboard/ into the working directory
        _, test, negatives = _atomic_files(args.data, root)
        config = Config(model="NeuMF", dataset="ml1m", config_dict=_config_dict(args, root))
        init_seed(config["seed"], config["reproducibility"])
        logging.getLogger().setLevel(logging.WARNING)
        torch.set_num_threads(args.threads)  # init_seed and Config may reset it
        dataset = create_dataset(config)
        train_data, _, _ = data_preparation(config, dataset)
        model = NeuMF(config, train_data._dataset).to("cpu")
        trainer = Trainer(config, model)
        seconds, cpu, losses = _train_epochs(trainer, train_data, args.epochs)
        scores = _score_test(model, dataset, test, negatives)
    os.chdir(cwd)
    np.savez(args.out, scores=scores, seconds=np.array(seconds), cpu_seconds=np.array(cpu), losses=np.array(losses))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    main()
