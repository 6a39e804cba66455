"""`course export`: nbgrader's gradebook as the CSV Canvas and Moodle import, on a small roster."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from course_tools.lms_export import ExportError, ensure_alembic, export, read_roster, read_scores, to_csv


@pytest.fixture
def gradebook(tmp_path) -> str:
    """Two assignments; ann submitted both (4/5 with a manual point, 3/3), ben one (0/5), cyd none."""
    from nbgrader.api import Gradebook

    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    ensure_alembic()
    with Gradebook(url) as gb:
        for name, points in (("01_word2vec", 5), ("04_masking", 3)):
            gb.add_assignment(name)
            gb.add_notebook(name, name)
            gb.add_grade_cell("test_a", name, name, max_score=points, cell_type="code")
        for student in ("ann", "ben", "cyd"):
            gb.add_student(student)
        gb.add_submission("01_word2vec", "ann")
        gb.add_submission("04_masking", "ann")
        gb.add_submission("01_word2vec", "ben")
        gb.find_grade("test_a", "01_word2vec", "01_word2vec", "ann").auto_score = 3
        gb.find_grade("test_a", "01_word2vec", "01_word2vec", "ann").manual_score = 4  # the manual grade wins
        gb.find_grade("test_a", "04_masking", "04_masking", "ann").auto_score = 3
        gb.find_grade("test_a", "01_word2vec", "01_word2vec", "ben").auto_score = 0
        gb.db.commit()
    return url


ROSTER = """nbgrader_id,name,canvas_id,sis_user_id,sis_login_id,section,first_name,last_name,idnumber,email
ann,"Lee, Ann",101,S-1,ann@uni,A,Ann,Lee,1001,ann@uni.example
ben,"Ng, Ben",102,S-2,ben@uni,A,Ben,Ng,1002,ben@uni.example
cyd,"Ox, Cyd",103,S-3,cyd@uni,B,Cyd,Ox,1003,cyd@uni.example
"""


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_canvas_csv(gradebook, tmp_path):
    """Canvas's columns, its Points Possible row, one row per roster student, blank where nothing was submitted."""
    (tmp_path / "roster.csv").write_text(ROSTER)
    text = export(gradebook, "canvas", tmp_path / "roster.csv", tmp_path / "canvas.csv",
                  headings={"04_masking": "Masking (2204)"})
    assert (tmp_path / "canvas.csv").read_bytes().decode() == text
    assert _rows(text) == [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "01_word2vec", "Masking (2204)"],
        ["    Points Possible", "", "", "", "", "5", "3"],
        ["Lee, Ann", "101", "S-1", "ann@uni", "A", "4", "3"],
        ["Ng, Ben", "102", "S-2", "ben@uni", "A", "0", ""],
        ["Ox, Cyd", "103", "S-3", "cyd@uni", "B", "", ""],
    ]


def test_moodle_csv(gradebook, tmp_path):
    """Moodle's user columns (map Email address to useremail) and a column per assignment."""
    (tmp_path / "roster.csv").write_text(ROSTER)
    text = export(gradebook, "moodle", tmp_path / "roster.csv", tmp_path / "moodle.csv", ["04_masking"])
    assert _rows(text) == [
        ["First name", "Last name", "ID number", "Email address", "04_masking"],
        ["Ann", "Lee", "1001", "ann@uni.example", "3"],
        ["Ben", "Ng", "1002", "ben@uni.example", ""],
        ["Cyd", "Ox", "1003", "cyd@uni.example", ""],
    ]


def test_a_student_missing_from_the_roster_is_an_error(gradebook, tmp_path):
    """Nobody is dropped silently: a gradebook student absent from the roster stops the export, named."""
    (tmp_path / "roster.csv").write_text("\n".join(ROSTER.splitlines()[:2]) + "\n")   # ann only
    with pytest.raises(ExportError, match="not in the roster: ben, cyd"):
        to_csv("canvas", read_scores(gradebook), read_roster(tmp_path / "roster.csv"))
    (tmp_path / "bad.csv").write_text("id,email\nann,a@b\n")
    with pytest.raises(ExportError, match="nbgrader_id"):
        read_roster(tmp_path / "bad.csv")
    with pytest.raises(ExportError, match="no assignment"):
        read_scores(gradebook, ["99_nothing"])


def test_course_export_command(gradebook, tmp_path, monkeypatch):
    """`course export` reads the repository's gradebook (nbgrader_config.py's db_url) and exits 1 on a bad roster."""
    from course_tools import cli, gradebook as gb_module

    monkeypatch.setattr(gb_module, "db_url", lambda coursedir, root: gradebook)
    (tmp_path / "roster.csv").write_text(ROSTER)
    out = tmp_path / "out.csv"
    assert cli.main(["export", "--format", "moodle", "--roster", str(tmp_path / "roster.csv"), "--out", str(out)]) == 0
    assert _rows(out.read_text())[1] == ["Ann", "Lee", "1001", "ann@uni.example", "4", "3"]
    (tmp_path / "short.csv").write_text("nbgrader_id\nann\n")
    assert cli.main(["export", "--format", "canvas", "--roster", str(tmp_path / "short.csv"), "--out", str(out)]) == 1
