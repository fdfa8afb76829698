"""NCF model math: shapes, batch scoring equal to pairwise scoring, pre-trained loading."""

import pytest
import torch

from electives.models.ncf import GMF, MLP, NeuMF, build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _randomise(model: torch.nn.Module) -> None:
    # Paper init makes all outputs ~0; larger weights make the comparisons below meaningful.
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)


@pytest.mark.parametrize("kind", ["gmf", "mlp", "neumf"])
def test_score_all_matches_pairwise_forward(kind):
    model = build_model(kind, 7, 11, gmf_dim=4, mlp_dim=5, layers=(8, 6, 3))
    _randomise(model)
    model.eval()
    students = torch.tensor([0, 3, 6, 3])
    with torch.no_grad():
        full = model.score_all(students, max_pairs=22)  # forces several chunks
        s = students.repeat_interleave(11)
        c = torch.arange(11).repeat(len(students))
        pairwise = model(s, c).reshape(len(students), 11)
    assert full.shape == (4, 11)
    torch.testing.assert_close(full, pairwise, rtol=1e-5, atol=1e-5)


def test_first_mlp_layer_splits_into_student_and_course_halves():
    model = MLP(5, 9, dim=4, layers=(6, 3))
    _randomise(model)
    s, c = torch.tensor([1, 4]), torch.tensor([2, 8])
    tower = model.mlp
    joint = tower.layers[0](torch.cat([tower.student(s), tower.course(c)], dim=-1))
    split = tower.student_half(s) + tower.course_half()[c]
    torch.testing.assert_close(joint, split)


def test_paper_initialisation():
    model = NeuMF(2000, 3000, gmf_dim=16, mlp_dim=16, layers=(32, 16))
    for emb in (model.gmf.student, model.gmf.course, model.mlp.student, model.mlp.course):
        assert emb.weight.std().item() == pytest.approx(0.01, rel=0.05)
        assert abs(emb.weight.mean().item()) < 1e-3
    bound = (3 / model.out.in_features) ** 0.5  # LeCun uniform output layer
    assert model.out.weight.abs().max().item() <= bound
    assert torch.count_nonzero(model.out.bias) == 0
    assert all(torch.count_nonzero(lin.bias) == 0 for lin in model.mlp.layers)


@pytest.mark.parametrize("kind", ["mlp", "neumf"])
def test_dropout_only_in_training(kind):
    model = build_model(kind, 4, 6, gmf_dim=3, mlp_dim=3, layers=(8, 4), dropout=0.5)
    _randomise(model)
    s, c = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([5, 4, 3, 2, 1, 0])
    with torch.no_grad():
        assert model(s, c).shape == (6,)
        model.eval()
        first = model(s, c)
        torch.testing.assert_close(model(s, c), first, rtol=0, atol=0)  # eval: deterministic
        model.train()
        # Seeded; p = 0.5 over 12 hidden units and 6 rows: a pass that drops no active unit is vanishingly rare.
        a, b = model(s, c), model(s, c)
        assert not torch.equal(a, first) and not torch.equal(a, b)
        model.eval()
        torch.testing.assert_close(model(s, c), first, rtol=0, atol=0)  # eval again: back to the same output
    # Dropout 0: training mode computes exactly what eval mode does.
    plain = build_model(kind, 4, 6, gmf_dim=3, mlp_dim=3, layers=(8, 4), dropout=0.0)
    _randomise(plain)
    with torch.no_grad():
        plain.train()
        trained_mode = plain(s, c)
        plain.eval()
        torch.testing.assert_close(plain(s, c), trained_mode, rtol=0, atol=0)


def test_load_pretrained_combines_outputs_with_alpha():
    gmf, mlp = GMF(6, 8, dim=4), MLP(6, 8, dim=3, layers=(4, 2))
    _randomise(gmf)
    _randomise(mlp)
    neumf = NeuMF(6, 8, gmf_dim=4, mlp_dim=3, layers=(4, 2))
    neumf.load_pretrained(gmf, mlp, alpha=0.5)
    s, c = torch.tensor([0, 2, 5]), torch.tensor([7, 1, 3])
    with torch.no_grad():
        # Output layer [α·w_G; (1−α)·w_M], bias α·b_G + (1−α)·b_M ⇒ logit = α·GMF + (1−α)·MLP.
        expected = 0.5 * gmf(s, c) + 0.5 * mlp(s, c)
        torch.testing.assert_close(neumf(s, c), expected)
        torch.testing.assert_close(neumf.gmf.student.weight, gmf.gmf.student.weight)
        torch.testing.assert_close(neumf.mlp.layers[0].weight, mlp.mlp.layers[0].weight)


def test_unknown_model_kind():
    with pytest.raises(ValueError):
        build_model("svd", 2, 2, 2, 2, (2,))
