"""`course grade --gradebook`: the sandboxed grader's scores in nbgrader's gradebook, export and feedback.

Grades the small fixture assignment for four students laid out as `nbgrader collect` leaves them
(timestamp.txt, submission_secret.txt): full marks, one wrong answer, a held one (review) and an
invalid notebook; then checks the gradebook cell by cell against grades.csv, `nbgrader export`,
and that `nbgrader release_feedback` names each page by its own student's secret.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_tools.build import generate_release
from course_tools.cli import main
from course_tools.pairing import read_text_notebook
from course_tools.sandbox import bwrap_path

pytestmark = pytest.mark.slow  # a grading run of the fixture assignment

ROOT = Path(__file__).resolve().parents[1]
FIX = "99_fixture"
ANSWERS = {
    "add": "def add(a, b):\n    return a + b",
    "norm": "def norm(x):\n    return math.sqrt(float((x * x).sum()))",
    "mean": "def mean(values):\n    return sum(values) / len(values)",
}
HELD = "def add(a, b):\n    import inspect\n    inspect.currentframe().f_back\n    return a + b"


def _answered(course: Path, answers: dict[str, str]) -> dict:
    nb = json.loads((course / "notebooks" / FIX / f"{FIX}.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["id"] in answers:
            cell["source"] = answers[cell["id"]]
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    source = (ROOT / "tests" / "fixtures" / f"{FIX}.py").read_text()
    (course / "solutions" / FIX).mkdir(parents=True)
    nbformat.write(read_text_notebook(source), course / "solutions" / FIX / f"{FIX}.ipynb")
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    generate_release(course, FIX, course / "notebooks")
    submitted = course / "grading" / "submitted"
    notebooks = {"ann": _answered(course, ANSWERS), "ben": _answered(course, {**ANSWERS, "mean": "def mean(values):\n    return 0"}),
                 "cyd": _answered(course, {**ANSWERS, "add": HELD}), "dee": None}
    for student, nb in notebooks.items():
        folder = submitted / student / FIX
        folder.mkdir(parents=True)
        (folder / f"{FIX}.ipynb").write_text(json.dumps(nb) if nb else "{not json")
        (folder / "timestamp.txt").write_text("2026-12-01 10:00:00.000000 UTC")
        (folder / "submission_secret.txt").write_text(secrets.token_hex(64))
    here = os.getcwd()
    os.chdir(course)
    try:
        args = ["grade", str(submitted), "--assignment", FIX, "--jobs", "2", "--cell-timeout", "8", "--gradebook"]
        status = main(args if bwrap_path() else [*args, "--no-sandbox"])
    finally:
        os.chdir(here)
    return course, status


def _table(course: Path) -> dict[str, dict]:
    with (course / "grading" / FIX / "grades.csv").open() as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}


def test_every_cell_score_is_in_the_gradebook(course):
    """Per student: the gradebook's total is grades.csv's score; failing cells score less than full; review marked."""
    from nbgrader.api import Gradebook

    course, status = course
    assert status == 1, "a held and an invalid submission need review"
    table = _table(course)
    assert table["ann"]["status"] == "graded" and float(table["ann"]["score"]) == float(table["ann"]["max_score"])
    assert table["ben"]["status"] == "graded" and 0 < float(table["ben"]["score"]) < float(table["ben"]["max_score"])
    assert table["cyd"]["status"] == "review", table["cyd"]
    assert table["dee"]["status"] == "invalid", table["dee"]
    with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}") as gb:
        assert sorted(s.id for s in gb.students) == ["ann", "ben", "cyd", "dee"]
        for student, row in table.items():
            submission = gb.find_submission(FIX, student)
            assert submission.timestamp is not None
            assert submission.score == pytest.approx(float(row["score"])), (student, row)
            grades = {g.name: g for nb in submission.notebooks for g in nb.grades}
            failed = set(row["failed_tests"].split())
            if row["status"] == "graded":
                assert {n for n, g in grades.items() if g.auto_score < g.max_score} == failed, student
                assert not any(g.needs_manual_grade for g in grades.values()), student
            else:
                assert any(g.needs_manual_grade for g in grades.values()), f"{student} is not listed for manual grading"
        assert gb.find_submission(FIX, "ann").needs_manual_grade is False
        assert gb.find_submission(FIX, "cyd").needs_manual_grade is True
        assert all(g.auto_score is None for nb in gb.find_submission(FIX, "dee").notebooks for g in nb.grades)


def test_nbgrader_export_reads_them(course):
    """`nbgrader export` (its own command) writes one line per student with the gradebook's score."""
    course, _ = course
    result = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", "grades.csv"], cwd=course,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with (course / "grades.csv").open() as handle:
        exported = {row["student_id"]: row for row in csv.DictReader(handle)}
    table = _table(course)
    assert sorted(exported) == sorted(table)
    for student, row in table.items():
        assert float(exported[student]["raw_score"]) == pytest.approx(float(row["score"])), student


def test_release_feedback_keys_each_page_by_its_students_secret(course):
    """`nbgrader release_feedback` finds every graded student's page and names it by that student's hash."""
    from nbgrader.utils import notebook_hash

    course, _ = course
    (course / "exchange").mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "nbgrader", "release_feedback", FIX], cwd=course,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    released = course / "exchange" / "pytorch-nlp-course" / "feedback"
    for student in ("ann", "ben", "cyd"):
        secret = (course / "grading" / "submitted" / student / FIX / "submission_secret.txt").read_text()
        page = released / f"{notebook_hash(secret=secret, notebook_id=FIX)}.html"
        assert page.read_bytes() == (course / "grading" / FIX / "feedback" / student / FIX / f"{FIX}.html").read_bytes()
    assert len(list(released.glob("*.html"))) == 3, "one page per student with a feedback page"
