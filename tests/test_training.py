"""Training: recovery of a known structure, reproducibility, early stopping, negative sampling, options."""

import time

import numpy as np
import pytest
import torch
from checkerboard import checkerboard, unseen_auc

from electives.data.interactions import Interactions
from electives.data.sampling import sample_negatives
from electives.data.splits import random_split, validation_split
from electives.errors import DataError, ElectivesError
from electives.models.epochs import prepare_training
from electives.models.training import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMALL = {"gmf_dim": 8, "mlp_dim": 8, "mlp_layers": (16, 8), "lr": 0.01, "batch_size": 64}


def test_explicit_neumf_recovers_checkerboard():
    data = checkerboard()
    train, test = random_split(data, 0.2, seed=1)
    model = fit(train, TrainConfig(**SMALL, epochs=60, patience=10), progress=False)
    assert unseen_auc(model, data, train) > 0.95
    pred = model.predict(test.students, test.courses)
    assert np.sqrt(np.mean((pred - test.grades) ** 2)) < 0.12  # noise std is 0.05, good/bad gap 0.55


def test_implicit_neumf_recovers_checkerboard():
    data = checkerboard(implicit=True)
    assert data.grades is None
    model = fit(data, TrainConfig(mode="implicit", **SMALL, epochs=30, patience=10), progress=False)
    assert unseen_auc(model, data, data) > 0.9
    assert model.validated is not None and model.validated.history[-1].val_metric is not None


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
def test_same_seed_same_weights_different_seed_different(mode):
    data = checkerboard(implicit=mode == "implicit")
    cfg = TrainConfig(mode=mode, **SMALL, epochs=3, dropout=0.2, seed=7)
    a = fit(data, cfg, progress=False).model.state_dict()
    b = fit(data, cfg, progress=False).model.state_dict()
    c = fit(data, TrainConfig(mode=mode, **SMALL, epochs=3, dropout=0.2, seed=8), progress=False).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_fit_leaves_global_torch_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(checkerboard(), TrainConfig(**SMALL, epochs=1), progress=False)
    torch.testing.assert_close(torch.rand(3), expected)


def test_early_stopping_restores_best_epoch():
    data = checkerboard()
    cfg = TrainConfig(**{**SMALL, "lr": 0.05}, epochs=200, patience=3, seed=3)
    model = fit(data, cfg, progress=False)
    vals = [h.val_metric for h in model.history]
    assert len(vals) < 200  # stopped early
    assert model.best_epoch == int(np.argmin(vals)) + 1
    assert len(vals) - model.best_epoch == 3
    # The returned weights are the best epoch's: recompute validation RMSE on the same carved split.
    _, val = validation_split(data, "random", cfg.val_fraction, cfg.seed)
    rmse = np.sqrt(np.mean((model.predict(val.students, val.courses) - val.grades) ** 2))
    assert rmse == pytest.approx(min(vals), rel=1e-5)
    assert all(h.seconds >= 0 and h.train_loss >= 0 for h in model.history)


def test_pretraining_runs_gmf_then_mlp_then_neumf():
    data = checkerboard()
    train, _ = random_split(data, 0.2, seed=1)
    # patience = epochs: no phase can stop early, so each runs all its epochs.
    model = fit(train, TrainConfig(**SMALL, epochs=6, patience=6, pretrain=True), progress=False)
    assert [h.phase for h in model.history] == ["gmf"] * 6 + ["mlp"] * 6 + ["neumf"] * 6
    # And the pre-trained NeuMF learned the board (chance: 0.5; measured 0.98 or more).
    assert unseen_auc(model, data, train) > 0.95


def test_pretrain_lr_is_the_neumf_phase_learning_rate():
    data = checkerboard(implicit=True)

    def largest_move(pretrain_lr):
        # The largest change of any NeuMF weight over its second epoch, and the number of steps in that epoch.
        weights = []

        def keep(stats, model):
            if stats.phase == "neumf":
                weights.append({k: v.clone() for k, v in model.state_dict().items()})

        cfg = TrainConfig(mode="implicit", **SMALL, epochs=2, patience=2, pretrain=True, refit=False)
        fit(data, TrainConfig(**{**cfg.__dict__, "pretrain_lr": pretrain_lr}), progress=False, on_epoch=keep)
        return max(float((weights[1][k] - weights[0][k]).abs().max()) for k in weights[0])

    # At most this many steps an epoch: every enrolment (validation's among them) with its negatives.
    steps = -(-len(data.students) * (1 + TrainConfig(mode="implicit").resolved().n_negatives) // SMALL["batch_size"])
    # Adam moves a weight by at most about lr per step: at 1e-6 every weight stays within steps · 1e-6 of where the
    # epoch began; at the phases' own lr (0.01) some move further than that.
    assert largest_move(1e-6) <= 1.5e-6 * steps
    assert largest_move(None) > 1.5e-6 * steps


@pytest.mark.parametrize("kind", ["gmf", "mlp"])
def test_single_models_train(kind):
    data = checkerboard()
    train, _ = random_split(data, 0.2, seed=1)
    model = fit(train, TrainConfig(model=kind, **SMALL, epochs=20, patience=10), progress=False)
    assert model.score_all(np.array([0, 1])).shape == (2, 20)
    assert {h.phase for h in model.history} == {kind}
    # Each tower alone orders unseen matching courses first (chance: 0.5; both measured 1.0 after 20 epochs).
    assert unseen_auc(model, data, train) > 0.95


def test_predictions_are_normalised_grades():
    model = fit(checkerboard(), TrainConfig(**SMALL, epochs=2, validation="none"), progress=False)
    p = model.predict(np.array([0, 1, 2]), np.array([3, 4, 5]))
    assert p.dtype == np.float32 and ((p >= 0) & (p <= 1)).all()
    assert model.predicts_grades and model.best_epoch == 2
    assert all(h.val_metric is None for h in model.history)


def test_explicit_needs_grades():
    with pytest.raises(DataError):
        fit(checkerboard(implicit=True), TrainConfig(**SMALL, epochs=1), progress=False)


def test_config_defaults_and_validation():
    implicit = TrainConfig(mode="implicit").resolved()
    assert implicit.n_negatives == 8 and implicit.validation == "loo" and implicit.batch_size is not None
    assert TrainConfig().resolved().validation == "random" and TrainConfig().resolved().n_negatives == 4
    assert TrainConfig(mode="implicit", n_negatives=2).resolved().n_negatives == 2
    assert TrainConfig(lr=0.5).resolved().lr == 0.5
    with pytest.raises(ElectivesError):
        TrainConfig(mode="ranking")
    with pytest.raises(ElectivesError):
        TrainConfig(mode="implicit", imbalance="reweight")
    with pytest.raises(ElectivesError):
        TrainConfig(dropout=1.0)


def test_imbalance_options_touch_only_low_grades():
    data = checkerboard()
    n_low = int((data.grades < 0.5).sum())
    rng = np.random.default_rng(0)
    over = prepare_training(TrainConfig(imbalance="oversample", imbalance_factor=3).resolved(), data, rng=rng)
    assert len(over.grades) == len(data) + 2 * n_low
    copies = over.grades[len(data) :]
    assert np.abs(copies - np.repeat(data.grades[data.grades < 0.5], 2)).max() < 0.2
    weighted = prepare_training(TrainConfig(imbalance="reweight", imbalance_factor=2.5).resolved(), data, rng=rng)
    assert weighted.weights.tolist() == np.where(data.grades < 0.5, 2.5, 1.0).tolist()
    plain = prepare_training(TrainConfig().resolved(), data, rng=rng)
    assert plain.weights is None and len(plain.grades) == len(data)
    fit(data, TrainConfig(**SMALL, epochs=1, imbalance="reweight"), progress=False)


# -- negative sampling ----------------------------------------------------------------------------------------


def _random_implicit(n_students: int, n_courses: int, per_student: int, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    s = np.repeat(np.arange(n_students), per_student)
    c = rng.integers(0, n_courses, size=len(s))
    return Interactions(
        s, c, None, np.arange(len(s)), [str(i) for i in range(n_students)], [str(i) for i in range(n_courses)]
    )


def test_sampler_never_returns_a_training_positive():
    data = _random_implicit(300, 50, 30)  # dense: ~45% of each row taken
    lookup = data.item_lookup()
    neg = sample_negatives(data.students, lookup, 4, np.random.default_rng(1))
    assert neg.shape == (len(data), 4)
    taken = {(int(s), int(c)) for s, c in zip(data.students, data.courses, strict=True)}
    assert not any((int(s), int(c)) in taken for s, c in zip(np.repeat(data.students, 4), neg.ravel(), strict=True))


def test_sampler_unique_rows_and_nearly_full_students():
    # Student 0 has 48 of 50 courses: only 2 remain, drawn through the exact fallback.
    s = np.r_[np.zeros(48, dtype=int), np.ones(5, dtype=int)]
    c = np.r_[np.arange(48), np.arange(5)]
    data = Interactions(s, c, None, np.arange(len(s)), ["a", "b"], [str(i) for i in range(50)])
    neg = sample_negatives(np.array([0, 1]), data.item_lookup(), 2, np.random.default_rng(0), unique=True)
    assert sorted(neg[0].tolist()) == [48, 49]
    assert len(set(neg[1].tolist())) == 2 and not set(neg[1].tolist()) & set(range(5))
    with pytest.raises(DataError):
        sample_negatives(np.array([0]), data.item_lookup(), 3, np.random.default_rng(0), unique=True)


def test_sampler_is_vectorised_on_a_million_pairs():
    data = _random_implicit(6000, 3700, 167)  # ML-1M-sized
    lookup = data.item_lookup()
    _ = lookup.sorted_keys
    students = np.repeat(data.students[:250_000], 4)  # 1M pairs
    t0 = time.perf_counter()
    neg = sample_negatives(students, lookup, 1, np.random.default_rng(0))
    seconds = time.perf_counter() - t0
    assert not lookup.contains(students, neg[:, 0]).any()
    assert seconds < 1.0, f"sampling 1M negatives took {seconds:.2f}s"


def test_given_validation_must_not_overlap_train():
    data = checkerboard()
    with pytest.raises(DataError, match="both train and test"):
        fit(data, TrainConfig(**SMALL, epochs=1), validation=data.subset(np.arange(5)), progress=False)
    train, val = random_split(data, 0.2, seed=0)
    model = fit(train, TrainConfig(**SMALL, epochs=2, embedding_l2=1e-3), validation=val, progress=False)
    assert len(model.history) == 2 and model.history[0].val_metric is not None


def test_refit_trains_again_on_training_and_validation_for_the_best_epochs():
    data = checkerboard(implicit=True)
    fit_data, val = validation_split(data, "loo", seed=0)
    model = fit(fit_data, TrainConfig(mode="implicit", **SMALL, epochs=8, patience=2), validation=val, progress=False)
    validated = model.validated
    assert validated is not None and validated.validated is None
    refit_phase = [h for h in model.history if h.phase == "neumf refit"]
    # Exactly the epochs validation chose, without validation scores (those rows are now training rows).
    assert len(refit_phase) == model.best_epoch == validated.best_epoch
    assert all(h.val_metric is None for h in refit_phase)
    assert model.history[: len(validated.history)] == validated.history
    # The refitted model has seen both sets; the validated one only the first.
    assert model.train_fingerprint == fit_data.concat(val).fingerprint()
    assert validated.train_fingerprint == fit_data.fingerprint()
    assert not all(
        torch.equal(a, b) for a, b in zip(model.model.parameters(), validated.model.parameters(), strict=True)
    )
    assert unseen_auc(model, data, data) > 0.9
    # Same seed, same refit.
    again = fit(fit_data, TrainConfig(mode="implicit", **SMALL, epochs=8, patience=2), validation=val, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.model.parameters(), again.model.parameters(), strict=True))


def test_refit_is_the_implicit_default_and_can_be_turned_off():
    assert TrainConfig(mode="implicit").resolved().refit is True
    assert TrainConfig(mode="explicit").resolved().refit is False  # intervals are calibrated on validation
    data = checkerboard(implicit=True)
    off = fit(data, TrainConfig(mode="implicit", **SMALL, epochs=3, refit=False), progress=False)
    assert off.validated is None and all(h.phase == "neumf" for h in off.history)
    on = fit(data, TrainConfig(mode="implicit", **SMALL, epochs=3), progress=False)
    # Validation carved inside fit: the model still counts as trained on the data it was given.
    assert on.validated is not None and on.train_fingerprint == data.fingerprint()


def test_refit_with_pretraining_repeats_every_phase():
    data = checkerboard(implicit=True)
    model = fit(data, TrainConfig(mode="implicit", **SMALL, epochs=3, pretrain=True), progress=False)
    phases = [h.phase for h in model.history]
    assert phases[-model.best_epoch :] == ["neumf refit"] * model.best_epoch
    for kind in ("gmf", "mlp"):
        assert phases.count(f"{kind} refit") == model.best_epochs[kind]
