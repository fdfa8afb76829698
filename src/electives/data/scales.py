"""Grade scales: what a registrar's marks mean in points, and how points map to [0, 1] and back.

A scale is defined by a small TOML document (the built-in ones live in ``electives/data/builtin_scales/``)::

    name = "my-university"
    low = 0            # the scale's own bounds: normalisation never uses the data's min/max
    high = 4
    numeric = false    # true: any number in [low, high] is a grade (percent totals, 4-point GPAs)
    no_grade = ["W", "P", "I", "TR"]   # marks that carry no grade (withdrawn, pass, incomplete, transfer...)
    pass = 1.0         # optional: the lowest passing grade (default: the lowest mark or letter above `low`)

    [marks]            # marks and their points (letter scales)
    "A" = 4.0
    "B+" = 3.3

    [letters]          # numeric scales only, for display: the lowest points that earn each letter
    "A" = 93
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from electives.errors import ScaleError

BUILTIN_SCALES = ("percent", "gpa4", "letter-us", "letter-plus")

# "85", "85.5", "-3", "1e2" and a decimal comma "85,5" (common in European exports).
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Mark:
    """One parsed mark: ``points`` is None when the mark carries no grade (W, P, I, ...)."""

    raw: str
    points: float | None


class MarkError(ValueError):
    """A mark that is not a grade on this scale; ``reason`` is a short key used by cleaning reports."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class GradeScale:
    """An institution's grade scale. Build with :func:`load_scale` or :meth:`from_toml`."""

    name: str
    low: float
    high: float
    numeric: bool
    marks: Mapping[str, float] = field(default_factory=dict)
    letters: Mapping[str, float] = field(default_factory=dict)
    no_grade: frozenset[str] = frozenset()
    description: str = ""
    pass_points: float | None = None  # lowest passing grade; None: the lowest mark or letter above `low`

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.high <= self.low:
            raise ScaleError(f"scale {self.name!r}: 'high' ({self.high}) must be greater than 'low' ({self.low})")
        if not self.numeric and not self.marks:
            raise ScaleError(f"scale {self.name!r}: a non-numeric scale needs a [marks] table")
        for mark, points in self.marks.items():
            if not self.low <= points <= self.high:
                raise ScaleError(f"scale {self.name!r}: mark {mark!r} = {points} is outside [{self.low}, {self.high}]")
        clash = {m.strip().upper() for m in self.marks} & {m.strip().upper() for m in self.no_grade}
        if clash:
            raise ScaleError(f"scale {self.name!r}: {sorted(clash)} listed both as marks and as no_grade")
        # Case-insensitive lookups; frozen dataclass, so set through object.__setattr__.
        object.__setattr__(
            self, "marks", MappingProxyType({k.strip().upper(): float(v) for k, v in self.marks.items()})
        )
        object.__setattr__(self, "letters", MappingProxyType(dict(self.letters)))
        object.__setattr__(self, "no_grade", frozenset(m.strip().upper() for m in self.no_grade))
        if self.pass_points is None:
            above = [p for p in (*self.marks.values(), *self.letters.values()) if p > self.low]
            object.__setattr__(self, "pass_points", min(above) if above else self.low)
        elif not self.low <= self.pass_points <= self.high:
            raise ScaleError(f"scale {self.name!r}: 'pass' = {self.pass_points} is outside [{self.low}, {self.high}]")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_toml(cls, text: str, source: str = "<toml>") -> GradeScale:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScaleError(f"{source}: not valid TOML: {exc}") from exc
        unknown = set(doc) - {"name", "description", "low", "high", "numeric", "no_grade", "marks", "letters", "pass"}
        if unknown:
            raise ScaleError(f"{source}: unknown key(s) {sorted(unknown)}")
        for key in ("name", "low", "high"):
            if key not in doc:
                raise ScaleError(f"{source}: missing required key {key!r}")
        try:
            return cls(
                name=str(doc["name"]),
                low=float(doc["low"]),
                high=float(doc["high"]),
                numeric=bool(doc.get("numeric", False)),
                marks={str(k): float(v) for k, v in doc.get("marks", {}).items()},
                letters={str(k): float(v) for k, v in doc.get("letters", {}).items()},
                no_grade=frozenset(str(m) for m in doc.get("no_grade", [])),
                description=str(doc.get("description", "")),
                pass_points=float(doc["pass"]) if "pass" in doc else None,
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ScaleError):
                raise
            raise ScaleError(f"{source}: {exc}") from exc

    def to_toml(self) -> str:
        """The scale as TOML, so it can be stored beside the data and in model artifacts."""
        lines = [
            f"name = {_toml_str(self.name)}",
            f"description = {_toml_str(self.description)}",
            f"low = {self.low!r}",
            f"high = {self.high!r}",
            f"numeric = {'true' if self.numeric else 'false'}",
            f"pass = {self.pass_points!r}",
            "no_grade = [" + ", ".join(_toml_str(m) for m in sorted(self.no_grade)) + "]",
        ]
        for table, values in (("marks", self.marks), ("letters", self.letters)):
            if values:
                lines.append(f"\n[{table}]")
                lines.extend(f"{_toml_str(k)} = {v!r}" for k, v in values.items())
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ parsing
    def parse(self, raw: str) -> Mark:
        """Read one raw mark. Raises :class:`MarkError` (reason ``empty``, ``unknown-mark`` or
        ``out-of-range``) when it is not a grade and not a known no-grade mark."""
        text = raw.strip()
        if not text:
            raise MarkError("empty", "empty grade")
        key = text.upper()
        if key in self.marks:
            return Mark(text, self.marks[key])
        if key in self.no_grade:
            return Mark(text, None)
        if _NUMBER.match(text):
            value = float(text.replace(",", "."))
            if not self.numeric:
                raise MarkError("unknown-mark", f"{text!r} is a number but scale {self.name!r} takes marks only")
            if not self.low <= value <= self.high:
                raise MarkError(
                    "out-of-range",
                    f"{text!r} is outside the scale's range [{_fmt(self.low)}, {_fmt(self.high)}]",
                )
            return Mark(text, value)
        raise MarkError("unknown-mark", f"{text!r} is not a mark of scale {self.name!r}")

    # ------------------------------------------------------------------ conversions
    def normalise(self, points: float) -> float:
        """Points → [0, 1] by the scale's own bounds."""
        return (points - self.low) / (self.high - self.low)

    def to_points(self, normalised: float) -> float:
        """[0, 1] → points, clipped to the scale's bounds."""
        x = min(1.0, max(0.0, float(normalised)))
        return self.low + x * (self.high - self.low)

    def passed(self, points: float) -> bool:
        """Whether a grade of ``points`` passes (prerequisites are met by passing grades)."""
        return points >= self.pass_points - 1e-9

    @property
    def span(self) -> float:
        """Width of the scale in points (multiply normalised errors by this to get points)."""
        return self.high - self.low

    def letter(self, points: float) -> str:
        """The nearest letter for display: the best band reached (numeric scales with [letters]), else the mark
        with the closest points (ties go to the higher mark), else the number itself."""
        if self.letters:
            reached = [(lo, name) for name, lo in self.letters.items() if points >= lo - 1e-9]
            if reached:
                return max(reached)[1]
            return min(self.letters.items(), key=lambda kv: kv[1])[0]
        if self.marks:
            display = _display_marks(self)
            return min(display, key=lambda kv: (abs(kv[1] - points), -kv[1]))[0]
        return _fmt(points)

    @property
    def letter_step(self) -> float:
        """Typical distance in points between neighbouring letters (for 'within one letter' metrics)."""
        values = sorted(set(self.letters.values() if self.letters else self.marks.values()))
        gaps = [b - a for a, b in itertools.pairwise(values) if b - a > 0]
        if not gaps:
            return self.span / 10
        gaps.sort()
        return gaps[len(gaps) // 2]


def _display_marks(scale: GradeScale) -> list[tuple[str, float]]:
    """Marks as written for display; when two marks share points (A+ and A on a US scale) keep the plainer one."""
    by_points: dict[float, str] = {}
    for mark, points in scale.marks.items():
        current = by_points.get(points)
        if current is None or len(mark) < len(current):
            by_points[points] = mark
    return [(m, p) for p, m in by_points.items()]


def _fmt(x: float) -> str:
    return f"{x:g}"


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def load_scale(spec: str | Path) -> GradeScale:
    """A built-in scale by name (``percent``, ``gpa4``, ``letter-us``, ``letter-plus``) or a TOML file path."""
    name = str(spec)
    if name in BUILTIN_SCALES:
        text = resources.files("electives.data").joinpath("builtin_scales", f"{name}.toml").read_text(encoding="utf-8")
        return GradeScale.from_toml(text, source=f"built-in scale {name!r}")
    path = Path(name)
    if path.suffix.lower() != ".toml" and not path.exists():
        raise ScaleError(f"unknown scale {name!r}: expected one of {', '.join(BUILTIN_SCALES)} or a .toml file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScaleError(f"scale file {name!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScaleError(f"scale file {name!r} cannot be read: {exc}") from exc
    return GradeScale.from_toml(text, source=f"scale file {name!r}")
