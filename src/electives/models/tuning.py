"""Choosing an NCF training configuration on a validation split carved from the TRAINING data (never a test set).

`tune(train, base, trials=…, timeout=…)`: an Optuna TPE search (seeded) over learning rate, regularisation,
sizes, dropout, batch size and (explicit mode) imbalance handling. (Which family to train is chosen by
`models.selection` and `models.implicit_selection`.)

The objective is the one early stopping uses: validation RMSE of the normalised grade (explicit, lower is
better) or sampled HR@10 (implicit, higher is better), at the restored best epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from electives.data.interactions import Interactions
from electives.data.splits import validation_split
from electives.errors import DataError
from electives.models.config import TUNABLE
from electives.models.epochs import validation_metric_name
from electives.models.training import NCF, TrainConfig, fit

__all__ = [
    "TuneResult",
    "TunedTrial",
    "config_values",
    "tune",
    "validation_value",
]

# Hidden-layer presets: the seed's tower and the paper's, plus smaller ones for small registrars.
LAYER_CHOICES = ("32,16", "32,16,8", "64,32,16", "64,32,16,8", "128,64,32")
CONFIG_FILE_KIND = "electives-train-config"


def validation_value(fitted: NCF) -> float:
    """The validation metric at the restored best epoch of the final phase (RMSE or HR@10)."""
    for h in fitted.history:
        if h.phase == fitted.config.model and h.epoch == fitted.best_epoch and h.val_metric is not None:
            return float(h.val_metric)
    raise DataError("training ran without a validation split, so there is nothing to compare on")


def metric_name(mode: str) -> str:
    return "val_" + validation_metric_name(mode)


# -- hyper-parameter search -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TunedTrial:
    number: int
    params: dict[str, Any]
    value: float | None
    best_epoch: int | None
    seconds: float
    state: str


@dataclass
class TuneResult:
    best_config: TrainConfig
    best_value: float
    metric: str
    trials: list[TunedTrial]
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `config` is what `electives train --config FILE` reads."""
        config = self.best_config.to_dict()
        config.pop("device", None)  # where to run is the trainer's choice, not a tuned value
        return {
            "kind": CONFIG_FILE_KIND,
            "config": config,
            "metric": self.metric,
            "best_value": self.best_value,
            "trials": [
                {
                    "number": t.number,
                    "params": t.params,
                    "value": t.value,
                    "best_epoch": t.best_epoch,
                    "seconds": round(t.seconds, 2),
                    "state": t.state,
                }
                for t in self.trials
            ],
            "info": self.info,
        }

    def table(self, scale_range: float = 1.0, digits: int = 4) -> str:
        """One line per trial: number, metric, best epoch, seconds and the sampled parameters."""
        names = [n for n in TUNABLE if any(n in t.params for t in self.trials)]
        unit = scale_range if self.metric == "val_rmse" else 1.0
        header = ["trial", self.metric, "epoch", "s", *names]
        rows = []
        for t in self.trials:
            value = "" if t.value is None else f"{t.value * unit:.{digits}f}"
            mark = "*" if t.value is not None and t.value == self.best_value else ""
            rows.append(
                [
                    f"{t.number}{mark}",
                    value,
                    "" if t.best_epoch is None else str(t.best_epoch),
                    f"{t.seconds:.1f}",
                    *(_show(t.params.get(n)) for n in names),
                ]
            )
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        fmt = "  ".join(f"{{:>{w}}}" for w in widths)
        return "\n".join(fmt.format(*r) for r in [header, *rows])


def _show(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def suggest(trial: Any, mode: str, names: Sequence[str]) -> dict[str, Any]:
    """Sample the named hyper-parameters for one Optuna trial (fields of TrainConfig, mlp_layers as text)."""
    out: dict[str, Any] = {}
    if "lr" in names:
        out["lr"] = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    if "weight_decay" in names:
        out["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
    if "embedding_l2" in names:
        out["embedding_l2"] = trial.suggest_float("embedding_l2", 1e-7, 1e-2, log=True)
    if "gmf_dim" in names:
        out["gmf_dim"] = trial.suggest_categorical("gmf_dim", [8, 16, 32, 64, 128])
    if "mlp_dim" in names:
        out["mlp_dim"] = trial.suggest_categorical("mlp_dim", [8, 16, 32, 64])
    if "mlp_layers" in names:
        out["mlp_layers"] = trial.suggest_categorical("mlp_layers", list(LAYER_CHOICES))
    if "dropout" in names:
        out["dropout"] = trial.suggest_float("dropout", 0.0, 0.5)
    if "batch_size" in names:
        sizes = [64, 128, 256, 512, 1024] if mode == "explicit" else [1024, 2048, 4096, 8192]
        out["batch_size"] = trial.suggest_categorical("batch_size", sizes)
    if "imbalance" in names and mode == "explicit":
        out["imbalance"] = trial.suggest_categorical("imbalance", ["none", "oversample", "reweight"])
    return out


def _start_params(cfg: TrainConfig, space: Sequence[str]) -> dict[str, Any]:
    values = {
        "lr": min(max(cfg.lr or 1e-3, 1e-4), 1e-2),
        "weight_decay": min(max(cfg.weight_decay or 0.0, 1e-6), 1e-1),
        "embedding_l2": min(max(cfg.embedding_l2, 1e-7), 1e-2),
        "gmf_dim": cfg.gmf_dim,
        "mlp_dim": cfg.mlp_dim,
        "mlp_layers": ",".join(map(str, cfg.mlp_layers)),
        "dropout": min(cfg.dropout, 0.5),
        "batch_size": cfg.batch_size,
        "imbalance": cfg.imbalance,
    }
    choices = {
        "gmf_dim": [8, 16, 32, 64, 128],
        "mlp_dim": [8, 16, 32, 64],
        "mlp_layers": list(LAYER_CHOICES),
        "batch_size": [64, 128, 256, 512, 1024] if cfg.mode == "explicit" else [1024, 2048, 4096, 8192],
    }
    # A value outside a categorical's choices cannot be enqueued; that parameter is then sampled.
    return {
        k: v
        for k, v in values.items()
        if k in space and (k not in choices or v in choices[k]) and (k != "imbalance" or cfg.mode == "explicit")
    }


def _apply(base: TrainConfig, params: Mapping[str, Any]) -> TrainConfig:
    values = dict(params)
    if isinstance(values.get("mlp_layers"), str):
        values["mlp_layers"] = tuple(int(x) for x in values["mlp_layers"].split(","))
    return replace(base, **values)


def tune(
    train: Interactions,
    base: TrainConfig,
    *,
    trials: int = 20,
    timeout: float | None = None,
    seed: int = 0,
    space: Sequence[str] = TUNABLE,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> TuneResult:
    """Search `space` with Optuna's TPE sampler (seeded) on a validation split carved from `train`.

    Every trial trains `base` with the sampled values on the same (fit, validation) split and the same
    training seed, so the trials differ only in their hyper-parameters. Stops after `trials` trials or
    `timeout` seconds, whichever comes first (a trial already running is finished).
    """
    import optuna

    unknown = sorted(set(space) - set(TUNABLE))
    if unknown:
        raise DataError(f"cannot tune {', '.join(unknown)}; tunable: {', '.join(TUNABLE)}")
    if trials < 1:
        raise DataError(f"trials must be 1 or more, got {trials}")
    cfg = replace(base.resolved(), refit=False)  # a trial is judged on validation; refitting it would be wasted
    fit_data, val = validation_split(train, cfg.validation, cfg.val_fraction, cfg.seed)  # type: ignore[arg-type]
    explicit = cfg.mode == "explicit"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize" if explicit else "maximize", sampler=optuna.samplers.TPESampler(seed=seed)
    )
    # Trial 0 is the starting configuration (clamped into the space), so tuning never reports worse than it.
    study.enqueue_trial(_start_params(cfg, space), skip_if_exists=True)
    epochs: dict[int, int] = {}
    seconds: dict[int, float] = {}

    def objective(trial: Any) -> float:
        params = suggest(trial, cfg.mode, space)
        t0 = time.perf_counter()
        fitted = fit(fit_data, _apply(cfg, params), validation=val, progress=progress)
        seconds[trial.number] = time.perf_counter() - t0
        epochs[trial.number] = fitted.best_epoch
        value = validation_value(fitted)
        if not math.isfinite(value):
            raise DataError(f"trial {trial.number} gave a non-finite validation metric")
        return value

    def report(study: Any, trial: Any) -> None:
        if log:
            shown = ", ".join(f"{k}={_show(v)}" for k, v in trial.params.items())
            log(f"trial {trial.number}: {metric_name(cfg.mode)} {trial.value:.5f} ({shown})")

    study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=[report])
    done = [t for t in study.trials if t.value is not None]
    if not done:
        raise DataError("no tuning trial finished; allow more time (--timeout)")
    best = study.best_trial
    result_trials = [
        TunedTrial(
            t.number,
            dict(t.params),
            t.value,
            epochs.get(t.number),
            seconds.get(t.number, 0.0),
            t.state.name.lower(),
        )
        for t in study.trials
    ]
    best_config = replace(_apply(cfg, best.params), refit=base.resolved().refit)
    info = {
        "sampler": "TPE",
        "seed": seed,
        "space": list(space),
        "n_trials": len(study.trials),
        "fit_rows": len(fit_data),
        "validation_rows": len(val),
        "validation": cfg.validation,
        "train_fingerprint": train.fingerprint(),
    }
    return TuneResult(best_config, float(best.value), metric_name(cfg.mode), result_trials, info)


# -- configuration files --------------------------------------------------------------------------------------


def config_values(doc: Any, source: str = "config") -> dict[str, Any]:
    """TrainConfig field values from a parsed JSON document: `tune`'s output (its "config") or a plain object.

    Names are checked against TrainConfig's fields, so a typo is an error rather than silently ignored.
    """
    if isinstance(doc, Mapping) and "config" in doc:
        doc = doc["config"]
    if not isinstance(doc, Mapping):
        raise DataError(f"{source}: expected a JSON object of training settings (or tune's output)")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise DataError(f"{source}: unknown training setting(s) {', '.join(map(repr, unknown))}")
    values = dict(doc)
    if "mlp_layers" in values:
        layers = values["mlp_layers"]
        if isinstance(layers, str):
            layers = layers.split(",")
        try:
            values["mlp_layers"] = tuple(int(x) for x in layers)
        except (TypeError, ValueError):
            raise DataError(f"{source}: mlp_layers must be a list of sizes like [128, 64, 32]") from None
    return values
