"""`electives recommend`: text and JSON output, --student via the database, --grades files and their errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from test_recommender import NEXT_TERM, World, build_world, grades_of

from electives.serving.recommender import Recommender

ERR = "electives recommend: error: "


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("cli-world"))


@pytest.fixture(scope="module")
def chosen(world: World) -> str:
    """A student with at least three electives open next term (many have taken or cannot take the rest)."""
    rec = Recommender(world.model, world.catalog)
    return next(
        str(raw)
        for raw in world.university.student_ids
        if rec.recommend_for_grades(grades_of(world, str(raw)), target_term=NEXT_TERM).eligible >= 3
    )


@pytest.fixture
def grades_file(world: World, chosen: str, tmp_path: Path) -> Path:
    path = tmp_path / "mine.csv"
    lines = [f"{c},{m}" for c, m in grades_of(world, chosen)]
    path.write_text("course,grade\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _no_default_db(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELECTIVES_DB", raising=False)


def test_grades_file_json(cli, world: World, grades_file: Path) -> None:
    code, out, err = cli(
        "recommend", world.model_dir, "--grades", grades_file, "-k", "3", "--catalog", world.catalog_path,
        "--term", NEXT_TERM, "--json", "--why-not", "CS101",
    )  # fmt: skip
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["basis"] == "folded-in" and data["mode"] == "explicit" and data["scale"] == "percent"
    assert data["k"] == 3 and data["target_term"] == NEXT_TERM and data["coverage"] == 0.8
    assert len(data["recommendations"]) == 3
    card = data["recommendations"][0]
    assert set(card) == {
        "rank", "course", "name", "description", "score", "points", "letter", "interval", "explanation",
        "similar_courses", "cohort", "likely_full",
    }  # fmt: skip
    assert card["rank"] == 1 and card["interval"][0] <= card["points"] <= card["interval"][1]
    assert card["cohort"] is None  # no database: no graders to compare with
    assert card["likely_full"] is None  # nor a seat plan
    assert data["why_not"]["course"] == "CS101" and data["why_not"]["reason"] in {"already-passed", "not-an-elective"}


def test_grades_file_text(cli, world: World, chosen: str, grades_file: Path) -> None:
    code, out, err = cli(
        "recommend", world.model_dir, "--grades", grades_file, "-k", "2", "--catalog", world.catalog_path,
        "--term", NEXT_TERM, "--why-not", "XX999",
    )  # fmt: skip
    assert (code, err) == (0, "")
    lines = out.splitlines()
    used = len(grades_of(world, chosen))
    assert lines[0] == f"Top 2 electives (from {used} grades; term {NEXT_TERM}; grades on scale percent)"
    assert lines[2].startswith(" 1. ") and lines[3].startswith("    Predicted ") and ", 80% interval " in lines[3]
    assert any(line.startswith(" 2. ") for line in lines)
    assert lines[-1] == "Why not XX999? It is not a course in the catalogue or the model."
    assert "eligible course" in lines[-2]


def test_student_from_the_database(cli, world: World, secret_key: str) -> None:
    raw = str(world.university.student_ids[5])
    code, out, err = cli("recommend", world.model_dir, "--student", raw, "--db", world.db_url, "--json", "-k", "4")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["basis"] == "trained" and len(data["recommendations"]) <= 4
    assert raw not in out  # the raw id is never echoed
    # The database comes from ELECTIVES_DB too.
    code, out_env, _ = _with_env(cli, "ELECTIVES_DB", world.db_url)(
        "recommend", world.model_dir, "--student", raw, "--json", "-k", "4"
    )
    assert code == 0 and json.loads(out_env) == data


def _with_env(cli, name: str, value: str):
    def run(*args: str):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(name, value)
            return cli(*args)

    return run


def test_student_needs_the_database(cli, world: World, secret_key: str) -> None:
    code, out, err = cli("recommend", world.model_dir, "--student", "20190001")
    assert (code, out) == (2, "")
    assert err == (
        ERR + "recommending by student id needs the grade database (--db URL or ELECTIVES_DB): the model stores "
        "no grades, so it cannot tell which courses the student has passed; enter the grades instead "
        "(--grades FILE)\n"
    )


def test_unknown_student(cli, world: World, secret_key: str) -> None:
    code, out, err = cli("recommend", world.model_dir, "--student", "S-404", "--db", world.db_url)
    assert (code, out) == (2, "")
    assert err == (
        ERR + "no grades on record for this student id in the database; check the id (and the secret key), or "
        "enter the grades instead (--grades FILE)\n"
    )


@pytest.mark.parametrize("k", ["0", "51", "-1"])
def test_bad_k(cli, world: World, grades_file: Path, k: str) -> None:
    code, out, err = cli("recommend", world.model_dir, "--grades", grades_file, "-k", k)
    assert (code, out, err) == (2, "", f"{ERR}-k {k}: expected a number of recommendations from 1 to 50\n")


def test_bad_model_dir(cli, tmp_path: Path, grades_file: Path) -> None:
    missing = tmp_path / "no-model"
    code, out, err = cli("recommend", missing, "--grades", grades_file)
    assert (code, out) == (2, "")
    assert (
        err
        == f"{ERR}{missing}: no model artifact here (expected a directory with manifest.json and model.safetensors)\n"
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json", encoding="utf-8")
    code, _, err = cli("recommend", broken, "--grades", grades_file)
    assert code == 2 and err.startswith(f"{ERR}{broken / 'manifest.json'}: not a valid manifest (")


def test_bad_grades_files(cli, world: World, tmp_path: Path) -> None:
    def run(text: str) -> str:
        path = tmp_path / "g.csv"
        path.write_text(text, encoding="utf-8")
        code, out, err = cli("recommend", world.model_dir, "--grades", path, "--catalog", world.catalog_path)
        assert (code, out) == (2, "")
        return err.replace(str(path), "FILE")

    assert run("CS101,88\nMA101\n") == f"{ERR}FILE, line 2: expected course,grade, got 'MA101'\n"
    assert run("CS101,88\n\nXX999,70\n") == (
        f"{ERR}FILE, line 3: unknown course 'XX999': not in the model's courses or the catalogue\n"
    )
    assert (
        run("course\tgrade\nCS101\tA-\n")
        == f"{ERR}FILE, line 2: course 'CS101': 'A-' is not a mark of scale 'percent'\n"
    )
    assert run("CS101,88,extra\n") == f"{ERR}FILE, line 1: expected course,grade, got 'CS101,88,extra'\n"
    assert run("\n\n") == f"{ERR}FILE: no grades (expected lines of course,grade)\n"
    assert run("course,grade\n") == f"{ERR}FILE: no grades after the header (expected lines of course,grade)\n"
    code, _, err = cli("recommend", world.model_dir, "--grades", tmp_path / "absent.csv")
    assert (code, err) == (2, f"{ERR}{tmp_path / 'absent.csv'}: no such grades file\n")


def test_grades_from_stdin_tsv_without_header(cli, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("CS101\t91\nMA101\t64.5\n\nCS102\tW\n"))
    code, out, err = cli("recommend", world.model_dir, "--grades", "-", "--json", "-k", "1")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["grades_used"] == 2 and len(data["recommendations"]) == 1
    assert data["excluded"]["CS102"]["reason"] == "already-taken"
    monkeypatch.setattr("sys.stdin", io.StringIO("CS101\t91\nBAD\n"))
    code, _, err = cli("recommend", world.model_dir, "--grades", "-")
    assert (code, err) == (2, f"{ERR}<stdin>, line 2: expected course<TAB>grade, got 'BAD'\n")


def test_student_and_grades_are_exclusive(cli, world: World, grades_file: Path) -> None:
    code, _, err = cli("recommend", world.model_dir, "--student", "x", "--grades", grades_file)
    assert code == 2 and "not allowed with argument" in err
    code, _, err = cli("recommend", world.model_dir)
    assert code == 2 and "one of the arguments --student --grades is required" in err


def test_grades_file_with_a_course_twice(cli, world: World, tmp_path: Path) -> None:
    path = tmp_path / "twice.csv"
    args = ("recommend", world.model_dir, "--grades", path, "--catalog", world.catalog_path, "-k", "2")
    path.write_text("course,grade\nCS101,88\nMA101,70\ncs101,75\n", encoding="utf-8")
    code, out, err = cli(*args)
    assert (code, out) == (2, "")
    assert err == (
        f"{ERR}{path}, lines 2 and 4: course 'cs101' is entered twice; a retake is accepted only after a failed mark "
        "(enter the failed attempt first, then the later one)\n"
    )
    # A failed attempt, then the retake: the later attempt counts, and the answer says so.
    path.write_text("course,grade\nCS101,45\nMA101,70\nCS101,75\n", encoding="utf-8")
    code, out, err = cli(*args, "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["retaken_courses"] == ["CS101"] and data["grades_used"] == 2
    assert "CS101: entered after a failed attempt, so the later attempt counts" in data["note"]
