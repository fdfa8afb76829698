"""What determines a training run: `TrainConfig` and the per-mode defaults it falls back on.

Kept apart from `training` (and free of torch) so that the command line can build its flags and help without
loading the training stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from electives.errors import ElectivesError

__all__ = ["MODE_DEFAULTS", "TUNABLE", "Mode", "TrainConfig"]

Mode = Literal["explicit", "implicit"]

# Fields left None in TrainConfig take the mode's value from here (the only other place defaults live).
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Explicit (chosen on validation splits carved from training data: ML-100K fold 1 RMSE 0.9170 → 0.9099 stars,
    # synthetic university 6.35 → 6.20 points; on the two small real grade sets, 2–4k rows, it is within noise):
    # the paper's tower [64, 32, 16, 8] over 32-wide MLP embeddings, 128 GMF factors, a halved learning rate.
    "explicit": {
        "lr": 5e-4,
        "weight_decay": 0.0,
        "batch_size": 256,
        "epochs": 100,
        "validation": "random",
        "gmf_dim": 128,
        "mlp_dim": 32,
        "mlp_layers": (64, 32, 16, 8),
        "embedding_l2": 0.0,
        "patience": 5,
        # Off: split-conformal intervals are calibrated on the validation rows, which a refit would train on.
        "refit": False,
    },
    # Implicit (ML-1M, chosen on the LOO validation split carved from training): the paper's 64 predictive
    # factors for GMF, a 3-layer tower [64, 32, 16] (~2.5× fewer multiply-adds per sample than [128, 64, 32]),
    # and L2 on the embeddings that each batch uses, without which validation HR@10 peaks at epoch 5 and falls.
    "implicit": {
        "lr": 1e-3,
        "weight_decay": 0.0,
        "batch_size": 2048,
        "epochs": 25,
        "validation": "loo",
        "gmf_dim": 64,
        "mlp_dim": 32,
        "mlp_layers": (64, 32, 16),
        "embedding_l2": 1e-3,
        "patience": 3,
        "refit": True,
    },
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run. `None` means "the mode's default" (see `MODE_DEFAULTS`)."""

    mode: Mode = "explicit"
    model: Literal["neumf", "gmf", "mlp"] = "neumf"
    gmf_dim: int | None = None
    mlp_dim: int | None = None  # per side; the tower's input is 2 · mlp_dim
    mlp_layers: tuple[int, ...] | None = None
    dropout: float = 0.0
    lr: float | None = None
    weight_decay: float | None = None  # decoupled (AdamW) decay of all weights
    embedding_l2: float | None = None  # L2 on the embedding rows each batch uses (frequent ids are shrunk more often)
    batch_size: int | None = None
    epochs: int | None = None
    n_negatives: int = 4  # implicit: sampled negatives per positive, resampled every epoch
    loss: Literal["mse", "huber", "l1"] = "mse"  # explicit only
    huber_delta: float = 0.1  # in normalised grade units
    patience: int | None = None  # epochs without validation improvement before stopping
    validation: Literal["loo", "temporal", "random", "none"] | None = None
    val_fraction: float = 0.1  # for validation="random"
    val_negatives: int = 99  # implicit: negatives per validation positive for HR@10
    # After early stopping, train again from scratch on training + validation rows for the best epoch count.
    refit: bool | None = None
    pretrain: bool = False  # NeuMF only: GMF, then MLP, then NeuMF from both with α = pretrain_alpha
    pretrain_alpha: float = 0.5
    imbalance: Literal["none", "oversample", "reweight"] = "none"  # explicit only, training split only
    low_grade: float = 0.5  # rows with a normalised grade below this count as low
    imbalance_factor: float = 3.0  # copies per low row (oversample) or their loss weight (reweight)
    imbalance_noise: float = 0.02  # std of the noise added to oversampled grades
    seed: int = 0
    device: str = "auto"  # "auto" → CUDA when available, else CPU

    def __post_init__(self) -> None:
        if self.mlp_layers is not None:
            object.__setattr__(self, "mlp_layers", tuple(int(x) for x in self.mlp_layers))
        checks = [
            (self.mode in MODE_DEFAULTS, f"mode must be 'explicit' or 'implicit', not {self.mode!r}"),
            (self.model in ("neumf", "gmf", "mlp"), f"model must be 'neumf', 'gmf' or 'mlp', not {self.model!r}"),
            (self.loss in ("mse", "huber", "l1"), f"loss must be 'mse', 'huber' or 'l1', not {self.loss!r}"),
            (self.imbalance in ("none", "oversample", "reweight"), f"unknown imbalance {self.imbalance!r}"),
            (self.validation in (None, "loo", "temporal", "random", "none"), f"bad validation {self.validation!r}"),
            (
                (self.gmf_dim is None or self.gmf_dim > 0)
                and (self.mlp_dim is None or self.mlp_dim > 0)
                and (self.mlp_layers is None or (len(self.mlp_layers) > 0 and min(self.mlp_layers) > 0)),
                "sizes must be positive",
            ),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (self.n_negatives >= 1 and self.val_negatives >= 1, "negative counts must be ≥ 1"),
            (self.patience is None or self.patience >= 1, "patience must be ≥ 1"),
            (self.imbalance == "none" or self.mode == "explicit", "imbalance handling needs explicit mode"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ElectivesError(f"invalid training configuration: {msg}")

    def resolved(self) -> TrainConfig:
        """A copy with every None field replaced by the mode's default."""
        return replace(self, **{k: v for k, v in MODE_DEFAULTS[self.mode].items() if getattr(self, k) is None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The fields `electives tune` may search (tuning.SEARCH_SPACE).
TUNABLE = (
    "lr",
    "weight_decay",
    "embedding_l2",
    "gmf_dim",
    "mlp_dim",
    "mlp_layers",
    "dropout",
    "batch_size",
    "imbalance",
)
