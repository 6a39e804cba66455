"""notebooks/ is a faithful, leak-free release of solutions/, and each notebook has the anatomy."""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest

from course_tools.build import list_assignments

MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = list_assignments(ROOT)


def _cells(path: Path) -> list[dict]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        cell["text"] = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    return cells


def _nbgrader(cell: dict) -> dict:
    return cell["metadata"].get("nbgrader", {})


def _region(text: str, begin: str, end: str) -> list[str]:
    inside, lines = False, []
    for line in text.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            lines.append(line.strip())
    return lines


def _outside(text: str) -> list[str]:
    """Stripped lines of a cell outside its solution and hidden-test regions."""
    inside, lines = False, []
    for line in text.splitlines():
        if "### BEGIN" in line:
            inside = True
        elif "### END" in line:
            inside = False
        elif not inside:
            lines.append(line.strip())
    return lines


def test_there_are_assignments():
    assert "03_attention" in ASSIGNMENTS


@pytest.mark.slow
def test_release_is_up_to_date_byte_for_byte(build_check):
    """`course build --check` (run once per session, tests/conftest.py) finds nothing stale."""
    status, out, err = build_check
    assert status == 0 and "notebooks/ is up to date with solutions/" in out, f"run `course build`:\n{out}{err}"


def test_solutions_are_in_step_with_their_text_twins(root, monkeypatch):
    """The check CI runs: `course sync --check` (every pair is also tested end to end in test_pairing.py)."""
    from course_tools.cli import main

    monkeypatch.chdir(root)
    assert main(["sync", "--check"]) == 0, "run `course sync`: the side edited last wins, the other is backed up"


def _leaks(solution: list[dict], release: list[dict]) -> list[str]:
    """Solution and hidden-test lines of ``solution`` that ``release`` shows, however short.

    A line the solution notebook also shows outside those regions (given code, such as a
    ``return x`` of a helper) is no secret; the release may show it."""
    secret, public = set(), set()
    for cell in solution:
        secret.update(_region(cell["text"], "BEGIN SOLUTION", "END SOLUTION"))
        secret.update(_region(cell["text"], "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"))
        public.update(_outside(cell["text"]))
    public_text = "\n".join(public)
    shown = {line.strip() for cell in release for line in cell["text"].splitlines()}
    release_text = "\n".join(cell["text"] for cell in release)
    # the whole line, whatever its length (`return x * 2`, `pass`, a comment); a long one inside another line too
    return [line for line in sorted(secret - public - {""}) if line in shown
            or len(line) > 25 and line in release_text and line not in public_text]


def test_the_leak_check_sees_short_lines_and_returns_but_not_given_code():
    def cell(text: str) -> dict:
        return {"text": text}

    solution = [cell("def helper(x):\n    return x"),
                cell("def f(x):\n    ### BEGIN SOLUTION\n    y = x\n    return x * 2\n    return x\n"
                     "    ### END SOLUTION"),
                cell('"""f doubles"""\nassert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(2) == 4\n'
                     "### END HIDDEN TESTS")]
    clean = [cell("def helper(x):\n    return x"), cell("def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"),
             cell('"""f doubles"""\nassert f(1) == 2')]
    assert _leaks(solution, clean) == []
    leaky = [*clean[:2], cell("def f(x):\n    return x * 2"), cell('"""f doubles"""\nassert f(1) == 2\nassert f(2) == 4'),
             cell("We compute `y = x` first.")]
    assert _leaks(solution, leaky) == ["assert f(2) == 4", "return x * 2"], "a line inside a longer one is too short"
    solution[1]["text"] = solution[1]["text"].replace("y = x", "scores = torch.softmax(logits, dim=-1)")
    leaky[-1]["text"] = "We compute `scores = torch.softmax(logits, dim=-1)` first."
    assert _leaks(solution, leaky) == ["assert f(2) == 4", "return x * 2", "scores = torch.softmax(logits, dim=-1)"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_no_solution_or_hidden_test_leaks(root, assignment):
    path = root / "notebooks" / assignment / f"{assignment}.ipynb"
    text = path.read_text(encoding="utf-8")
    for marker in MARKERS:
        assert marker not in text, f"{marker!r} in the student notebook"
    leaked = _leaks(_cells(root / "solutions" / assignment / f"{assignment}.ipynb"), _cells(path))
    assert not leaked, f"solution or hidden-test lines in the student notebook: {leaked}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_release_lists_the_tests_with_hidden_parts(root, assignment):
    """``course validate`` tells a student which points a run cannot check in full: the release must list
    exactly the graded cells whose solution holds hidden tests."""
    import nbformat

    solution = nbformat.read(root / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    release = nbformat.read(root / "notebooks" / assignment / f"{assignment}.ipynb", as_version=4)
    expected = [c.metadata["nbgrader"]["grade_id"] for c in solution.cells
                if c.metadata.get("nbgrader", {}).get("grade") and "### BEGIN HIDDEN TESTS" in c.source]
    assert expected, "every notebook has hidden tests"
    assert release.metadata.get("course", {}).get("hidden_tests") == expected


def _course_utils_names(root: Path) -> set[str]:
    names = set()
    for module in (root / "course_utils").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
    return names


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_graded_functions_are_not_in_course_utils(root, assignment):
    graded = set()
    for cell in _cells(root / "solutions" / assignment / f"{assignment}.ipynb"):
        if _nbgrader(cell).get("solution"):
            for node in ast.parse(cell["text"]).body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    graded.add(node.name)
    assert graded, "no graded definitions found"
    overlap = graded & _course_utils_names(root)
    assert not overlap, f"course_utils defines what students must write: {sorted(overlap)}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_notebook_anatomy(root, assignment):
    cells = _cells(root / "solutions" / assignment / f"{assignment}.ipynb")
    for cell in cells:
        assert "slide_type" in cell["metadata"].get("slideshow", {}), f"cell {cell['id']} has no slide metadata"
    first = cells[0]["text"]
    for part in ("Learning objectives", "Prerequisites", "Estimated time"):
        assert part in first, f"the title cell has no {part!r}"
    text = "\n".join(c["text"] for c in cells)
    assert "## Summary" in text and re.search(r"arXiv:\d{4}\.\d{4,5}", text), "summary and further reading with arXiv ids"
    assert "seed_everything(0)" in text and "get_device()" in text
    ids = [c["id"] for c in cells]
    assert len(ids) == len(set(ids)), "cell ids must be unique"
    graded = [c for c in cells if _nbgrader(c).get("grade")]
    assert len(graded) >= 5 and sum(_nbgrader(c)["points"] for c in graded) >= 15
    for cell in graded:
        meta = _nbgrader(cell)
        assert meta["points"] > 0 and meta["grade_id"] == cell["id"] and meta["locked"]
        body = ast.parse(cell["text"]).body
        assert isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), \
            f"{cell['id']} must open with a docstring saying what it checks"
        assert "BEGIN HIDDEN TESTS" in cell["text"], f"{cell['id']} has no hidden tests"
        visible = cell["text"].split("### BEGIN HIDDEN TESTS")[0]
        assert "assert" in visible, f"{cell['id']} has no visible assertion"
    # every solution cell is followed by a graded test before the next solution cell
    pending = None
    for cell in cells:
        if _nbgrader(cell).get("solution"):
            assert pending is None, f"{pending} has no graded test before the next exercise"
            pending = cell["id"]
        elif _nbgrader(cell).get("grade"):
            pending = None
    assert pending is None, f"{pending} has no graded test"
    # the rhythm: prompt -> solution -> "try it" (an ungraded code cell that calls the student's
    # function and shows what it does) -> visible test -> hidden tests
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code" and _nbgrader(cell).get("solution"):
            between = []
            for later in cells[i + 1:]:
                if _nbgrader(later).get("grade"):
                    break
                between.append(later)
            assert any(c["cell_type"] == "code" and not _nbgrader(c) and c["text"].strip() for c in between), \
                f"{cell['id']} has no 'try it' cell between it and its test"


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_graded_cell_fails_on_the_untouched_release(root, tmp_path, assignment):
    from course_tools.validate import validate

    folder = tmp_path / assignment
    shutil.copytree(root / "notebooks" / assignment, folder)
    results = validate(folder / f"{assignment}.ipynb", timeout=120)
    assert results, "no graded cells"
    passing = [r.grade_id for r in results if r.passed]
    assert not passing, f"these tests pass without any student code: {passing}"
