"""The `course` command: exit codes and messages."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
import torch

from course_tools.cli import main
from course_tools.validate import graded_cells, report, results


def _graded(source: str, grade_id: str, points: float = 1) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True,
                                 "points": points, "grade_id": grade_id, "schema_version": 3}
    return cell


def test_the_course_script_runs_the_commands(root):
    """The installed `course` script: real output and exit codes, from a subfolder of the course."""
    course = [str(Path(sys.executable).parent / "course")]
    env = {**os.environ, "COURSE_DEVICE": "cpu"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(course + list(args), cwd=root / "notebooks", env=env, capture_output=True, text=True,
                              timeout=120, check=False)

    doctor = run("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"torch   {torch.__version__}" in doctor.stdout.splitlines() and "device  cpu" in doctor.stdout.splitlines()
    unknown = run("build", "99_nothing")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "course build: no such assignment in solutions/: 99_nothing" in unknown.stderr and "03_attention" in unknown.stderr


def test_doctor(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert f"torch   {torch.__version__}" in lines and "device  cpu" in lines, out
    assert f"{'nbgrader':<15} {metadata.version('nbgrader')}" in lines and "COURSE_DEVICE=cpu" in out
    assert "  ok      wordsim353" in lines, out


def test_doctor_fails_naming_a_missing_data_set(capsys, monkeypatch):
    import course_utils.data

    monkeypatch.setattr(course_utils.data, "available_datasets", lambda: {"wordsim353": True, "polarity": False})
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "  ok      wordsim353" in out and "  MISSING polarity" in out


def test_build_names_unknown_assignments(capsys, monkeypatch, root):
    monkeypatch.chdir(root / "notebooks")  # found from a subfolder too
    assert main(["build", "99_nothing", "03_attention"]) == 2
    err = capsys.readouterr().err
    assert "no such assignment in solutions/: 99_nothing;" in err and "'03_attention'" in err


@pytest.mark.slow
def test_build_check_from_a_subfolder(build_check):
    """`course build --check` from notebooks/ (run once per session, tests/conftest.py)."""
    status, out, err = build_check
    assert (status, err) == (0, ""), out + err
    assert out.strip() == "notebooks/ is up to date with solutions/"


@pytest.mark.slow
def test_build_writes_a_release_and_check_names_stale_files(tmp_path, capsys, monkeypatch, root):
    """On a one-assignment course: --check names the missing release (exit 1), build writes it, --check is 0."""
    course = tmp_path / "course"
    nb = nbformat.v4.new_notebook()
    answer = nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")
    answer.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "grade_id": "f",
                                   "schema_version": 3}
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · Tiny"), answer, _graded('"""f is 1"""\nassert f() == 1', "t")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (course / "solutions" / "01_tiny").mkdir(parents=True)
    nbformat.write(nb, course / "solutions" / "01_tiny" / "01_tiny.ipynb")
    (course / "nbgrader_config.py").write_text((root / "nbgrader_config.py").read_text())
    (course / "notebooks" / "00_gone").mkdir(parents=True)
    monkeypatch.chdir(course)
    assert main(["build", "--check"]) == 1
    out = capsys.readouterr().out
    assert "stale student notebooks" in out and "notebooks/01_tiny/01_tiny.ipynb" in out
    assert "notebooks/00_gone/ (no solutions/00_gone)" in out
    assert not (course / "notebooks" / "01_tiny").exists() and (course / "notebooks" / "00_gone").exists(), \
        "--check writes nothing"
    assert main(["build"]) == 0
    assert "wrote notebooks/01_tiny/01_tiny.ipynb" in capsys.readouterr().out
    released = (course / "notebooks" / "01_tiny" / "01_tiny.ipynb").read_text()
    assert "return 1" not in released and "raise NotImplementedError()" in released
    assert not (course / "notebooks" / "00_gone").exists()
    assert main(["build", "--check"]) == 0


@pytest.mark.slow  # starts a kernel
def test_validate_reports_pass_and_fail(tmp_path, capsys, monkeypatch):
    from course_tools.validate import CellProgress

    monkeypatch.setattr(CellProgress, "SLOW", 0.0)  # every cell is "slow": each gets its progress line
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 2"), _graded('"""x is 2"""\nassert x == 2', "good", 2),
                _graded('"""x is 3"""\nassert x == 3, "expected 3"', "bad", 1)]
    path = tmp_path / "student.ipynb"
    nbformat.write(nb, path)
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "PASS  good  2/2" in out and "FAIL  bad" in out and "expected 3" in out and "score 2/3" in out
    assert "cell 1 of 3 took" in out and "cell 3 of 3 took" in out, out
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
def test_bad_arguments_exit_nonzero(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    usage = capsys.readouterr().err
    offered = set(usage.split("{", 1)[1].split("}", 1)[0].split(",")) if usage.startswith("usage: course ") else set()
    assert {"build", "validate", "grade", "slides", "site", "lab", "doctor"} <= offered, usage


def test_build_ignores_jupyter_checkpoints(tmp_path):
    """Opening a notebook in JupyterLab writes .ipynb_checkpoints/: not a stale release."""
    from course_tools.build import _files

    (tmp_path / "a.ipynb").write_text("{}")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "a-checkpoint.ipynb").write_text("{}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("x")
    assert sorted(_files(tmp_path)) == ["a.ipynb", "data/x.txt"]


@pytest.mark.slow  # an nbgrader run
def test_build_shows_a_progress_bar_on_a_terminal(root):
    """`course build --check` takes seconds per notebook: on a terminal it shows a bar (none when piped)."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    course = Path(sys.executable).parent / "course"
    done = subprocess.Popen([str(course), "build", "--check", "04_masking"], cwd=root,
                            stdout=subprocess.PIPE, stderr=secondary)
    os.close(secondary)
    seen = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(primary, 4096)
            except OSError:       # the command closed its terminal
                break
            if not chunk:
                break
            seen += chunk
        elif done.poll() is not None:
            break
    out, _ = done.communicate(timeout=120)
    assert b"checking releases" in seen and b"04_masking" in seen, seen[:500]
    assert b"checking releases" not in out, "no bar where the output is not a terminal"


def test_validate_says_how_many_points_a_run_here_checked_in_full():
    """A pass here is not full marks when a test also holds hidden tests: the report says how many
    points were checked in full and names the others (a solution, which runs its hidden tests, does not)."""
    import nbformat

    from course_tools.validate import checked_here, report, results

    def graded(grade_id, points, source="assert True"):
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": points,
                                     "grade_id": grade_id, "schema_version": 3}
        cell.execution_count = 1
        return cell

    nb = nbformat.v4.new_notebook(cells=[graded("test_a", 2), graded("test_b", 3), graded("test_c", 1)])
    nb.metadata["course"] = {"hidden_tests": ["test_b", "test_c"]}
    items = results(nb)
    assert all(r.passed for r in items) and [r.hidden for r in items] == [False, True, True]
    assert "2 of 6 points checked here in full; the other 4 (test_b, test_c)" in report(items)
    nb.cells[1].source += "\n### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS"  # the solution itself
    assert "1 (test_c)" in checked_here(results(nb))
    nb.metadata["course"] = {"hidden_tests": []}
    assert checked_here(results(nb)) == "" and "checked here" not in report(results(nb))


def test_validate_speaks_the_notebooks_language():
    """`course validate` and the Validate button report in the notebook's language (the Chinese edition's
    metadata.language is zh_CN): the same table, marks and totals, in Chinese; English otherwise."""
    from course_tools.validate import CellResult, checked_here, report

    items = [CellResult("test_a", 2, True), CellResult("test_b", 3, False, "AssertionError: x", 0.0, hidden=True)]
    english, chinese = report(items), report(items, "zh_CN")
    assert english.splitlines()[0].startswith("PASS  test_a") and "FAIL  test_b  0/3   AssertionError: x" in english
    assert "score 2/5 (1 of 2 tests pass)" in english and "2 of 5 points checked here in full" in english
    assert chinese.splitlines()[0].startswith("通过  test_a") and "未过  test_b  0/3   AssertionError: x" in chinese
    assert "得分 2/5（2 个测试中 1 个通过）" in chinese and "checked here" not in chinese
    assert "这 5 分中有 2 分在这里完整检查过；其余 3 分（test_b）" in checked_here(items, "zh_CN")
    assert report(items, "fr") == english, "an unknown language is English"
    assert report([], "zh_CN") == "没有找到计分测试单元"


def test_the_validate_button_speaks_the_notebooks_language(tmp_path, monkeypatch):
    import nbformat

    from course_tools import lab_validate, validate
    from course_tools.validate import CellResult

    items = [CellResult("test_a", 2, True), CellResult("test_b", 3, False, "AssertionError: x", 0.0)]
    monkeypatch.setattr(validate, "validate", lambda path: items)
    for lang, words in ((None, "2 / 5 points: 1 of 2 tests fail"), ("zh_CN", "2 / 5 分：2 个测试中 1 个未通过")):
        nb = nbformat.v4.new_notebook()
        if lang:
            nb.metadata["language"] = lang
        path = tmp_path / f"{lang}.ipynb"
        nbformat.write(nb, path)
        [failed] = lab_validate.CourseValidator().validate(str(path))["failed"]
        assert failed["source"].startswith(words), failed["source"]
        assert ("未过  test_b" if lang else "FAIL  test_b") in failed["error"]
