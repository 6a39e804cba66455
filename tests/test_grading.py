"""Grading end to end: full marks, zero, and partial credit, row by row in grades.csv."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import nbformat
import pytest

from course_tools.grading import (
    GradeRow,
    Settings,
    find_submissions,
    grade,
    summary,
    with_answers,
)

ASSIGNMENT = "04_masking"   # the quickest real assignment (about 12 s), with equations


def _solved_release(root: Path) -> dict:
    """The student release with every solution cell filled in from solutions/."""
    read = lambda folder: nbformat.read(root / folder / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    return json.loads(json.dumps(with_answers(read("notebooks"), read("solutions"))))


def _write(folder: Path, student: str, nb: dict) -> Path:
    path = folder / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(nb))
    return path


@pytest.fixture(scope="module")
def graded(root, tmp_path_factory):
    submissions = tmp_path_factory.mktemp("submitted")
    out = tmp_path_factory.mktemp("graded")
    solved = _solved_release(root)
    untouched = json.loads((root / "notebooks" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    wrong = json.loads(json.dumps(solved))
    for cell in wrong["cells"]:  # a classic mistake: the masked mean divides by the padded length
        if cell["id"] == "masked_reductions":
            assert "weights.sum(1).clamp(min=1)" in cell["source"]
            cell["source"] = cell["source"].replace("weights.sum(1).clamp(min=1)", "x.shape[1]")
    paths = [_write(submissions, s, nb) for s, nb in
             (("alice", solved), ("bob", untouched), ("carol", wrong))]
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    # an explicit notebook limit: the default (timing the solution first) is tested on the small
    # fixture assignment (test_grading_hardened.py); here it would be a fourth run of 04
    rows = grade(root, submissions, ASSIGNMENT, out=out, jobs=2, settings=Settings(notebook_timeout=1800))
    return rows, out, paths, before


@pytest.mark.slow  # a grading run of 04_masking
def test_grades_csv_row_by_row(graded):
    rows, out, _, _ = graded
    with (out / "grades.csv").open() as handle:
        table = {r["student"]: r for r in csv.DictReader(handle)}
    assert sorted(table) == ["alice", "bob", "carol"]
    total = float(table["alice"]["max_score"])
    assert total >= 15
    assert float(table["alice"]["score"]) == total and table["alice"]["failed_tests"] == ""
    assert float(table["bob"]["score"]) == 0 and len(table["bob"]["failed_tests"].split()) >= 5
    assert 0 < float(table["carol"]["score"]) < total
    assert table["carol"]["failed_tests"] == "test_masked_reductions", table["carol"]
    assert all(r["status"] == "graded" and r["assignment"] == ASSIGNMENT for r in table.values())
    assert [r.student for r in rows] == ["alice", "bob", "carol"]


@pytest.mark.slow  # a grading run of 04_masking
def test_feedback_has_no_hidden_tests(graded, root):
    _, out, _, _ = graded
    solution = json.loads((root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    hidden = []
    for cell in solution["cells"]:
        text = "".join(cell["source"])
        if "### BEGIN HIDDEN TESTS" in text:
            body = text.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
            hidden += [line.strip() for line in body.splitlines() if len(line.strip()) > 30]
    assert hidden
    for student in ("alice", "bob", "carol"):
        html = (out / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        assert "BEGIN HIDDEN TESTS" not in html
        leaked = [line for line in hidden if line in html]
        assert not leaked, f"hidden tests shown to {student}: {leaked[:2]}"
        # the page typesets offline and names every test, with its points
        assert "cdnjs" not in html and "../../_mathjax/MathJax.js" in html
        tests = [c["metadata"]["nbgrader"] for c in solution["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
        for test in tests:
            assert f"<code>{test['grade_id']}</code>" in html, f"{student}'s feedback does not name {test['grade_id']}"
        assert "Test cell" not in html and "is not shown)" not in html
    assert (out / "feedback" / "_mathjax" / "MathJax.js").is_file(), "MathJax is copied beside the feedback"
    carol = (out / "feedback" / "carol" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "<b>failed</b>: <code>AssertionError: " in carol, "a failing test shows its message in the table"


@pytest.mark.slow  # a grading run of 04_masking
def test_originals_untouched(graded):
    _, _, paths, before = graded
    for path in paths:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before[path], f"{path} was modified"


def test_summary_and_discovery(tmp_path):
    (tmp_path / "dan" / ASSIGNMENT).mkdir(parents=True)
    (tmp_path / "eve" / "other").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    found = find_submissions(tmp_path, ASSIGNMENT)
    assert list(found) == ["dan", "eve"], "every student folder gets a row, even without the assignment"
    assert found["eve"] == tmp_path / "eve" / ASSIGNMENT
    text = summary([GradeRow("dan", ASSIGNMENT, 3, 25, "graded", "2 test(s) fail")])
    assert "dan" in text and "3/25" in text
    assert GradeRow("x", "a", 1.5, 2).as_csv()["score"] == "1.5"
    assert summary([]) == "no submissions found"


def test_hide_test_tracebacks_keeps_only_the_message():
    import nbformat

    from course_tools.feedback import HideTestTracebacks

    cell = nbformat.v4.new_code_cell("secret_check()")
    cell.metadata["nbgrader"] = {"grade": True}
    cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="expected 3, got 2",
                                           traceback=["line 7: assert secret_check() == 3"])]
    plain = nbformat.v4.new_code_cell("x")
    plain.outputs = [nbformat.v4.new_output("error", ename="E", evalue="v", traceback=["student frame"])]
    nb = nbformat.v4.new_notebook(cells=[cell, plain])
    HideTestTracebacks()(nb, {})  # as nbconvert calls it: only runs when enabled
    assert nb.cells[0].outputs[0].traceback[0] == "AssertionError: expected 3, got 2"
    assert "secret_check" not in "".join(nb.cells[0].outputs[0].traceback)
    assert nb.cells[1].outputs[0].traceback == ["student frame"], "student cells keep their traceback"


def test_the_feedback_page_names_each_test_and_typesets_offline():
    """The course's feedback template on a notebook as nbgrader hands it over (scores set by GetGrades)."""
    import nbformat

    from course_tools.feedback import render_feedback_page

    passing = nbformat.v4.new_code_cell('"""weights: each row sums to one."""\nassert True')
    passing.metadata["nbgrader"] = {"grade": True, "grade_id": "test_weights", "points": 2.0, "score": 2.0}
    failing = nbformat.v4.new_code_cell('"""scale: divides by sqrt(d_k)."""\nassert False')
    failing.metadata["nbgrader"] = {"grade": True, "grade_id": "test_scale", "points": 3.0, "score": 0.0}
    failing.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="expected 0.5, got 1.0",
                                              traceback=["assert hidden_check(x) == 0.5"])]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("$\\sqrt{d_k}$"), passing, failing])
    html = render_feedback_page(nb, "03", score=2, max_score=5)
    assert "cdnjs" not in html and "_mathjax/MathJax.js" in html
    assert "<code>test_weights</code>" in html and "each row sums to one." in html
    assert "<b>failed</b>: <code>AssertionError: expected 0.5, got 1.0</code>" in html
    assert "hidden_check" not in html, "a failing test's traceback is reduced to its message"
    assert "Test cell" not in html
