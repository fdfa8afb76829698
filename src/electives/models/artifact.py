"""Model artifacts: a directory with ``model.safetensors`` and ``manifest.json`` — safe to load, never pickle.

Writing is atomic (a temporary sibling directory, then a rename), so a reader never sees half an artifact.
Loading checks the format version, the sha256 of the manifest and of the weights (and, given the deployment's key,
the manifest's HMAC signature) before anything is deserialised, and fails with a clear :class:`ModelError` on a
missing, truncated, tampered, foreign-signed or newer-format artifact.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from electives import __version__
from electives.data.interactions import Interactions
from electives.data.scales import GradeScale
from electives.errors import ElectivesError, ModelError
from electives.models.calibration import ConformalInterval
from electives.models.interface import Model

# 2: any model family (kind 'model', 'family', 'params'); 1: NCF only (kind 'ncf'), still read.
FORMAT_VERSION = 2
WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"
SIGNATURE = "signature"  # manifest field: HMAC of manifest_sha256 under the deployment's key (optional)
# Signs a manifest digest (`Pseudonymiser.model_signature`): the models layer never sees the key itself.
Signer = Callable[[str], str]


@dataclass(frozen=True)
class Artifact:
    """Loaded weights and the manifest (a JSON-able dict: config, id maps, scale, metrics ...)."""

    tensors: dict[str, torch.Tensor]
    manifest: dict[str, Any]
    path: Path


def save_artifact(
    path: Path | str,
    tensors: Mapping[str, torch.Tensor],
    manifest: Mapping[str, Any],
    *,
    signer: Signer | None = None,
) -> Path:
    """Write ``tensors`` and ``manifest`` to the directory ``path`` atomically, replacing an existing artifact;
    with a ``signer`` the manifest carries a signature of its digest."""
    path = Path(path)
    blob = save_safetensors({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()})
    full = {k: v for k, v in manifest.items() if k != SIGNATURE}
    full.update(
        format_version=FORMAT_VERSION,
        package_version=__version__,
        created_at=full.get("created_at") or datetime.now(UTC).isoformat(timespec="seconds"),
        weights_sha256=hashlib.sha256(blob).hexdigest(),
    )
    try:
        full["manifest_sha256"] = manifest_digest(full)
        if signer is not None:
            full[SIGNATURE] = signer(full["manifest_sha256"])
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
    # Format 2 covers the manifest too (calibration, scale, id maps): a hand edit must not load silently.
    if version >= 2 and manifest.get("manifest_sha256") != manifest_digest(manifest):
        raise ModelError(
            f"{path / MANIFEST}: checksum mismatch (field 'manifest_sha256'); the manifest was modified after the "
            "model was saved — train again or restore the original file"
        )
    return manifest


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own ``manifest_sha256`` and ``signature`` fields."""
    body = {k: v for k, v in manifest.items() if k not in ("manifest_sha256", SIGNATURE)}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode("utf-8")).hexdigest()


def check_signature(manifest: Mapping[str, Any], path: Path, *, signer: Signer | None, required: bool) -> bool:
    """Whether the manifest is signed with ``signer``'s key. A signature that does not match is refused whenever
    there is a key to check it with; an unsigned (or uncheckable) artifact is refused only when ``required``."""
    given = manifest.get(SIGNATURE)
    if given is not None and signer is not None:
        digest = str(manifest.get("manifest_sha256", ""))
        if not (isinstance(given, str) and hmac.compare_digest(given.encode(), signer(digest).encode())):
            raise ModelError(
                f"{path / MANIFEST}: field '{SIGNATURE}' does not match this deployment's key — the model was "
                "written with another key or modified; train it again with this deployment's key"
            )
        return True
    if required:
        why = "it is not signed" if given is None else "there is no key here to check its signature with"
        raise ModelError(
            f"{path}: this server accepts only models signed with its deployment key, and {why}; train the model "
            "where ELECTIVES_SECRET_KEY (or the key file) is this deployment's key"
        )
    return False


def load_artifact(path: Path | str, *, signer: Signer | None = None, require_signature: bool = False) -> Artifact:
    """Load and verify an artifact written by :func:`save_artifact` (its signature too, see
    :func:`check_signature`)."""
    path = Path(path)
    manifest = read_manifest(path)
    check_signature(manifest, path, signer=signer, required=require_signature)
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


# ---------------------------------------------------------------------------------------------------- trained models


@dataclass(frozen=True)
class TrainedModel:
    """A trained model of any family (:class:`~electives.models.interface.Model`) with everything needed to serve
    it: id maps, course names, the grade scale and the calibration of its prediction intervals."""

    fitted: Model
    student_ids: tuple[str, ...]  # pseudonyms, never raw ids
    course_ids: tuple[str, ...]
    course_names: dict[str, str]
    scale: GradeScale | None  # None for enrolment-only (implicit) data
    calibration: ConformalInterval | None
    manifest: dict[str, Any]
    path: Path | None = None

    @property
    def mode(self) -> str:
        return self.fitted.mode

    @property
    def family(self) -> str:
        return self.fitted.family

    def student_index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.student_ids)}

    def course_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.course_ids)}


def save_model(
    path: Path | str,
    fitted: Model,
    train: Interactions,
    *,
    scale: GradeScale | None,
    course_names: Mapping[str, str] | None = None,
    calibration: ConformalInterval | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    signer: Signer | None = None,
) -> Path:
    """Save a fitted model of any family trained on ``train`` (whose id maps give its indices their meaning),
    signed when a ``signer`` (the deployment's key) is given."""
    if (fitted.n_students, fitted.n_courses) != (train.n_students, train.n_courses):
        raise ModelError(
            f"model has {fitted.n_students}×{fitted.n_courses} students × courses but the training data "
            f"{train.n_students}×{train.n_courses}"
        )
    arrays, params = fitted.state()
    names = dict(course_names or {})
    manifest: dict[str, Any] = {
        "kind": "model",
        "family": fitted.family,
        "mode": fitted.mode,
        "params": _jsonable(dict(params)),
        "n_students": train.n_students,
        "n_courses": train.n_courses,
        "student_ids": list(train.student_ids),
        "course_ids": list(train.course_ids),
        "course_names": {c: names[c] for c in train.course_ids if names.get(c)},
        "scale": scale.to_toml() if scale is not None else None,
        "training_data": {"fingerprint": train.fingerprint(), "rows": len(train)},
        "metrics": _jsonable(dict(metrics or {})),
        "calibration": calibration.to_dict() if calibration is not None else None,
    }
    manifest.update(_jsonable(dict(extra or {})))
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    return save_artifact(path, tensors, manifest, signer=signer)


def load_model(
    path: Path | str, device: str = "cpu", *, signer: Signer | None = None, require_signature: bool = False
) -> TrainedModel:
    """Load a model saved by :func:`save_model` (or a format-1 NCF artifact), rebuilding it from its family's
    state. ``device`` is where a torch family keeps its weights; ``signer``/``require_signature``: see
    :func:`check_signature`."""
    from electives.models.families import family_class

    art = load_artifact(path, signer=signer, require_signature=require_signature)
    m = art.manifest
    family, params = _family_and_params(m, art.path)
    try:
        student_ids, course_ids = tuple(m["student_ids"]), tuple(m["course_ids"])
        if (len(student_ids), len(course_ids)) != (m["n_students"], m["n_courses"]):
            raise ModelError(f"{art.path / MANIFEST}: id maps do not match n_students/n_courses")
        arrays = {k: v.numpy() for k, v in art.tensors.items()}
        fitted = family_class(family).from_state(arrays, {**params, "device": device})
        if (fitted.n_students, fitted.n_courses) != (len(student_ids), len(course_ids)):
            raise ModelError(f"{art.path}: the weights are for another number of students or courses")
        fitted.train_fingerprint = str(m.get("training_data", {}).get("fingerprint", ""))
        scale = GradeScale.from_toml(m["scale"], source=f"{art.path} scale") if m.get("scale") else None
        calibration = ConformalInterval.from_dict(m["calibration"]) if m.get("calibration") else None
    except ModelError as exc:
        if str(exc).startswith(str(art.path)):
            raise
        raise ModelError(f"{art.path}: {exc}") from None
    except (KeyError, TypeError, ValueError, RuntimeError, ElectivesError) as exc:
        raise ModelError(f"{art.path}: the manifest and weights do not describe a valid model ({exc})") from exc
    return TrainedModel(
        fitted=fitted,
        student_ids=student_ids,
        course_ids=course_ids,
        course_names=dict(m.get("course_names", {})),
        scale=scale,
        calibration=calibration,
        manifest=m,
        path=art.path,
    )


def manifest_family(m: Mapping[str, Any]) -> str:
    """The family a manifest names: ``family`` (format 2), else ``config.model`` (format 1 held NCF models only)."""
    family = m.get("family")
    if isinstance(family, str) and family:
        return family
    config = m.get("config") if isinstance(m.get("config"), Mapping) else {}
    return str(config.get("model") or "neumf")


def manifest_params(m: Mapping[str, Any]) -> dict[str, Any]:
    """The family's parameters: ``params`` (format 2); format-1 artifacts kept the NCF's at the top level."""
    if m.get("kind") == "ncf":
        return {k: m[k] for k in ("config", "best_epoch", "validation_metric", "history") if k in m}
    return dict(m["params"]) if isinstance(m.get("params"), Mapping) else {}


def _family_and_params(m: Mapping[str, Any], path: Path) -> tuple[str, dict[str, Any]]:
    """The family and its parameters, checked: a manifest that names neither is refused by name."""
    kind = m.get("kind")
    if kind == "ncf":
        if not isinstance(m.get("config"), dict):
            raise ModelError(f"{path / MANIFEST}: field 'config' is missing")
    elif kind != "model":
        raise ModelError(f"{path / MANIFEST}: 'kind' is {kind!r}, expected 'model'")
    elif not isinstance(m.get("family"), str) or not isinstance(m.get("params"), dict):
        raise ModelError(f"{path / MANIFEST}: fields 'family' (a name) and 'params' (an object) are required")
    return manifest_family(m), manifest_params(m)


def _jsonable(value: Any) -> Any:
    """Tuples → lists, numpy scalars → Python numbers, non-finite floats → None (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
