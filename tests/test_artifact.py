import json

import pytest
import torch

from electives.artifact import FORMAT_VERSION, MANIFEST, WEIGHTS, load_artifact, read_manifest, save_artifact
from electives.errors import ModelError


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
