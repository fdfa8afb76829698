"""Training steps: the row step's hand-written gradient is autograd's, it trains a model as well as the dense step
on a known answer, GMF's output weights stay at 1 when fixed, the layer L2 shrinks the layers, and torchrun keeps
the dense step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from checkerboard import checkerboard, unseen_auc

from electives.errors import ElectivesError
from electives.models.config import TrainConfig
from electives.models.distributed import Context
from electives.models.ncf import build_model
from electives.models.steps import DenseStep, RowStep, uses_rows
from electives.models.training import fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"gmf_dim": 8, "mlp_dim": 8, "mlp_layers": (16, 8), "lr": 0.01, "batch_size": 64}


def _captured(step: RowStep) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Keeps the rows and gradients the row step hands its RowAdams (and stops every update)."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    step.students.step = lambda rows, grads: seen.__setitem__("student", (rows, grads[0].clone()))  # type: ignore[method-assign]
    step.courses.step = lambda rows, grads: seen.__setitem__("course", (rows, grads[0].clone()))  # type: ignore[method-assign]
    step.opt.step = lambda *a, **k: None  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("kind", ["neumf", "gmf", "mlp"])
@pytest.mark.parametrize("gmf_output", ["learned", "fixed"])
@pytest.mark.parametrize("mode", ["implicit", "explicit"])
def test_row_step_gradient_is_autograds(kind: str, gmf_output: str, mode: str) -> None:
    """One step on a tiny model: the same loss, and for every parameter the same gradient (the embeddings' summed
    over each row's occurrences), with both L2 terms and explicit row weights in play."""
    cfg = TrainConfig(
        mode=mode, model=kind, gmf_dim=4, mlp_dim=3, mlp_layers=(5, 4), embedding_l2=0.3, layer_l2=0.2,
        gmf_output=gmf_output, training_step="rows",
    ).resolved()  # fmt: skip
    torch.manual_seed(0)
    rows_model = build_model(kind, 7, 9, 4, 3, (5, 4), 0.0, gmf_output)
    with torch.no_grad():
        for p in rows_model.parameters():  # away from the initial scale, so that every term matters
            p.add_(torch.randn_like(p) * 0.3)
        rows_model.hold_fixed(grad=False)
    dense_model = build_model(kind, 7, 9, 4, 3, (5, 4), 0.0, gmf_output)
    dense_model.load_state_dict(rows_model.state_dict())
    k = 3 if mode == "implicit" else 1
    s, c = torch.tensor([1, 5, 1, 2]), torch.randint(0, 9, (4, k))
    y = torch.rand(4, k) if mode == "explicit" else torch.eye(1, k).expand(4, k).contiguous()
    w = torch.rand(4, k) + 0.5 if mode == "explicit" else None
    step = RowStep(rows_model, cfg)
    seen = _captured(step)
    loss = step.step(s, c, y, w)
    dense = DenseStep(dense_model, cfg, device="cpu", ctx=Context())
    dense.opt.step = lambda *a, **k: None  # type: ignore[method-assign]
    expected = dense.step(s.repeat_interleave(k), c.reshape(-1), y.reshape(-1), None if w is None else w.reshape(-1))
    torch.testing.assert_close(loss, expected)
    dg = rows_model.gmf_dim
    for (name, p), q in zip(rows_model.named_parameters(), dense_model.parameters(), strict=True):
        side = "student" if ".student." in name else "course" if ".course." in name else None
        if side is None:
            torch.testing.assert_close(p.grad, q.grad, msg=name)
            continue
        rows, grads = seen[side]
        summed = torch.zeros(len(p), grads.shape[1]).index_add_(0, rows, grads)
        torch.testing.assert_close(summed[:, :dg] if name.startswith("gmf") else summed[:, dg:], q.grad, msg=name)


@pytest.mark.parametrize("mode", ["implicit", "explicit"])
def test_row_step_learns_the_checkerboard_and_leaves_plain_embeddings(mode: str) -> None:
    data = checkerboard(implicit=mode == "implicit")
    cfg = TrainConfig(mode=mode, **SMALL, epochs=30, patience=10, training_step="rows", refit=False)
    model = fit(data, cfg, progress=False)
    assert unseen_auc(model, data, data) > 0.9
    # Trained in one side-by-side table, handed back as separate contiguous embeddings.
    module = model.model
    assert module is not None
    tables = [module.gmf.student.weight, module.mlp.student.weight, module.gmf.course.weight, module.mlp.course.weight]
    assert all(t.is_contiguous() for t in tables)
    assert len({t.untyped_storage().data_ptr() for t in tables}) == 4


@pytest.mark.parametrize("step", ["rows", "dense"])
def test_fixed_gmf_output_stays_at_one_and_layer_l2_shrinks_the_layers(step: str) -> None:
    data = checkerboard(implicit=True)
    base = {"mode": "implicit", **SMALL, "epochs": 6, "validation": "none", "training_step": step}
    fixed = fit(data, TrainConfig(**base, gmf_output="fixed", layer_l2=1e-3), progress=False).model
    assert fixed is not None
    assert torch.equal(fixed.out.weight[0, :8], torch.ones(8))
    assert unseen_auc_of(fixed, data) > 0.8

    def layer_norm(l2: float) -> float:
        model = fit(data, TrainConfig(**base, layer_l2=l2), progress=False).model
        assert model is not None
        with torch.no_grad():
            return float(sum(w.pow(2).sum() for w in model.layer_weights()))

    assert layer_norm(0.05) < 0.7 * layer_norm(0.0)


def unseen_auc_of(module: torch.nn.Module, data) -> float:
    """unseen_auc of a bare module (through a minimal score_all)."""

    class Scores:
        def score_all(self, students: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module.score_all(torch.from_numpy(students)).numpy()

    return unseen_auc(Scores(), data, data)


def test_torchrun_keeps_the_dense_step_and_bad_settings_are_refused() -> None:
    rows = TrainConfig(mode="implicit", training_step="rows").resolved()
    assert uses_rows(rows, Context())
    assert not uses_rows(rows, Context(rank=0, world_size=2))
    assert not uses_rows(TrainConfig(mode="implicit", training_step="dense").resolved(), Context())
    with pytest.raises(ElectivesError, match="weight_decay 0"):
        TrainConfig(gmf_output="fixed", weight_decay=0.01)
    with pytest.raises(ElectivesError, match="training_step"):
        TrainConfig(training_step="sparse")  # type: ignore[arg-type]
    with pytest.raises(ElectivesError, match="≥ 0"):
        TrainConfig(layer_l2=-1.0)


def test_training_flushes_subnormal_floats_and_restores_them_after() -> None:
    """An L2 term drives dead units' weights towards zero, where subnormal floats slow every operation many times
    over: training runs with them flushed to zero, and leaves the process as it found it."""
    tiny = torch.tensor([1e-39])  # subnormal in float32
    inside = []
    fit(
        checkerboard(implicit=True),
        TrainConfig(mode="implicit", **SMALL, epochs=1, validation="none"),
        progress=False,
        on_epoch=lambda stats, model: inside.append(float(tiny * 1.0)),
    )
    assert inside == [0.0]
    assert float(tiny * 1.0) > 0.0


@pytest.mark.parametrize("step", ["rows", "dense"])
def test_embedding_lr_is_the_embeddings_own_rate(step: str) -> None:
    data = checkerboard(implicit=True)
    torch.manual_seed(0)
    cfg = TrainConfig(mode="implicit", **SMALL, embedding_lr=1e-9, training_step=step).resolved()
    model = build_model("neumf", data.n_students, data.n_courses, 8, 8, (16, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    make = RowStep(model, cfg) if step == "rows" else DenseStep(model, cfg, device="cpu", ctx=Context())
    s, c = torch.tensor([0, 1, 2]), torch.tensor([[0, 3], [1, 4], [2, 5]])
    y = torch.tensor([[1.0, 0.0]] * 3)
    if step == "rows":
        make.step(s, c, y, None)
    else:
        make.step(s.repeat_interleave(2), c.reshape(-1), y.reshape(-1), None)
    moved = {k: float((v - before[k]).abs().max()) for k, v in model.state_dict().items()}
    assert all(moved[k] < 1e-8 for k in moved if k.endswith(("student.weight", "course.weight")))
    assert moved["out.weight"] > 1e-3 and moved["mlp.layers.0.weight"] > 1e-3
