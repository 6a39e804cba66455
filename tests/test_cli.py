"""The `course` command: exit codes and messages."""

from __future__ import annotations

import nbformat
import pytest

from course_tools.cli import main, parser
from course_tools.validate import graded_cells, report, results


def _graded(source: str, grade_id: str, points: float = 1) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True,
                                 "points": points, "grade_id": grade_id, "schema_version": 3}
    return cell


def test_parser_knows_every_command():
    for command in (["build"], ["validate", "x.ipynb"], ["grade", "subs"], ["doctor"]):
        assert parser().parse_args(command).command == command[0]


def test_doctor(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "nbgrader" in out and "ok      wordsim353" in out


def test_build_check_and_unknown_assignment(capsys, monkeypatch, root):
    monkeypatch.chdir(root / "notebooks")  # found from a subfolder too
    assert main(["build", "--check"]) == 0
    assert main(["build", "99_nothing"]) == 2
    assert "no such assignment" in capsys.readouterr().err


def test_validate_reports_pass_and_fail(tmp_path, capsys):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 2"), _graded('"""x is 2"""\nassert x == 2', "good", 2),
                _graded('"""x is 3"""\nassert x == 3, "expected 3"', "bad", 1)]
    path = tmp_path / "student.ipynb"
    nbformat.write(nb, path)
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "PASS  good  2/2" in out and "FAIL  bad" in out and "expected 3" in out and "score 2/3" in out
    assert nbformat.read(path, as_version=4).cells[1].outputs == [], "validate must not write the notebook"


def test_validate_and_grade_missing_paths(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "none.ipynb")]) == 2
    assert main(["grade", str(tmp_path / "none")]) == 2
    assert "no submissions folder" in capsys.readouterr().err


def test_results_and_report_on_unexecuted_cells():
    nb = nbformat.v4.new_notebook()
    nb.cells = [_graded("assert True", "t1")]
    assert graded_cells(nb)[0].metadata.nbgrader.grade_id == "t1"
    items = results(nb)
    assert not items[0].passed and items[0].error == "cell did not run"
    assert "score 0/1" in report(items)
    assert report([]) == "no graded test cells found"


@pytest.mark.parametrize("argv", [[], ["nonsense"]])
def test_bad_arguments_exit_nonzero(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_build_ignores_jupyter_checkpoints(tmp_path):
    """Opening a notebook in JupyterLab writes .ipynb_checkpoints/: not a stale release."""
    from course_tools.build import _files

    (tmp_path / "a.ipynb").write_text("{}")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "a-checkpoint.ipynb").write_text("{}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("x")
    assert sorted(_files(tmp_path)) == ["a.ipynb", "data/x.txt"]
