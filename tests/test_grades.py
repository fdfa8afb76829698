"""Grade scales: the built-in ones, TOML definitions and their errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from electives.data.scales import BUILTIN_SCALES, GradeScale, MarkError, load_scale
from electives.errors import ScaleError


def toml_error(text: str) -> str:
    """tomllib's own wording (it may change between Python versions)."""
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return str(exc)
    raise AssertionError("valid TOML")


@pytest.fixture(params=BUILTIN_SCALES)
def builtin(request: pytest.FixtureRequest) -> GradeScale:
    return load_scale(request.param)


def test_every_builtin_scale_loads_and_round_trips(builtin: GradeScale) -> None:
    assert builtin.high > builtin.low
    assert {"W", "P", "I", "S", "AU", "NC"} <= builtin.no_grade
    assert GradeScale.from_toml(builtin.to_toml()) == builtin
    assert builtin.normalise(builtin.low) == 0.0 and builtin.normalise(builtin.high) == 1.0
    assert builtin.to_points(1.5) == builtin.high and builtin.to_points(-0.5) == builtin.low  # clipped
    for raw in ("W", " w ", "AU", "nc"):
        assert builtin.parse(raw).points is None


@pytest.mark.parametrize(
    ("name", "raw", "points"),
    [
        ("percent", "85", 85.0),
        ("percent", " 85.5 ", 85.5),
        ("percent", "85,5", 85.5),  # decimal comma
        ("percent", "0", 0.0),
        ("percent", "100", 100.0),
        ("percent", "1e2", 100.0),
        ("gpa4", "3.333", 3.333),
        ("gpa4", "4.000", 4.0),
        ("gpa4", "0", 0.0),
        ("letter-us", "A+", 4.0),
        ("letter-us", "A", 4.0),
        ("letter-us", "a-", 3.7),
        ("letter-us", "B+", 3.3),
        ("letter-us", "D-", 0.7),
        ("letter-us", "F", 0.0),
        ("letter-plus", "A+", 4.0),
        ("letter-plus", "A", 3.7),
        ("letter-plus", "d", 1.5),
    ],
)
def test_parse(name: str, raw: str, points: float) -> None:
    mark = load_scale(name).parse(raw)
    assert mark.points == pytest.approx(points)
    assert mark.raw == raw.strip()


@pytest.mark.parametrize(
    ("name", "raw", "reason", "message"),
    [
        ("percent", "", "empty", "empty grade"),
        ("percent", "   ", "empty", "empty grade"),
        ("percent", "101", "out-of-range", "'101' is outside the scale's range [0, 100]"),
        ("percent", "-1", "out-of-range", "'-1' is outside the scale's range [0, 100]"),
        ("percent", "A", "unknown-mark", "'A' is not a mark of scale 'percent'"),
        ("gpa4", "4.5", "out-of-range", "'4.5' is outside the scale's range [0, 4]"),
        ("letter-us", "3.0", "unknown-mark", "'3.0' is a number but scale 'letter-us' takes marks only"),
        ("letter-us", "Q", "unknown-mark", "'Q' is not a mark of scale 'letter-us'"),
        ("letter-plus", "A*", "unknown-mark", "'A*' is not a mark of scale 'letter-plus'"),
    ],
)
def test_parse_errors(name: str, raw: str, reason: str, message: str) -> None:
    with pytest.raises(MarkError) as err:
        load_scale(name).parse(raw)
    assert err.value.reason == reason
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("name", "points", "letter"),
    [
        ("percent", 97, "A+"),
        ("percent", 96.9, "A"),
        ("percent", 90, "A-"),
        ("percent", 59, "F"),
        ("gpa4", 3.9, "A"),
        ("gpa4", 3.66, "A-"),
        ("gpa4", 0.2, "F"),
        ("letter-us", 4.0, "A"),  # A+ and A share 4.0: the plainer mark is shown
        ("letter-us", 3.5, "A-"),  # halfway between B+ and A-: ties go up
        ("letter-us", 0.2, "F"),
        ("letter-plus", 4.0, "A+"),
        ("letter-plus", 3.75, "A"),
    ],
)
def test_letter(name: str, points: float, letter: str) -> None:
    assert load_scale(name).letter(points) == letter


@pytest.mark.parametrize(
    ("name", "step", "pass_points"),
    [("percent", 3.0, 60.0), ("gpa4", 0.35, 0.5), ("letter-us", 0.3, 0.7), ("letter-plus", 0.2, 1.0)],
)
def test_letter_step_and_pass(name: str, step: float, pass_points: float) -> None:
    scale = load_scale(name)
    assert scale.letter_step == pytest.approx(step)
    assert scale.pass_points == pass_points
    assert scale.passed(pass_points) and not scale.passed(pass_points - 0.01)


def test_normalise_uses_the_scale_bounds_not_the_data() -> None:
    percent = load_scale("percent")
    assert percent.normalise(50) == 0.5
    assert percent.to_points(0.75) == 75.0
    assert percent.span == 100.0
    assert load_scale("gpa4").normalise(3.0) == 0.75


CUSTOM = """
name = "ten"
description = "Marks 1 to 10"
low = 1
high = 10
numeric = true
pass = 5.5
no_grade = ["vrij"]

[letters]
"excellent" = 9
"good" = 7
"fail" = 1
"""


def test_toml_scale_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "ten.toml"
    path.write_text(CUSTOM)
    scale = load_scale(path)
    assert (scale.name, scale.low, scale.high, scale.pass_points) == ("ten", 1.0, 10.0, 5.5)
    assert scale.parse("7,5").points == 7.5
    assert scale.parse("VRIJ").points is None
    assert scale.letter(8) == "good"
    assert scale.normalise(5.5) == 0.5
    assert GradeScale.from_toml(scale.to_toml()) == scale


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'name = "x"\nlow 0\n',
            "t.toml: not valid TOML: " + toml_error('name = "x"\nlow 0\n'),
        ),
        ('name = "x"\nlow = 0\nhigh = 4\nfoo = 1\n', "t.toml: unknown key(s) ['foo']"),
        ("low = 0\nhigh = 4\n", "t.toml: missing required key 'name'"),
        ('name = "x"\nhigh = 4\n', "t.toml: missing required key 'low'"),
        ('name = "x"\nlow = 4\nhigh = 4\nnumeric = true\n', "scale 'x': 'high' (4.0) must be greater than 'low' (4.0)"),
        ('name = "x"\nlow = 0\nhigh = 4\n', "scale 'x': a non-numeric scale needs a [marks] table"),
        ('name = "x"\nlow = 0\nhigh = 4\n[marks]\nA = 5\n', "scale 'x': mark 'A' = 5.0 is outside [0.0, 4.0]"),
        (
            'name = "x"\nlow = 0\nhigh = 4\nno_grade = ["A"]\n[marks]\nA = 4\n',
            "scale 'x': ['A'] listed both as marks and as no_grade",
        ),
        ('name = "x"\nlow = 0\nhigh = 4\nnumeric = true\npass = 5\n', "scale 'x': 'pass' = 5.0 is outside [0.0, 4.0]"),
        ('name = "x"\nlow = "abc"\nhigh = 4\nnumeric = true\n', "t.toml: could not convert string to float: 'abc'"),
        (
            'name = "x"\nlow = 0\nhigh = "inf"\nnumeric = true\n',
            "scale 'x': 'high' (inf) must be greater than 'low' (0.0)",
        ),
    ],
)
def test_toml_errors(text: str, message: str) -> None:
    with pytest.raises(ScaleError) as err:
        GradeScale.from_toml(text, source="t.toml")
    assert str(err.value) == message


def test_a_lower_case_no_grade_clashing_with_a_mark_is_refused() -> None:
    with pytest.raises(ScaleError, match="listed both as marks and as no_grade"):
        GradeScale.from_toml('name = "x"\nlow = 0\nhigh = 4\nno_grade = ["a"]\n[marks]\nA = 4\n')


def test_load_scale_errors(tmp_path: Path) -> None:
    with pytest.raises(ScaleError) as err:
        load_scale("percentage")
    assert (
        str(err.value)
        == "unknown scale 'percentage': expected one of percent, gpa4, letter-us, letter-plus or a .toml file"
    )
    with pytest.raises(ScaleError) as err:
        load_scale(tmp_path / "missing.toml")
    assert str(err.value) == f"scale file '{tmp_path}/missing.toml' does not exist"
    with pytest.raises(ScaleError, match="cannot be read"):
        load_scale(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ScaleError, match="cannot be read"):
        load_scale(bad)
