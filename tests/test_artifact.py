import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from electives.data.interactions import Interactions
from electives.data.scales import load_scale
from electives.errors import ModelError
from electives.models.artifact import (
    FORMAT_VERSION,
    MANIFEST,
    WEIGHTS,
    load_artifact,
    load_model,
    manifest_digest,
    read_manifest,
    save_artifact,
    save_model,
)
from electives.models.calibration import fit_conformal
from electives.models.training import TrainConfig, fit


@pytest.fixture
def artifact(tmp_path):
    tensors = {"gmf.student": torch.arange(12, dtype=torch.float32).reshape(3, 4), "bias": torch.tensor([0.5])}
    return save_artifact(tmp_path / "model", tensors, {"config": {"mode": "explicit"}}), tensors


def test_round_trip_gives_identical_tensors(artifact):
    path, tensors = artifact
    loaded = load_artifact(path)
    assert set(loaded.tensors) == set(tensors)
    for name, value in tensors.items():
        assert torch.equal(loaded.tensors[name], value)
    assert loaded.manifest["config"] == {"mode": "explicit"}
    assert loaded.manifest["format_version"] == FORMAT_VERSION


def test_no_pickle_anywhere(artifact):
    path, _ = artifact
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST, WEIGHTS]
    # safetensors begins with an 8-byte little-endian header length followed by JSON, never a pickle opcode.
    blob = (path / WEIGHTS).read_bytes()
    assert blob[8:9] == b"{"
    assert b"\x80\x04" not in blob[:2]


def test_flipped_byte_is_refused(artifact):
    path, _ = artifact
    blob = bytearray((path / WEIGHTS).read_bytes())
    blob[-3] ^= 0xFF
    (path / WEIGHTS).write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_artifact(path)


def test_truncated_weights_are_refused(artifact):
    path, _ = artifact
    blob = (path / WEIGHTS).read_bytes()
    (path / WEIGHTS).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelError, match="truncated or were modified"):
        load_artifact(path)


def test_newer_format_is_refused(artifact):
    path, _ = artifact
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=f"artifact format {FORMAT_VERSION + 1} is newer"):
        read_manifest(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: (p / MANIFEST).unlink(), "manifest.json is missing"),
        (lambda p: (p / WEIGHTS).unlink(), "model.safetensors is missing"),
        (lambda p: (p / MANIFEST).write_text("{not json"), "not a valid manifest"),
        (lambda p: (p / MANIFEST).write_text("[]"), "expected a JSON object"),
        (
            lambda p: (p / MANIFEST).write_text('{"format_version": "1"}'),
            "'format_version' is missing or not an integer",
        ),
    ],
)
def test_broken_artifacts_give_clear_errors(artifact, mutate, message):
    path, _ = artifact
    mutate(path)
    with pytest.raises(ModelError, match=message):
        load_artifact(path)


def test_missing_directory(tmp_path):
    with pytest.raises(ModelError, match="no model artifact here"):
        load_artifact(tmp_path / "nope")


def test_overwrite_is_atomic_and_leaves_no_temporaries(artifact):
    path, _ = artifact
    save_artifact(path, {"w": torch.ones(2)}, {"config": {"mode": "implicit"}})
    assert load_artifact(path).manifest["config"]["mode"] == "implicit"
    assert [p.name for p in path.parent.iterdir()] == ["model"]


def test_non_json_manifest_leaves_nothing_behind(tmp_path):
    with pytest.raises(ModelError, match="not plain JSON"):
        save_artifact(tmp_path / "m", {"w": torch.ones(1)}, {"bad": float("nan")})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ trained models


@pytest.fixture(scope="module")
def small_fit():
    rng = np.random.default_rng(0)
    rows = [
        (f"s{s:02d}", f"c{c}", float(rng.uniform(0.4, 1.0))) for s in range(30) for c in range(8) if rng.random() < 0.7
    ]
    train = Interactions.from_frame(pd.DataFrame(rows, columns=["student", "course", "grade"]))
    cfg = TrainConfig(gmf_dim=4, mlp_dim=4, mlp_layers=(8, 4), epochs=3, batch_size=64, seed=3)
    return train, fit(train, cfg, progress=False)


def test_save_load_gives_identical_scores(tmp_path, small_fit):
    train, fitted = small_fit
    cal = fit_conformal(np.linspace(-0.1, 0.1, 50), 0.8)
    path = save_model(
        tmp_path / "m", fitted, train, scale=load_scale("percent"), course_names={"c1": "Algebra"}, calibration=cal
    )
    loaded = load_model(path)
    students = np.arange(train.n_students)
    np.testing.assert_array_equal(loaded.fitted.score_all(students), fitted.score_all(students))
    assert loaded.student_ids == train.student_ids and loaded.course_ids == train.course_ids
    assert loaded.course_names == {"c1": "Algebra"}
    assert loaded.scale == load_scale("percent")
    assert loaded.calibration == cal
    assert loaded.fitted.config == fitted.config
    assert loaded.manifest["training_data"]["fingerprint"] == train.fingerprint()


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path, small_fit):
    train, fitted = small_fit
    path = save_model(tmp_path / "m", fitted, train, scale=None)
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["params"]["config"]["gmf_dim"] = 5
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="do not describe a valid"):
        load_model(path)


def test_format_1_ncf_artifacts_still_load(tmp_path, small_fit):
    """Written as electives wrote NCF artifacts before format 2: the module's state_dict as the weights, the NCF's
    fields at the manifest's top level (kind 'ncf'), format_version 1."""
    train, fitted = small_fit
    manifest = {
        "kind": "ncf",
        "config": fitted.config.to_dict(),
        "n_students": train.n_students,
        "n_courses": train.n_courses,
        "student_ids": list(train.student_ids),
        "course_ids": list(train.course_ids),
        "course_names": {},
        "scale": load_scale("percent").to_toml(),
        "training_data": {"fingerprint": train.fingerprint(), "rows": len(train)},
        "best_epoch": fitted.best_epoch,
        "validation_metric": fitted.val_metric_name,
        "history": [dataclasses.asdict(h) for h in fitted.history],
        "metrics": {"val_rmse": 12.5},
        "calibration": None,
    }
    path = save_artifact(tmp_path / "old", fitted.model.state_dict(), json.loads(json.dumps(manifest)))
    (path / MANIFEST).write_text(json.dumps({**json.loads((path / MANIFEST).read_text()), "format_version": 1}))

    loaded = load_model(path)
    assert loaded.manifest["format_version"] == 1 and loaded.family == fitted.config.model
    assert loaded.fitted.config == fitted.config
    assert (loaded.fitted.best_epoch, loaded.fitted.history) == (fitted.best_epoch, fitted.history)
    students = np.arange(train.n_students)
    np.testing.assert_array_equal(loaded.fitted.score_all(students), fitted.score_all(students))
    np.testing.assert_array_equal(loaded.fitted.student_vectors(), fitted.student_vectors())


def test_a_hand_edited_manifest_is_refused(artifact):
    """The manifest is checksummed too: a changed calibration, scale or id map must not load silently."""
    path, _ = artifact
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["n_students"] = manifest.get("n_students", 0) + 1
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="manifest was modified"):
        load_artifact(path)


def _signer(key: str):
    from electives.data.pseudonyms import Pseudonymiser

    return Pseudonymiser(key.encode()).model_signature


def test_a_signed_artifact_loads_only_under_its_own_key(tmp_path):
    """The HMAC covers the manifest digest (and so the weights' digest): another key, or a forged manifest whose
    checksums were recomputed by someone without the key, is refused; unsigned models only when required."""
    tensors = {"w": torch.ones(2, 2)}
    ours, theirs = _signer("deployment-key-0123456789"), _signer("another-key-0123456789ab")
    path = save_artifact(tmp_path / "signed", tensors, {"config": {}}, signer=ours)
    assert load_artifact(path, signer=ours, require_signature=True).manifest["signature"]
    assert load_artifact(path).tensors["w"].sum() == 4  # no key here: loads, unchecked
    with pytest.raises(ModelError, match="does not match this deployment's key"):
        load_artifact(path, signer=theirs)
    # A forger edits the manifest and recomputes its checksum, but cannot recompute the signature.
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["config"] = {"tampered": True}
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))
    assert read_manifest(path)["config"] == {"tampered": True}  # the checksum alone is satisfied
    with pytest.raises(ModelError, match="field 'signature' does not match"):
        load_artifact(path, signer=ours)
    unsigned = save_artifact(tmp_path / "unsigned", tensors, {"config": {}})
    assert "signature" not in read_manifest(unsigned)
    load_artifact(unsigned, signer=ours)  # not required: accepted
    with pytest.raises(ModelError, match=r"accepts only models signed .* it is not signed"):
        load_artifact(unsigned, signer=ours, require_signature=True)
    with pytest.raises(ModelError, match="no key here to check its signature"):
        load_artifact(save_artifact(tmp_path / "again", tensors, {"config": {}}, signer=ours), require_signature=True)
