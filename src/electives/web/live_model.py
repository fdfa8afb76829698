"""The model a web worker serves, loaded once and swapped for a newer artifact without dropping a request.

:class:`LiveModel` holds one :class:`ServedModel` (the :class:`~electives.serving.recommender.Recommender` plus what the
pages show about it). Every request reads the current one with a single attribute load; at most every
``reload_seconds`` a request also stats the artifact's manifest, and when it changed (``electives train --out``
writes a new directory and renames it into place) a background thread loads the new artifact and swaps the
reference. Requests already running finish on the old model, new ones get the new model, none waits for the load.
A new artifact that fails to load is logged and ignored (the old model keeps serving) until it changes again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from electives.errors import ElectivesError
from electives.models.artifact import MANIFEST, SIGNATURE, Signer, load_model, manifest_family, manifest_params
from electives.web.model_facts import plot_worth_showing

if TYPE_CHECKING:
    from electives.data.catalog import Catalog
    from electives.data.pseudonyms import Pseudonymiser
    from electives.data.storage import Store
    from electives.serving.recommender import Recommender

log = logging.getLogger("electives.web")

_PLOT_SUFFIX = ".png"
_MAX_PLOTS = 24


@dataclass(frozen=True)
class CourseEntry:
    """A course as the grade form and ``GET /api/v1/courses`` offer it."""

    code: str
    name: str
    elective: bool | None
    department: str | None
    key: str = field(repr=False)  # casefolded "code name" for search

    def to_dict(self) -> dict[str, Any]:
        return {"course": self.code, "name": self.name, "elective": self.elective, "department": self.department}


@dataclass(frozen=True)
class ServedModel:
    """One loaded artifact and everything derived from it once (never per request)."""

    recommender: Recommender
    version: str
    info: dict[str, Any]
    courses: tuple[CourseEntry, ...]
    names: dict[str, str]  # course code → name, for every course in ``courses``
    marks: tuple[str, ...]  # grade choices for letter scales; empty for numeric scales
    plots: tuple[Path, ...]
    stamp: tuple[int, int, int] | None
    loaded_at: str

    @property
    def explicit(self) -> bool:
        return self.recommender.explicit

    def search(self, query: str, limit: int, electives_only: bool = False) -> tuple[list[CourseEntry], int]:
        """Courses whose code or name contains every word of ``query`` (case-insensitive); codes starting with
        the query first. Returns (first ``limit`` matches, number of matches)."""
        words = query.casefold().split()
        hits = [c for c in self.courses if (not electives_only or c.elective) and all(w in c.key for w in words)]
        if words:
            first = words[0]
            hits.sort(key=lambda c: (not c.code.casefold().startswith(first), c.code))
        return hits[:limit], len(hits)


class LiveModel:
    """The current :class:`ServedModel` of one worker; see the module docstring."""

    def __init__(
        self,
        model_dir: Path,
        *,
        catalog: Catalog | None,
        store: Store | None,
        pseudonymiser: Pseudonymiser | None,
        report_dir: Path | None = None,
        reload_seconds: float = 5.0,
        threads: int | None = 1,
        signer: Signer | None = None,
        require_signature: bool = False,
    ) -> None:
        self.model_dir = Path(model_dir)
        self._signer, self._require_signature = signer, require_signature
        self._catalog, self._store, self._pseudonymiser = catalog, store, pseudonymiser
        self._report_dir = report_dir
        self._reload_seconds = reload_seconds
        self._threads = threads
        self._lock = threading.Lock()
        self._loading = False
        self._failed_stamp: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self.reloads = 0
        self._current = self._load(self._stamp())  # a broken artifact at start-up is an error, not a warning

    @property
    def current(self) -> ServedModel:
        """The model to serve this request with (may start a background reload; never waits for one)."""
        if self._reload_seconds > 0:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + self._reload_seconds
                self._maybe_reload(background=True)
        return self._current

    def reload(self) -> bool:
        """Load a changed artifact now, in this thread; True when the served model changed."""
        return self._maybe_reload(background=False)

    # ------------------------------------------------------------------ internals
    def _signed(self, manifest: dict[str, Any]) -> bool:
        """Signed with this deployment's key (load_model refused a signature that does not match)."""
        return self._signer is not None and manifest.get(SIGNATURE) is not None

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = (self.model_dir / MANIFEST).stat()
        except OSError:
            return None  # mid-rename or gone: keep serving what we have
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _maybe_reload(self, background: bool) -> bool:
        stamp = self._stamp()
        if stamp is None or stamp == self._current.stamp or stamp == self._failed_stamp:
            return False
        with self._lock:
            if self._loading:
                return False
            self._loading = True
        if background:
            threading.Thread(target=self._swap, args=(stamp,), name="electives-model-reload", daemon=True).start()
            return False
        return self._swap(stamp)

    def _swap(self, stamp: tuple[int, int, int]) -> bool:
        try:
            new = self._load(stamp)
        except (ElectivesError, OSError, ValueError) as exc:
            self._failed_stamp = stamp
            log.error(
                "new model artifact in %s not loaded, still serving %s: %s", self.model_dir, self._current.version, exc
            )
            return False
        finally:
            with self._lock:
                self._loading = False
        old, self._current = self._current, new  # one reference assignment: requests see old or new, never half
        self.reloads += 1
        log.info("model %s replaced by %s", old.version, new.version)
        return True

    def _load(self, stamp: tuple[int, int, int] | None) -> ServedModel:
        from electives.serving.recommender import Recommender

        model = load_model(self.model_dir, signer=self._signer, require_signature=self._require_signature)
        recommender = Recommender(model, self._catalog, self._store, self._pseudonymiser, threads=self._threads)
        manifest = model.manifest
        version = str(manifest.get("weights_sha256", ""))[:12] or "unknown"
        scale = recommender.scale
        marks: tuple[str, ...] = ()
        if recommender.explicit and scale is not None and not scale.numeric:
            marks = tuple(m for m, _ in sorted(scale.marks.items(), key=lambda kv: (-kv[1], kv[0])))
        courses = _course_entries(recommender)
        return ServedModel(
            recommender=recommender,
            version=version,
            info={**_model_info(manifest, recommender, version), "signed": self._signed(manifest)},
            courses=courses,
            names={c.code: c.name for c in courses},
            marks=marks,
            plots=_plots(self.model_dir, self._report_dir),
            stamp=stamp,
            loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )


def _course_entries(rec: Recommender) -> tuple[CourseEntry, ...]:
    codes = dict.fromkeys(rec.course_ids)
    if rec.catalog is not None:
        codes.update(dict.fromkeys(c.code for c in rec.catalog))
    out = []
    for code in sorted(codes):
        course = rec.catalog.get(code) if rec.catalog is not None else None
        name = (course.name if course is not None and course.name else None) or rec.model.course_names.get(code) or code
        out.append(
            CourseEntry(
                code=code,
                name=name,
                elective=course.elective if course is not None else None,
                department=course.department if course is not None else None,
                key=f"{code} {name}".casefold(),
            )
        )
    return tuple(out)


def _model_info(manifest: dict[str, Any], rec: Recommender, version: str) -> dict[str, Any]:
    """What the model page and ``GET /api/v1/model`` show: version, data size, validation metrics."""
    training = manifest.get("training_data") or {}
    metrics = {
        k: v for k, v in (manifest.get("metrics") or {}).items() if isinstance(v, int | float) and math.isfinite(v)
    }
    params = manifest_params(manifest)
    config = params.get("config") or {}
    calibration = manifest.get("calibration") or {}
    privacy = manifest.get("privacy") if isinstance(manifest.get("privacy"), dict) else None
    return {
        "version": version,
        "weights_sha256": manifest.get("weights_sha256"),
        "created_at": manifest.get("created_at"),
        "package_version": manifest.get("package_version"),
        "format_version": manifest.get("format_version"),
        "mode": rec.mode,
        "architecture": config.get("model") or manifest.get("family"),
        # Format 2 names the family; format-1 artifacts are NCF, their kind in config.model.
        "family": served_family(manifest),
        "model_selection": _selection_summary(manifest.get("model_selection")),
        "scale": None if rec.scale is None else rec.scale.name,
        "students": manifest.get("n_students"),
        "courses": manifest.get("n_courses"),
        "training_rows": training.get("rows"),
        "best_epoch": params.get("best_epoch"),
        "validation_metric": params.get("validation_metric"),
        "metrics": metrics,
        "interval_coverage": calibration.get("coverage") if isinstance(calibration, dict) else None,
        # Differentially private training: the spent budget (None for a model trained without DP).
        "privacy": None
        if privacy is None
        else {k: privacy.get(k) for k in ("epsilon", "delta", "target_epsilon", "max_grad_norm", "unit")},
    }


def served_family(manifest: dict[str, Any]) -> str:
    """The family of the model an artifact holds (format 2 names it; format-1 artifacts are NCF)."""
    return manifest_family(manifest)


def _selection_summary(selection: Any) -> dict[str, Any] | None:
    """What the model page shows of the selection: the choice, the metric it was made on (validation RMSE with
    grades, a ranking figure on enrolments) and each candidate's value of it."""
    if not isinstance(selection, dict) or not isinstance(selection.get("candidates"), list):
        return None
    metric = selection.get("metric") if isinstance(selection.get("metric"), str) else "val_rmse"
    rows = [
        {
            "name": str(c.get("name")),
            "family": c.get("family") or c.get("model"),
            "val_rmse": c.get("val_rmse", c.get("value")),
            "value": c.get(metric, c.get("value")),
            "seconds": c.get("seconds"),
            "error": c.get("error"),
            "skipped": c.get("skipped"),
        }
        for c in selection["candidates"]
        if isinstance(c, dict)
    ]
    return {
        "chosen": selection.get("chosen"),
        "validation": selection.get("validation"),
        "metric": metric,
        "candidates": rows,
    }


def _plots(model_dir: Path, report_dir: Path | None) -> tuple[Path, ...]:
    """PNG files in the artifact directory and the report directory (not below them), by name; only those with
    something drawn on them (checked once here, at load: an empty frame is never put on the page)."""
    found: dict[str, Path] = {}
    for folder in (model_dir, report_dir):
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() == _PLOT_SUFFIX and path.is_file() and path.name not in found:
                if plot_worth_showing(path):
                    found[path.name] = path.resolve()
                else:
                    log.info("plot %s left off the model page: empty or not a readable PNG", path.name)
    return tuple(list(found.values())[:_MAX_PLOTS])
