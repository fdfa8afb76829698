"""Model artifacts: a directory with ``model.safetensors`` and ``manifest.json`` — safe to load, never pickle.

Writing is atomic (a temporary sibling directory, then a rename), so a reader never sees half an artifact.
Loading checks the format version and the sha256 of the weights before anything is deserialised, and fails with a
clear :class:`ModelError` on a missing, truncated, tampered or newer-format artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from electives import __version__
from electives.errors import ModelError

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    """Loaded weights and the manifest (a JSON-able dict: config, id maps, scale, metrics ...)."""

    tensors: dict[str, torch.Tensor]
    manifest: dict[str, Any]
    path: Path


def save_artifact(path: Path | str, tensors: Mapping[str, torch.Tensor], manifest: Mapping[str, Any]) -> Path:
    """Write ``tensors`` and ``manifest`` to the directory ``path`` atomically, replacing an existing artifact."""
    path = Path(path)
    blob = save_safetensors({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()})
    full = dict(manifest)
    full.update(
        format_version=FORMAT_VERSION,
        package_version=__version__,
        created_at=full.get("created_at") or datetime.now(UTC).isoformat(timespec="seconds"),
        weights_sha256=hashlib.sha256(blob).hexdigest(),
    )
    try:
        text = json.dumps(full, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"manifest is not plain JSON: {exc}") from exc

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        (tmp / WEIGHTS).write_bytes(blob)
        (tmp / MANIFEST).write_text(text + "\n", encoding="utf-8")
        for name in (WEIGHTS, MANIFEST):
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        if path.exists():
            # Two renames: the old artifact stays whole until the new one is in place.
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_manifest(path: Path | str) -> dict[str, Any]:
    """The manifest alone, validated (format version), without reading the weights."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: no model artifact here (expected a directory with {MANIFEST} and {WEIGHTS})")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: {MANIFEST} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path / MANIFEST}: not a valid manifest ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ModelError(f"{path / MANIFEST}: expected a JSON object")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise ModelError(f"{path / MANIFEST}: field 'format_version' is missing or not an integer")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"{path}: artifact format {version} is newer than this electives {__version__} reads "
            f"(format {FORMAT_VERSION}); upgrade electives"
        )
    if version < 1:
        raise ModelError(f"{path / MANIFEST}: 'format_version' {version} is not a valid version")
    return manifest


def load_artifact(path: Path | str) -> Artifact:
    """Load and verify an artifact written by :func:`save_artifact`."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        blob = (path / WEIGHTS).read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: {WEIGHTS} is missing") from None
    expected = manifest.get("weights_sha256")
    actual = hashlib.sha256(blob).hexdigest()
    if expected != actual:
        raise ModelError(
            f"{path / WEIGHTS}: checksum mismatch (manifest says {expected}, file is {actual}); "
            "the weights are truncated or were modified"
        )
    try:
        tensors = load_safetensors(blob)
    except (SafetensorError, ValueError) as exc:
        raise ModelError(f"{path / WEIGHTS}: not a valid safetensors file ({exc})") from exc
    return Artifact(tensors=tensors, manifest=manifest, path=path)
