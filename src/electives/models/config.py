"""What determines a training run: `TrainConfig` and the per-mode defaults it falls back on.

Kept apart from `training` (and free of torch) so that the command line can build its flags and help without
loading the training stack.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from electives.errors import ElectivesError

__all__ = [
    "EXPLICIT_FAMILY_NAMES",
    "FAMILY_NAMES",
    "FLAGS",
    "IMPLICIT_FAMILY_NAMES",
    "MODE_DEFAULTS",
    "TUNABLE",
    "Flag",
    "Mode",
    "TrainConfig",
    "config_from_flags",
    "layer_sizes",
    "number",
    "positive_float",
    "positive_int",
]

Mode = Literal["explicit", "implicit"]

# Every family `electives train --model NAME` can force (the NCF ones first): those that predict grades
# (models.selection builds them) and those that rank enrolments (models.implicit_selection builds them).
NCF_NAMES = ("neumf", "gmf", "mlp")
EXPLICIT_FAMILY_NAMES = (*NCF_NAMES, "bias", "mf", "knn", "ensemble", "blend")
IMPLICIT_FAMILY_NAMES = ("neumf", "ensemble", "ease", "ials", "blend")
FAMILY_NAMES = (*EXPLICIT_FAMILY_NAMES, "ease", "ials")

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
        "layer_l2": 0.0,
        "gmf_output": "learned",
        "training_step": "dense",
        "patience": 5,
        "n_negatives": 4,  # implicit training only
        # Off: split-conformal intervals are calibrated on the validation rows, which a refit would train on.
        "refit": False,
    },
    # Implicit (ML-1M, chosen on the LOO validation split carved from training): the paper's 64 predictive
    # factors for GMF, a 3-layer tower [64, 32, 16] (~2.5× fewer multiply-adds per sample than [128, 64, 32]),
    # and L2 on the embeddings that each batch uses, without which validation HR@10 peaks at epoch 5 and falls.
    # GMF a plain dot product of 128 factors (its output weights fixed at 1, so the embedding L2 acts: 3e-4) and 8
    # negatives a positive, after Rendle et al. 2020's MF: validation HR@10 0.7323 against 0.7239 (3 seeds; test
    # 0.7118 / 0.4344 against 0.6998 / 0.4197 with the dense step). Tried there and not better (RESULTS.md, issue
    # 14): L2 on the layers, the fixed dot product with 4 negatives, 8 negatives with GMF's learned output, GMF 128
    # + MLP 64 with the learned output, lr 5e-4, pre-training (any NeuMF learning rate).
    "implicit": {
        "lr": 1e-3,
        "weight_decay": 0.0,
        "batch_size": 2048,
        "epochs": 25,
        "validation": "loo",
        "gmf_dim": 128,
        "mlp_dim": 32,
        "mlp_layers": (64, 32, 16),
        "embedding_l2": 3e-4,
        "layer_l2": 0.0,
        "gmf_output": "fixed",
        "n_negatives": 8,
        # The row step: 1.6x faster per step at the same validation HR@10 on ML-1M (3 seeds), and it passes the
        # fold-in contract since the fold-in's stopping rule was fixed (the gap that held it back; RESULTS.md,
        # issue 14). Explicit mode keeps the dense step: its quality with the row step is not measured.
        "training_step": "rows",
        "patience": 3,
        "refit": True,
    },
}


# -- command-line flags ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    """How a TrainConfig field is given on the command line (train, evaluate and tune build their flags from
    these). The flag defaults to None, meaning "not given", so a --config file or the field's default applies."""

    name: str  # "--negatives"
    help: str  # "{default}" → the field's default, or "per mode" for a field that MODE_DEFAULTS fills
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    action: Literal["store_true", "boolean"] | None = None  # a switch, or --name/--no-name

    @property
    def dest(self) -> str:
        """The argparse Namespace attribute: "--batch-size" → "batch_size"."""
        return self.name.lstrip("-").replace("-", "_")

    def help_text(self, default: Any) -> str:
        return self.help.format(default="per mode" if default is None else default)


def _whole(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} must be {minimum} or more")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1."""
    return _whole(text, 1)


def count(text: str) -> int:
    """argparse type: a whole number ≥ 0."""
    return _whole(text, 0)


def number(text: str) -> float:
    """argparse type: any float."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    value = number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def layer_sizes(text: str) -> tuple[int, ...]:
    """argparse type: hidden layer sizes, "128,64,32"."""
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected sizes like 128,64,32") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive sizes like 128,64,32")
    return sizes


def _flag(name: str, help: str, **how: Any) -> dict[str, Flag]:
    """A field's metadata declaring its flag: `field(default=…, metadata=_flag("--name", "help", …))`."""
    return {"flag": Flag(name, help, **how)}


# -- the configuration ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run. `None` means "the mode's default" (see `MODE_DEFAULTS`).
    Fields with a command-line flag declare it beside them (see `Flag`, `FLAGS`)."""

    mode: Mode = field(
        default="explicit", metadata=_flag("--mode", "default: {default}", choices=("explicit", "implicit"))
    )
    model: Literal["neumf", "gmf", "mlp"] = field(
        default="neumf", metadata=_flag("--model", "default: {default}", choices=("neumf", "gmf", "mlp"))
    )
    gmf_dim: int | None = field(
        default=None, metadata=_flag("--gmf-dim", "default: {default}", type=positive_int, metavar="N")
    )
    # per side; the tower's input is 2 · mlp_dim
    mlp_dim: int | None = field(
        default=None, metadata=_flag("--mlp-dim", "default: {default}", type=positive_int, metavar="N")
    )
    mlp_layers: tuple[int, ...] | None = field(
        default=None,
        metadata=_flag(
            "--mlp-layers", "MLP hidden layer sizes (default: {default})", type=layer_sizes, metavar="A,B,C"
        ),
    )
    dropout: float = field(default=0.0, metadata=_flag("--dropout", "default: {default}", type=float, metavar="P"))
    lr: float | None = field(
        default=None, metadata=_flag("--lr", "learning rate (default: {default})", type=positive_float, metavar="LR")
    )
    # The embedding tables' own rate: the row step's lazy Adam moves a row only in the steps that touch it, where
    # dense Adam's momentum keeps moving it for some ten steps after each touch, so it may want a larger one.
    embedding_lr: float | None = field(
        default=None,
        metadata=_flag(
            "--embedding-lr", "learning rate of the embeddings (default: --lr)", type=positive_float, metavar="LR"
        ),
    )
    # decoupled (AdamW) decay of all weights
    weight_decay: float | None = field(
        default=None, metadata=_flag("--weight-decay", "AdamW decay (default: {default})", type=float, metavar="W")
    )
    # L2 on the embedding rows each batch uses, once per occurrence (frequent ids are shrunk more often)
    embedding_l2: float | None = field(
        default=None, metadata=_flag("--embedding-l2", "default: {default}", type=float, metavar="W")
    )
    # L2 on the weights past the embeddings (MLP layers, output layer with GMF's output weights), biases left out:
    # without it GMF's output weights can grow while the embeddings shrink, and the embedding L2 does nothing.
    layer_l2: float | None = field(
        default=None,
        metadata=_flag(
            "--layer-l2",
            "L2 on the MLP's and the output layer's weights, GMF's output weights among them (default: {default})",
            type=float,
            metavar="W",
        ),
    )
    # "fixed": GMF's output weights held at 1, GMF a plain dot product (its scale is then the embeddings')
    gmf_output: Literal["learned", "fixed"] | None = field(
        default=None,
        metadata=_flag(
            "--gmf-output",
            "GMF's output weights: learned (the paper) or fixed at 1, a dot product (default: {default})",
            choices=("learned", "fixed"),
        ),
    )
    # "rows": a hand-written step that updates only the embedding rows a batch touches (AdamW's moves of the others
    # caught up later), each positive in one batch with its negatives; "dense": autograd and AdamW over every row
    # (always under torchrun and with DP)
    training_step: Literal["rows", "dense"] | None = field(
        default=None,
        metadata=_flag(
            "--training-step",
            "rows: a hand-written step that updates only the embedding rows a batch touches; dense: autograd and "
            "AdamW over every row (always under torchrun) (default: {default})",
            choices=("rows", "dense"),
        ),
    )
    batch_size: int | None = field(
        default=None, metadata=_flag("--batch-size", "default: {default}", type=positive_int, metavar="N")
    )
    epochs: int | None = field(
        default=None, metadata=_flag("--epochs", "maximum epochs (default: {default})", type=positive_int, metavar="N")
    )
    # implicit: sampled negatives per positive, resampled every epoch
    n_negatives: int | None = field(
        default=None,
        metadata=_flag("--negatives", "implicit mode (default: {default})", type=positive_int, metavar="N"),
    )
    loss: Literal["mse", "huber", "l1"] = field(
        default="mse", metadata=_flag("--loss", "explicit mode (default: {default})", choices=("mse", "huber", "l1"))
    )
    huber_delta: float = 0.1  # in normalised grade units
    # epochs without validation improvement before stopping
    patience: int | None = field(
        default=None, metadata=_flag("--patience", "default: {default}", type=positive_int, metavar="N")
    )
    validation: Literal["loo", "temporal", "random", "none"] | None = field(
        default=None,
        metadata=_flag(
            "--validation", "validation split kind (default: {default})", choices=("loo", "temporal", "random")
        ),
    )
    # for validation="random"
    val_fraction: float = field(
        default=0.1, metadata=_flag("--val-fraction", "default: {default}", type=float, metavar="F")
    )
    val_negatives: int = 99  # implicit: negatives per validation positive for HR@10
    # After early stopping, train again from scratch on training + validation rows for the best epoch count.
    refit: bool | None = field(
        default=None,
        metadata=_flag(
            "--refit",
            "after early stopping, train again on training + validation rows for the best epoch count "
            "(default: per mode — on for implicit; off for explicit, whose intervals are calibrated on validation)",
            action="boolean",
        ),
    )
    # NeuMF only: GMF, then MLP, then NeuMF from both with α = pretrain_alpha
    pretrain: bool = field(
        default=False,
        metadata=_flag("--pretrain", "pre-train GMF and MLP, then NeuMF from both (α = 0.5)", action="store_true"),
    )
    pretrain_alpha: float = 0.5
    # The learning rate of the NeuMF phase after pre-training (default: lr). Adam's first steps move every weight
    # by about lr whatever its gradient, which undoes the pre-trained optimum (the paper switches to plain SGD).
    pretrain_lr: float | None = field(
        default=None,
        metadata=_flag(
            "--pretrain-lr",
            "learning rate of NeuMF after pre-training (default: --lr)",
            type=positive_float,
            metavar="LR",
        ),
    )
    # explicit only, training split only
    imbalance: Literal["none", "oversample", "reweight"] = field(
        default="none", metadata=_flag("--imbalance", "default: {default}", choices=("none", "oversample", "reweight"))
    )
    low_grade: float = 0.5  # rows with a normalised grade below this count as low
    imbalance_factor: float = 3.0  # copies per low row (oversample) or their loss weight (reweight)
    imbalance_noise: float = 0.02  # std of the noise added to oversampled grades
    seed: int = field(default=0, metadata=_flag("--seed", "random seed (default: {default})", type=int, metavar="N"))
    # "auto" → CUDA when available, else CPU
    device: str = field(default="auto", metadata=_flag("--device", "{default} (CUDA when present), cpu, cuda, cuda:N"))

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
            ((self.n_negatives or 1) >= 1 and self.val_negatives >= 1, "negative counts must be ≥ 1"),
            (self.patience is None or self.patience >= 1, "patience must be ≥ 1"),
            (self.imbalance == "none" or self.mode == "explicit", "imbalance handling needs explicit mode"),
            (
                self.gmf_output in (None, "learned", "fixed"),
                f"gmf_output must be 'learned' or 'fixed', not {self.gmf_output!r}",
            ),
            (
                self.training_step in (None, "rows", "dense"),
                f"training_step must be 'rows' or 'dense', not {self.training_step!r}",
            ),
            (
                all(x is None or x >= 0 for x in (self.weight_decay, self.embedding_l2, self.layer_l2)),
                "weight_decay, embedding_l2 and layer_l2 must be ≥ 0",
            ),
            # AdamW's decay would shrink the output weights that gmf_output="fixed" holds at 1.
            (
                not (self.gmf_output == "fixed" and self.weight_decay),
                "gmf_output='fixed' needs weight_decay 0 (use embedding_l2 and layer_l2)",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ElectivesError(f"invalid training configuration: {msg}")

    def resolved(self) -> TrainConfig:
        """A copy with every None field replaced by the mode's default."""
        return replace(self, **{k: v for k, v in MODE_DEFAULTS[self.mode].items() if getattr(self, k) is None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# field name → its command-line flag, in declaration order.
FLAGS: dict[str, Flag] = {f.name: f.metadata["flag"] for f in fields(TrainConfig) if "flag" in f.metadata}


def config_from_flags(given: Any, file_values: dict[str, Any] | None = None) -> TrainConfig:
    """TrainConfig from the flags `given` (an argparse Namespace; None = not given), over `file_values` (a
    --config file), over TrainConfig's defaults. `model="auto"` or a family other than NCF's becomes neumf: the
    configuration then only sets the NCF candidates (and an ensemble's members)."""
    flags = {name: getattr(given, flag.dest, None) for name, flag in FLAGS.items()}
    merged = {**(file_values or {}), **{k: v for k, v in flags.items() if v is not None}}
    if merged.get("model") == "auto" or merged.get("model") in FAMILY_NAMES[len(NCF_NAMES) :]:
        merged["model"] = "neumf"
    return TrainConfig(**merged)


# The fields `electives tune` may search (the default space of tuning.tune).
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
